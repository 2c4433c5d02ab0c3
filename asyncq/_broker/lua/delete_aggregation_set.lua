-- delete_aggregation_set: the aggregated task is enqueued; drop the set and its tasks.
-- Semantics of asynq's deleteAggregationSetCmd, also releasing the tasks' unique locks.
-- The group leaves the groups set here, if it is empty and none of its sets is still
-- out, rather than when the set was made (see aggregation_check).
--
-- KEYS[1] = asynq:{q}:g:<group>:<set-id>   the aggregation set
-- KEYS[2] = asynq:{q}:aggregation_sets     set key -> deadline
-- KEYS[3] = asynq:{q}:g:<group>            the group
-- KEYS[4] = asynq:{q}:groups               set of group names
-- KEYS[5] = asynq:{q}:slot-guard   never exists: while the slot migrates, the call waits
-- ARGV[1] = task key prefix asynq:{q}:t:
-- ARGV[2] = unique lock prefix asynq:{q}:unique:
-- ARGV[3] = the group name
-- DERIVED = ARGV[1] .. id -> asynq:{q}:t:<id>; ARGV[2] .. suffix -> asynq:{q}:unique:<type>:<md5>
-- RETURNS = how many tasks were deleted
local ids = redis.call("ZRANGE", KEYS[1], 0, -1)
for _, id in ipairs(ids) do
  local key = ARGV[1] .. id
  local lock = redis.call("HGET", key, "unique_key")
  if lock and string.sub(lock, 1, #ARGV[2]) == ARGV[2] then
    local owned = ARGV[2] .. string.sub(lock, #ARGV[2] + 1)
    if redis.call("GET", owned) == id then
      redis.call("DEL", owned)
    end
  end
  redis.call("DEL", key)
end
redis.call("DEL", KEYS[1])
redis.call("ZREM", KEYS[2], KEYS[1])
if redis.call("EXISTS", KEYS[3]) == 0 then
  local prefix = KEYS[3] .. ":"
  local out = false
  for _, name in ipairs(redis.call("ZRANGE", KEYS[2], 0, -1)) do
    -- Another set of this group ("<group>:<set-id>", the id has no colon) is still out.
    if string.sub(name, 1, #prefix) == prefix and not string.find(name, ":", #prefix + 1, true) then
      out = true
      break
    end
  end
  if not out then
    redis.call("SREM", KEYS[4], ARGV[3])
  end
end
return #ids
