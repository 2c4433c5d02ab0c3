-- list_orphaned: the tasks in active that hold no lease at all.
-- asynq never recovers these (its issues #1051, #1144): they appear when a lease
-- entry was evicted or a write was cut in half. Dequeue and every final write
-- change active and lease together, so no healthy task is ever seen this way.
--
-- KEYS[1] = asynq:{q}:active   active list
-- KEYS[2] = asynq:{q}:lease    lease set
-- KEYS[3] = asynq:{q}:slot-guard   never exists: while the slot migrates, the call waits
-- ARGV[1] = task key prefix asynq:{q}:t:
-- DERIVED = ARGV[1] .. id -> asynq:{q}:t:<id>
-- RETURNS = id, message, id, message, ... of those tasks (ids without a task hash are
--           dropped from active)
local out = {}
for _, id in ipairs(redis.call("LRANGE", KEYS[1], 0, -1)) do
  if not redis.call("ZSCORE", KEYS[2], id) then
    local msg = redis.call("HGET", ARGV[1] .. id, "msg")
    if msg then
      out[#out + 1] = id
      out[#out + 1] = msg
    else
      redis.call("LREM", KEYS[1], 0, id)
    end
  end
end
return out
