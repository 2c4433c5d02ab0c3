-- dequeue: move up to ARGV[3] tasks from pending to active, each with a lease.
-- Semantics of asynq's dequeueCmd, repeated for a batch in one call; the stored
-- state afterwards is the same as after as many single dequeues. An id whose task
-- hash is missing is dropped from active and lease instead of being returned.
--
-- KEYS[1] = asynq:{q}:pending   pending list
-- KEYS[2] = asynq:{q}:paused    exists while the queue is paused
-- KEYS[3] = asynq:{q}:active    active list
-- KEYS[4] = asynq:{q}:lease     lease set (id -> expiry, Unix s)
-- ARGV[1] = lease expiry in Unix seconds
-- ARGV[2] = task key prefix asynq:{q}:t:
-- ARGV[3] = how many tasks to take at most
-- DERIVED = ARGV[2] .. id -> asynq:{q}:t:<id>
-- RETURNS = flat array id1, msg1, id2, msg2, ... (empty when paused or nothing is pending)
if redis.call("EXISTS", KEYS[2]) == 1 then
  return {}
end
local out = {}
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
  else
    redis.call("LREM", KEYS[3], 1, id)
  end
end
return out
