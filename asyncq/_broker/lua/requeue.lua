-- requeue: give a running task back at the head of pending (shutdown timeout hit).
-- Semantics of asynq's requeueCmd, checking the lease first; it also sets
-- pending_since so queue latency stays right.
--
-- KEYS[1] = asynq:{q}:active   active list
-- KEYS[2] = asynq:{q}:lease    lease set
-- KEYS[3] = asynq:{q}:pending  pending list
-- KEYS[4] = asynq:{q}:t:<id>   task hash
-- ARGV[1] = task id
-- ARGV[2] = now in Unix nanoseconds (pending_since)
-- ARGV[3] = wake-up channel asynq:{q}:wakeup
-- DERIVED = ARGV[3] -> asynq:{q}:wakeup
-- RETURNS = 1 requeued, 0 the task holds no lease any more (nothing changed)
if not redis.call("ZSCORE", KEYS[2], ARGV[1]) then
  return 0
end
redis.call("LREM", KEYS[1], 0, ARGV[1])
redis.call("ZREM", KEYS[2], ARGV[1])
redis.call("RPUSH", KEYS[3], ARGV[1])
redis.call("HSET", KEYS[4], "state", "pending", "pending_since", ARGV[2])
redis.pcall("SPUBLISH", ARGV[3], "1")
return 1
