-- done: a task succeeded and is not kept: delete it and count it as processed.
-- Semantics of asynq's doneCmd / doneUniqueCmd, except that it first checks that
-- the task still holds a lease and then changes nothing if it does not (asynq
-- deletes part of the state before failing with NOT FOUND).
--
-- KEYS[1] = asynq:{q}:active                 active list
-- KEYS[2] = asynq:{q}:lease                  lease set
-- KEYS[3] = asynq:{q}:t:<id>                 task hash
-- KEYS[4] = asynq:{q}:processed:<yyyy-mm-dd> daily processed counter
-- KEYS[5] = asynq:{q}:processed              total processed counter
-- KEYS[6] = asynq:{q}:unique:<type>:<md5>    unique lock (optional)
-- ARGV[1] = task id
-- ARGV[2] = daily counter expiry in Unix seconds (now + 90 days)
-- DERIVED = none
-- RETURNS = 1 done, 0 the task holds no lease any more (nothing changed)

-- INCLUDE = count
if not redis.call("ZSCORE", KEYS[2], ARGV[1]) then
  return 0
end
redis.call("LREM", KEYS[1], 0, ARGV[1])
redis.call("ZREM", KEYS[2], ARGV[1])
redis.call("DEL", KEYS[3])
if count(KEYS[4], 1) == 1 then
  redis.call("EXPIREAT", KEYS[4], ARGV[2])
end
count(KEYS[5], 1)
if KEYS[6] and redis.call("GET", KEYS[6]) == ARGV[1] then
  redis.call("DEL", KEYS[6])
end
return 1
