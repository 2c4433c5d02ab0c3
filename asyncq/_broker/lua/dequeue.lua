-- dequeue: move up to ARGV[3] tasks from pending to active, each with a lease.
-- Semantics of asynq's dequeueCmd, repeated for a batch in one call; the stored
-- state afterwards is the same as after as many single dequeues. An id whose task
-- hash is missing is dropped from active and lease instead of being returned.
-- Each call records the ids it took under a token for a short while: a call re-sent
-- after a lost reply (a timeout, a failover) gets the same tasks back instead of
-- taking more and leaving the first ones leased to nobody.
--
-- KEYS[1] = asynq:{q}:pending   pending list
-- KEYS[2] = asynq:{q}:paused    exists while the queue is paused
-- KEYS[3] = asynq:{q}:active    active list
-- KEYS[4] = asynq:{q}:lease     lease set (id -> expiry, Unix s)
-- KEYS[5] = asynq:{q}:dequeue:<token>  the ids this call took (asyncq's own, short-lived)
-- ARGV[1] = lease expiry in Unix seconds
-- ARGV[2] = task key prefix asynq:{q}:t:
-- ARGV[3] = how many tasks to take at most
-- ARGV[4] = how long the record of this call lives, in whole seconds
-- ARGV[5] = the record of the previous (answered) call, to delete now, or ""
-- DERIVED = ARGV[2] .. id -> asynq:{q}:t:<id>; ARGV[5] -> asynq:{q}:dequeue:<token>
-- RETURNS = flat array id1, msg1, id2, msg2, ... (empty when paused or nothing is pending)
local out = {}
if ARGV[5] ~= "" then
  redis.call("DEL", ARGV[5])
end
if redis.call("EXISTS", KEYS[5]) == 1 then
  -- A re-sent call: hand back what the first one took, where it is still leased.
  for _, id in ipairs(redis.call("LRANGE", KEYS[5], 0, -1)) do
    local msg = redis.call("HGET", ARGV[2] .. id, "msg")
    if msg and redis.call("ZSCORE", KEYS[4], id) then
      out[#out + 1] = id
      out[#out + 1] = msg
    end
  end
  return out
end
if redis.call("EXISTS", KEYS[2]) == 1 then
  return {}
end
for _ = 1, tonumber(ARGV[3]) do
  local id = redis.call("RPOPLPUSH", KEYS[1], KEYS[3])
  if not id then
    break
  end
  local key = ARGV[2] .. id
  local msg = redis.call("HGET", key, "msg")
  if msg then
    redis.call("HSET", key, "state", "active")
    redis.call("HDEL", key, "pending_since")
    redis.call("ZADD", KEYS[4], ARGV[1], id)
    out[#out + 1] = id
    out[#out + 1] = msg
    redis.call("RPUSH", KEYS[5], id)
  else
    redis.call("LREM", KEYS[3], 1, id)
  end
end
if #out > 0 then
  redis.call("EXPIRE", KEYS[5], ARGV[4])
end
return out
