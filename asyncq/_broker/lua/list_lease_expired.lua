-- list_lease_expired: the tasks whose lease ended at or before ARGV[1] (their worker died).
-- Semantics of asynq's listLeaseExpiredCmd; a lease whose task hash is gone is
-- dropped with its active entry instead of lingering forever.
--
-- KEYS[1] = asynq:{q}:lease    lease set
-- KEYS[2] = asynq:{q}:active   active list
-- KEYS[3] = asynq:{q}:slot-guard   never exists: while the slot migrates, the call waits
-- ARGV[1] = cutoff in Unix seconds
-- ARGV[2] = task key prefix asynq:{q}:t:
-- DERIVED = ARGV[2] .. id -> asynq:{q}:t:<id>
-- RETURNS = id, message, id, message, ... of those tasks (the id as listed, so that a
--           task whose message cannot be read can still be archived by it)
local out = {}
for _, id in ipairs(redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", ARGV[1])) do
  local msg = redis.call("HGET", ARGV[2] .. id, "msg")
  if msg then
    out[#out + 1] = id
    out[#out + 1] = msg
  else
    redis.call("ZREM", KEYS[1], id)
    redis.call("LREM", KEYS[2], 0, id)
  end
end
return out
