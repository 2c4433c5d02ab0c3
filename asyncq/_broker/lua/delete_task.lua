-- delete_task: delete one task that is not running, releasing its unique lock.
-- Semantics of asynq's deleteTaskCmd (an aggregating task also leaves its group).
--
-- KEYS[1] = asynq:{q}:t:<id>    task hash
-- KEYS[2] = asynq:{q}:pending   pending list
-- KEYS[3] = asynq:{q}:groups    set of group names
-- KEYS[4] = asynq:{q}:slot-guard   never exists: while the slot migrates, the call waits
-- ARGV[1] = task id
-- ARGV[2] = queue key prefix asynq:{q}:
-- ARGV[3] = unique lock prefix asynq:{q}:unique:
-- DERIVED = ARGV[2] .. state -> asynq:{q}:<state>; ARGV[2] .. "g:" .. group -> asynq:{q}:g:<group>; ARGV[3] .. suffix -> asynq:{q}:unique:<type>:<md5>
-- RETURNS = 1 deleted, 0 no such task, -1 the task is running (in active), -4 it is being aggregated
local fields = redis.call("HMGET", KEYS[1], "state", "group", "unique_key")
local state, group, lock = fields[1], fields[2], fields[3]
if not state then
  return 0
elseif state == "active" then
  -- Running only while it is in active: asynq's scripts can leave a hash that says
  -- active in no list at all (a lease lost mid-write, asynq #1051), which nothing else
  -- would ever take back.
  if redis.call("LPOS", ARGV[2] .. "active", ARGV[1]) then
    return -1
  end
  redis.call("ZREM", ARGV[2] .. "lease", ARGV[1])
end
if state == "pending" then
  redis.call("LREM", KEYS[2], 0, ARGV[1])
elseif state == "aggregating" then
  local members = ARGV[2] .. "g:" .. group
  if redis.call("ZREM", members, ARGV[1]) == 0 then
    -- Moved into an aggregation set: an aggregator is combining it right now, and will
    -- delete it (or the set returns to the group after 2 minutes). asynq refuses too.
    return -4
  end
  if redis.call("ZCARD", members) == 0 then
    redis.call("SREM", KEYS[3], group)
  end
elseif state ~= "active" then
  redis.call("ZREM", ARGV[2] .. state, ARGV[1])
end
if lock and string.sub(lock, 1, #ARGV[3]) == ARGV[3] then
  local owned = ARGV[3] .. string.sub(lock, #ARGV[3] + 1)
  if redis.call("GET", owned) == ARGV[1] then
    redis.call("DEL", owned)
  end
end
redis.call("DEL", KEYS[1])
return 1
