-- done_many: several tasks of one queue succeeded and are not kept: delete and count them.
-- The stored state afterwards is the same as after one asynq doneCmd per task. Each
-- task is checked for its lease first; a task without one is left untouched.
--
-- KEYS[1] = asynq:{q}:active                 active list
-- KEYS[2] = asynq:{q}:lease                  lease set
-- KEYS[3] = asynq:{q}:processed:<yyyy-mm-dd> daily processed counter
-- KEYS[4] = asynq:{q}:processed              total processed counter
-- KEYS[5] = asynq:{q}:slot-guard             never exists: while the slot migrates, Redis
--           refuses the call (TRYAGAIN) before any write, and the client retries
-- ARGV[1] = daily counter expiry in Unix seconds (now + 90 days)
-- ARGV[2] = task key prefix asynq:{q}:t:
-- ARGV[3] = unique lock prefix asynq:{q}:unique:
-- ARGV[4] = first task id, ARGV[5] its unique lock suffix ("" for none), and so on in pairs
-- DERIVED = ARGV[2] .. id -> asynq:{q}:t:<id>; ARGV[3] .. suffix -> asynq:{q}:unique:<type>:<md5>
-- RETURNS = one code per task, in order: 1 done, 0 it held no lease (nothing changed)

-- INCLUDE = count
local codes = {}
local done = {}
local task_keys = {}
local ids = {}
for i = 4, #ARGV, 2 do
  ids[#ids + 1] = ARGV[i]
end
-- One ZMSCORE checks every lease; the list is walked per task (LREM), and the lease
-- and task keys go with one ZREM and one DEL per thousand tasks.
local leases = {}
for first = 1, #ids, 1000 do
  local scores = redis.call("ZMSCORE", KEYS[2], unpack(ids, first, math.min(first + 999, #ids)))
  for j = 1, #scores do
    leases[first + j - 1] = scores[j]
  end
end
local seen = {}
for n = 1, #ids do
  local id = ids[n]
  -- An id listed twice is done once: the second one holds no lease any more.
  if leases[n] and not seen[id] then
    seen[id] = true
    redis.call("LREM", KEYS[1], 0, id)
    done[#done + 1] = id
    task_keys[#task_keys + 1] = ARGV[2] .. id
    local suffix = ARGV[3 + 2 * n]
    if suffix ~= "" then
      local lock = ARGV[3] .. suffix
      if redis.call("GET", lock) == id then
        redis.call("DEL", lock)
      end
    end
    codes[n] = 1
  else
    codes[n] = 0
  end
end
local done_count = #done
for first = 1, done_count, 1000 do
  local last = math.min(first + 999, done_count)
  redis.call("ZREM", KEYS[2], unpack(done, first, last))
  redis.call("DEL", unpack(task_keys, first, last))
end
if done_count > 0 then
  if count(KEYS[3], done_count) == done_count then
    redis.call("EXPIREAT", KEYS[3], ARGV[1])
  end
  count(KEYS[4], done_count)
end
return codes
