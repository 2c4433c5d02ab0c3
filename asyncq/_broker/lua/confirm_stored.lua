-- confirm_stored: write each given task's message again, unchanged, where the task is
-- still stored with it, so that a WAIT sent right behind this call on the same connection
-- covers the writes that stored it (see ReplicatedCalls.run). It never stores
-- a task: one that is gone (taken and finished meanwhile) or whose message changed (taken
-- and retried) is left as it is.
--
-- KEYS[1] = asynq:{q}:slot-guard   never exists: while the slot migrates, the call waits
-- ARGV[1] = task key prefix asynq:{q}:t:
-- ARGV[2] = MessagePack array: first task id, its message, second task id, and so on
-- DERIVED = ARGV[1] .. id -> asynq:{q}:t:<id>
-- RETURNS = how many of the tasks were found with their message
local items = cmsgpack.unpack(ARGV[2])
local found = 0
for i = 1, #items, 2 do
  local key = ARGV[1] .. items[i]
  if redis.call("HGET", key, "msg") == items[i + 1] then
    redis.call("HSET", key, "msg", items[i + 1])
    found = found + 1
  end
end
return found
