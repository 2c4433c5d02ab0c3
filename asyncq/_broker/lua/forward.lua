-- forward: move due scheduled or retry tasks to pending, or into their group.
-- Semantics of asynq's forwardCmd, with a fix: a task going back into a group also
-- puts the group name back into the groups set, so the aggregator finds it.
--
-- KEYS[1] = asynq:{q}:scheduled or asynq:{q}:retry   the source set
-- KEYS[2] = asynq:{q}:pending                        pending list
-- KEYS[3] = asynq:{q}:groups                         set of group names
-- KEYS[4] = asynq:{q}:slot-guard   never exists: while the slot migrates, the call waits
-- ARGV[1] = now in Unix seconds (tasks due at or before it move)
-- ARGV[2] = task key prefix asynq:{q}:t:
-- ARGV[3] = now in Unix nanoseconds (pending_since)
-- ARGV[4] = group key prefix asynq:{q}:g:
-- ARGV[5] = how many tasks to move at most in this call
-- ARGV[6] = wake-up channel asynq:{q}:wakeup
-- DERIVED = ARGV[2] .. id -> asynq:{q}:t:<id>; ARGV[4] .. group -> asynq:{q}:g:<group>; ARGV[6] -> asynq:{q}:wakeup
-- RETURNS = the number of tasks moved (call again until it returns 0)
local ids = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", ARGV[1], "LIMIT", 0, tonumber(ARGV[5]))
local woken = false
for _, id in ipairs(ids) do
  local key = ARGV[2] .. id
  local group = redis.call("HGET", key, "group")
  if group and group ~= "" then
    redis.call("ZADD", ARGV[4] .. group, ARGV[1], id)
    redis.call("SADD", KEYS[3], group)
    redis.call("HSET", key, "state", "aggregating")
  else
    redis.call("LPUSH", KEYS[2], id)
    redis.call("HSET", key, "state", "pending", "pending_since", ARGV[3])
    if not woken then
      redis.pcall("SPUBLISH", ARGV[6], "1")
      woken = true
    end
  end
  redis.call("ZREM", KEYS[1], id)
end
return #ids
