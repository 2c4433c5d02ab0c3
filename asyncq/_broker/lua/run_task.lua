-- run_task: make one waiting task (scheduled, retry, archived, completed or aggregating)
-- pending now. Semantics of asynq's runTaskCmd; an aggregating task also leaves its
-- group, and the group name leaves the groups set when the group empties.
--
-- KEYS[1] = asynq:{q}:t:<id>   task hash
-- KEYS[2] = asynq:{q}:pending  pending list
-- KEYS[3] = asynq:{q}:groups   set of group names
-- KEYS[4] = asynq:{q}:slot-guard   never exists: while the slot migrates, the call waits
-- ARGV[1] = task id
-- ARGV[2] = queue key prefix asynq:{q}:
-- ARGV[3] = now in Unix nanoseconds (pending_since)
-- ARGV[4] = wake-up channel asynq:{q}:wakeup
-- DERIVED = ARGV[2] .. state -> asynq:{q}:<state>; ARGV[2] .. "g:" .. group -> asynq:{q}:g:<group>; ARGV[4] -> asynq:{q}:wakeup
-- RETURNS = 1 done, 0 no such task, -1 the task is running (in active), -2 it is already pending, -4 it is being aggregated
local fields = redis.call("HMGET", KEYS[1], "state", "group")
local state, group = fields[1], fields[2]
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
elseif state == "pending" then
  return -2
end
if state == "aggregating" then
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
redis.call("HSET", KEYS[1], "state", "pending", "pending_since", ARGV[3])
-- Run on its own now: if it fails, its retry must not rejoin the group (the forwarder
-- sends a task with a group field back into its group, asynq's too).
redis.call("HDEL", KEYS[1], "group")
redis.call("LPUSH", KEYS[2], ARGV[1])
redis.pcall("SPUBLISH", ARGV[4], "1")
return 1
