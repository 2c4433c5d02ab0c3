-- enqueue_batch: put several new tasks at the tail of one queue's pending list.
-- The stored state afterwards is the same as after one asynq enqueueCmd per task,
-- in order; a task whose id is taken is skipped and reported, the others go in.
-- The tasks travel as one MessagePack argument (cheaper for the client than two
-- arguments per task), and their ids are pushed with one LPUSH per thousand, which
-- leaves the list as one LPUSH per task would. One wake-up is published for the
-- whole batch, so idle asyncq workers start at once.
--
-- KEYS[1] = asynq:{q}:pending             pending list
-- KEYS[2] = asynq:{q}:slot-guard          never exists: while the slot migrates, Redis
--           refuses the call (TRYAGAIN) before any write, and the client retries
-- ARGV[1] = now in Unix nanoseconds (pending_since)
-- ARGV[2] = task key prefix asynq:{q}:t:
-- ARGV[3] = wake-up channel asynq:{q}:wakeup
-- ARGV[4] = MessagePack array: first task id, its message, second task id, and so on
-- ARGV[5] = "1" when every id is a random UUID4 the client made for this call: no stored
--           task holds one unless this call was stored before, so a first send skips
--           the per-task EXISTS (a quarter of the script's time)
-- ARGV[6] = "1" when this call may repeat one that was stored (a re-send after a lost reply);
--           "2" likewise, from a client that waits for replicas (see below)
-- DERIVED = ARGV[2] .. id -> asynq:{q}:t:<id>; ARGV[3] -> asynq:{q}:wakeup
-- RETURNS = the 1-based positions of the tasks whose id is taken (empty: all enqueued)
local items = cmsgpack.unpack(ARGV[4])
local resent = ARGV[6] ~= "0"
local check = ARGV[5] ~= "1" or resent
local taken = {}
local ids = {}
for i = 1, #items, 2 do
  local id = items[i]
  local key = ARGV[2] .. id
  if check and redis.call("EXISTS", key) == 1 then
    -- On a re-send, a task that holds this very message was stored by the first attempt.
    if not resent or redis.call("HGET", key, "msg") ~= items[i + 1] then
      taken[#taken + 1] = (i + 1) / 2
    elseif ARGV[6] == "2" then
      -- Written again, unchanged, so that this call counts as a write: the WAIT sent
      -- behind it then waits for the first attempt's writes too (Redis 7.2 and later).
      redis.call("HSET", key, "msg", items[i + 1])
    end
  else
    redis.call("HSET", key, "msg", items[i + 1], "state", "pending", "pending_since", ARGV[1])
    ids[#ids + 1] = id
  end
end
-- unpack() is bounded by Lua's C stack, so the ids go in slices.
for first = 1, #ids, 1000 do
  redis.call("LPUSH", KEYS[1], unpack(ids, first, math.min(first + 999, #ids)))
end
redis.pcall("SPUBLISH", ARGV[3], "1")
return taken
