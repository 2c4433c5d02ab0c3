-- archive: a task failed for good (retries used up, or SkipRetry); keep it for inspection.
-- Semantics of asynq's archiveCmd, with fixes: nothing changes when the task is not
-- ours any more (checked by lease, or by active entry for the recoverer), trimmed
-- tasks have their hashes deleted too, and exactly ARGV[5] archived tasks are kept.
--
-- KEYS[1] = asynq:{q}:t:<id>                 task hash
-- KEYS[2] = asynq:{q}:active                 active list
-- KEYS[3] = asynq:{q}:lease                  lease set
-- KEYS[4] = asynq:{q}:archived               archived set (id -> archived at, Unix s)
-- KEYS[5] = asynq:{q}:processed:<yyyy-mm-dd> daily processed counter
-- KEYS[6] = asynq:{q}:failed:<yyyy-mm-dd>    daily failed counter
-- KEYS[7] = asynq:{q}:processed              total processed counter
-- KEYS[8] = asynq:{q}:failed                 total failed counter
-- KEYS[9] = asynq:{q}:slot-guard   never exists: while the slot migrates, the call waits
-- ARGV[1] = task id
-- ARGV[2] = task message (error fields updated)
-- ARGV[3] = now in Unix seconds (the score)
-- ARGV[4] = cutoff in Unix seconds: archived tasks older than this are deleted
-- ARGV[5] = how many archived tasks to keep at most
-- ARGV[6] = daily counter expiry in Unix seconds (now + 90 days)
-- ARGV[7] = "lease" to require a lease entry (a worker's own write), or a cutoff in Unix
--           seconds (the recoverer): the task must be in active with no lease, or a lease
--           that ended by the cutoff, so a task re-dequeued meanwhile is left alone
-- ARGV[8] = task key prefix asynq:{q}:t:
-- DERIVED = ARGV[8] .. id -> asynq:{q}:t:<id>
-- RETURNS = 1 archived, 0 the task is not ours any more (nothing changed)

-- INCLUDE = count
if ARGV[7] == "lease" then
  if not redis.call("ZSCORE", KEYS[3], ARGV[1]) then
    return 0
  end
else
  if not redis.call("LPOS", KEYS[2], ARGV[1]) then
    return 0
  end
  local lease = redis.call("ZSCORE", KEYS[3], ARGV[1])
  if lease and tonumber(lease) > tonumber(ARGV[7]) then
    return 0
  end
end
redis.call("LREM", KEYS[2], 0, ARGV[1])
redis.call("ZREM", KEYS[3], ARGV[1])
redis.call("ZADD", KEYS[4], ARGV[3], ARGV[1])
redis.call("HSET", KEYS[1], "msg", ARGV[2], "state", "archived")
local old = redis.call("ZRANGEBYSCORE", KEYS[4], "-inf", ARGV[4])
for _, id in ipairs(old) do
  redis.call("DEL", ARGV[8] .. id)
  redis.call("ZREM", KEYS[4], id)
end
local excess = redis.call("ZCARD", KEYS[4]) - tonumber(ARGV[5])
if excess > 0 then
  local oldest = redis.call("ZRANGE", KEYS[4], 0, excess - 1)
  for _, id in ipairs(oldest) do
    redis.call("DEL", ARGV[8] .. id)
  end
  redis.call("ZREMRANGEBYRANK", KEYS[4], 0, excess - 1)
end
for i = 5, 6 do
  if count(KEYS[i], 1) == 1 then
    redis.call("EXPIREAT", KEYS[i], ARGV[6])
  end
end
count(KEYS[7], 1)
count(KEYS[8], 1)
return 1
