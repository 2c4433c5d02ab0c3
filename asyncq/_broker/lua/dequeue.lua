-- dequeue: move up to ARGV[3] tasks from pending to active, each with a lease.
-- Semantics of asynq's dequeueCmd, repeated for a batch in one call; the stored
-- state afterwards is the same as after as many single dequeues, but the list and
-- lease commands run once per batch rather than once per task. An id whose task
-- hash is missing is dropped (it never reaches active) instead of being returned, and
-- so is one whose key holds something else than a hash (another writer's): an error
-- there would end the script with the batch already off pending, and lose it.
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
-- RETURNS = flat array id1, msg1, id2, msg2, ... (empty when nothing is pending; a msg is
--           nil for an id dropped as it had no task hash), or 0
--           when the queue is paused (a waiting worker then knows its wait ended for a
--           task it may not take, rather than for one another worker took first)
local out = {}
if ARGV[5] ~= "" then
  redis.call("DEL", ARGV[5])
end
if redis.call("EXISTS", KEYS[5]) == 1 then
  -- A re-sent call: hand back what the first one took, where it is still leased.
  for _, id in ipairs(redis.call("LRANGE", KEYS[5], 0, -1)) do
    local msg = redis.pcall("HGET", ARGV[2] .. id, "msg")
    if type(msg) == "string" and redis.call("ZSCORE", KEYS[4], id) then
      out[#out + 1] = id
      out[#out + 1] = msg
    end
  end
  return out
end
if redis.call("EXISTS", KEYS[2]) == 1 then
  return 0
end
local wanted = tonumber(ARGV[3])
if wanted < 1 then
  return {}
end
-- The oldest tasks sit at the right end of pending: take up to `wanted` of them at
-- once, oldest first, which is the order single RPOPLPUSHes would take them in.
local popped = redis.call("LRANGE", KEYS[1], -wanted, -1)
if #popped == 0 then
  return {}
end
local taken = {}
local leases = {}
for i = #popped, 1, -1 do
  local id = popped[i]
  local key = ARGV[2] .. id
  -- An error reply (a key of another type) is a table, a missing hash or field false.
  local msg = redis.pcall("HGET", key, "msg")
  -- An id whose task hash is gone is dropped, as asynq's dequeue drops it from active;
  -- it is named in the reply with no message (false), for the worker to log.
  if type(msg) ~= "string" then
    out[#out + 1] = id
    out[#out + 1] = false
  else
    redis.call("HSET", key, "state", "active")
    redis.call("HDEL", key, "pending_since")
    taken[#taken + 1] = id
    leases[#leases + 1] = ARGV[1]
    leases[#leases + 1] = id
    out[#out + 1] = id
    out[#out + 1] = msg
  end
end
-- One command per kind for the whole batch, in slices, since unpack() is bounded by
-- Lua's C stack. LPUSH of the ids in the order taken leaves active as one
-- RPOPLPUSH per task would.
for first = 1, #taken, 1000 do
  local last = math.min(first + 999, #taken)
  redis.call("LPUSH", KEYS[3], unpack(taken, first, last))
  redis.call("ZADD", KEYS[4], unpack(leases, 2 * first - 1, 2 * last))
  redis.call("RPUSH", KEYS[5], unpack(taken, first, last))
end
if #taken > 0 then
  redis.call("EXPIRE", KEYS[5], ARGV[4])
end
-- Off pending last: a write above that fails (a key of the wrong type) ends the script
-- with the batch still pending, not lost between the two lists.
redis.call("LTRIM", KEYS[1], 0, -(#popped + 1))
return out
