-- enqueue_batch: put several new tasks at the tail of one queue's pending list.
-- The stored state afterwards is the same as after one asynq enqueueCmd per task,
-- in order; a task whose id is taken is skipped and reported, the others go in.
-- One wake-up is published for the whole batch, so idle asyncq workers start at once.
--
-- KEYS[1] = asynq:{q}:pending             pending list
-- ARGV[1] = now in Unix nanoseconds (pending_since)
-- ARGV[2] = task key prefix asynq:{q}:t:
-- ARGV[3] = wake-up channel asynq:{q}:wakeup
-- ARGV[4] = first task id, ARGV[5] its message, and so on in pairs
-- DERIVED = ARGV[2] .. id -> asynq:{q}:t:<id>; ARGV[3] -> asynq:{q}:wakeup
-- RETURNS = one code per task, in order: 1 enqueued, 0 the task id is taken
local codes = {}
for i = 4, #ARGV, 2 do
  local id = ARGV[i]
  local key = ARGV[2] .. id
  if redis.call("EXISTS", key) == 1 then
    codes[#codes + 1] = 0
  else
    redis.call("HSET", key, "msg", ARGV[i + 1], "state", "pending", "pending_since", ARGV[1])
    redis.call("LPUSH", KEYS[1], id)
    codes[#codes + 1] = 1
  end
end
redis.pcall("SPUBLISH", ARGV[3], "1")
return codes
