-- retry: a task failed and will run again at ARGV[3].
-- Semantics of asynq's retryCmd. It first checks that the task is still ours and
-- changes nothing otherwise: by its lease (a worker's own write), or by its place
-- in the active list (the recoverer taking back a task whose lease is gone).
--
-- KEYS[1] = asynq:{q}:t:<id>                 task hash
-- KEYS[2] = asynq:{q}:active                 active list
-- KEYS[3] = asynq:{q}:lease                  lease set
-- KEYS[4] = asynq:{q}:retry                  retry set (id -> retry at, Unix s)
-- KEYS[5] = asynq:{q}:processed:<yyyy-mm-dd> daily processed counter
-- KEYS[6] = asynq:{q}:failed:<yyyy-mm-dd>    daily failed counter
-- KEYS[7] = asynq:{q}:processed              total processed counter
-- KEYS[8] = asynq:{q}:failed                 total failed counter
-- ARGV[1] = task id
-- ARGV[2] = task message (retried and error fields updated)
-- ARGV[3] = retry time in Unix seconds (the score)
-- ARGV[4] = daily counter expiry in Unix seconds (now + 90 days)
-- ARGV[5] = "1" if this counts as a failure, "0" if not
-- ARGV[6] = "lease" to require a lease entry (a worker's own write), or a cutoff in Unix
--           seconds (the recoverer): the task must be in active with no lease, or a lease
--           that ended by the cutoff, so a task re-dequeued meanwhile is left alone
-- DERIVED = none
-- RETURNS = 1 moved to retry, 0 the task is not ours any more (nothing changed)

-- INCLUDE = count
if ARGV[6] == "lease" then
  if not redis.call("ZSCORE", KEYS[3], ARGV[1]) then
    return 0
  end
else
  if not redis.call("LPOS", KEYS[2], ARGV[1]) then
    return 0
  end
  local lease = redis.call("ZSCORE", KEYS[3], ARGV[1])
  if lease and tonumber(lease) > tonumber(ARGV[6]) then
    return 0
  end
end
redis.call("LREM", KEYS[2], 0, ARGV[1])
redis.call("ZREM", KEYS[3], ARGV[1])
redis.call("ZADD", KEYS[4], ARGV[3], ARGV[1])
redis.call("HSET", KEYS[1], "msg", ARGV[2], "state", "retry")
if ARGV[5] == "1" then
  for i = 5, 6 do
    if count(KEYS[i], 1) == 1 then
      redis.call("EXPIREAT", KEYS[i], ARGV[4])
    end
  end
  count(KEYS[7], 1)
  count(KEYS[8], 1)
end
return 1
