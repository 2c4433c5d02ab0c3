-- delete_all: delete every task of a container that is not running, with their unique locks.
-- Semantics of asynq's deleteAll*Cmd, fixed: pending and aggregating tasks also release
-- their unique locks (asynq leaves them held until their TTL).
--
-- KEYS[1] = asynq:{q}:<state> or asynq:{q}:g:<group>   the container (list or set)
-- KEYS[2] = asynq:{q}:groups                           set of group names
-- KEYS[3] = asynq:{q}:slot-guard   never exists: while the slot migrates, the call waits
-- ARGV[1] = "list" (pending) or "zset"
-- ARGV[2] = task key prefix asynq:{q}:t:
-- ARGV[3] = unique lock prefix asynq:{q}:unique:
-- ARGV[4] = the group name when the container is a group, else ""
-- DERIVED = ARGV[2] .. id -> asynq:{q}:t:<id>; ARGV[3] .. suffix -> asynq:{q}:unique:<type>:<md5>
-- RETURNS = how many tasks were deleted
local ids
if ARGV[1] == "list" then
  ids = redis.call("LRANGE", KEYS[1], 0, -1)
else
  ids = redis.call("ZRANGE", KEYS[1], 0, -1)
end
for _, id in ipairs(ids) do
  local key = ARGV[2] .. id
  local lock = redis.call("HGET", key, "unique_key")
  if lock and string.sub(lock, 1, #ARGV[3]) == ARGV[3] then
    local owned = ARGV[3] .. string.sub(lock, #ARGV[3] + 1)
    if redis.call("GET", owned) == id then
      redis.call("DEL", owned)
    end
  end
  redis.call("DEL", key)
end
redis.call("DEL", KEYS[1])
if ARGV[4] ~= "" then
  redis.call("SREM", KEYS[2], ARGV[4])
end
return #ids
