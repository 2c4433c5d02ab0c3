-- mark_as_complete: a task succeeded and is kept as completed until its retention ends.
-- Semantics of asynq's markAsCompleteCmd / markAsCompleteUniqueCmd, checking the
-- lease first and changing nothing without one.
--
-- KEYS[1] = asynq:{q}:active                 active list
-- KEYS[2] = asynq:{q}:lease                  lease set
-- KEYS[3] = asynq:{q}:completed              completed set (id -> expiry, Unix s)
-- KEYS[4] = asynq:{q}:t:<id>                 task hash
-- KEYS[5] = asynq:{q}:processed:<yyyy-mm-dd> daily processed counter
-- KEYS[6] = asynq:{q}:processed              total processed counter
-- KEYS[7] = asynq:{q}:unique:<type>:<md5>    unique lock (optional)
-- ARGV[1] = task id
-- ARGV[2] = daily counter expiry in Unix seconds (now + 90 days)
-- ARGV[3] = completed-at plus retention, Unix seconds (the score)
-- ARGV[4] = task message with completed_at set
-- DERIVED = none
-- RETURNS = 1 completed, 0 the task holds no lease any more (nothing changed)

-- INCLUDE = count
if not redis.call("ZSCORE", KEYS[2], ARGV[1]) then
  return 0
end
redis.call("LREM", KEYS[1], 0, ARGV[1])
redis.call("ZREM", KEYS[2], ARGV[1])
redis.call("ZADD", KEYS[3], ARGV[3], ARGV[1])
redis.call("HSET", KEYS[4], "msg", ARGV[4], "state", "completed")
if count(KEYS[5], 1) == 1 then
  redis.call("EXPIREAT", KEYS[5], ARGV[2])
end
count(KEYS[6], 1)
if KEYS[7] and redis.call("GET", KEYS[7]) == ARGV[1] then
  redis.call("DEL", KEYS[7])
end
return 1
