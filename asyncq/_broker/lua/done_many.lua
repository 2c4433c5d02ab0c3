-- done_many: several tasks of one queue succeeded and are not kept: delete and count them.
-- The stored state afterwards is the same as after one asynq doneCmd per task. Each
-- task is checked for its lease first; a task without one is left untouched.
--
-- KEYS[1] = asynq:{q}:active                 active list
-- KEYS[2] = asynq:{q}:lease                  lease set
-- KEYS[3] = asynq:{q}:processed:<yyyy-mm-dd> daily processed counter
-- KEYS[4] = asynq:{q}:processed              total processed counter
-- ARGV[1] = daily counter expiry in Unix seconds (now + 90 days)
-- ARGV[2] = the largest int64, where the total wraps
-- ARGV[3] = task key prefix asynq:{q}:t:
-- ARGV[4] = unique lock prefix asynq:{q}:unique:
-- ARGV[5] = first task id, ARGV[6] its unique lock suffix ("" for none), and so on in pairs
-- DERIVED = ARGV[3] .. id -> asynq:{q}:t:<id>; ARGV[4] .. suffix -> asynq:{q}:unique:<type>:<md5>
-- RETURNS = one code per task, in order: 1 done, 0 it held no lease (nothing changed)
local codes = {}
local count = 0
for i = 5, #ARGV, 2 do
  local id = ARGV[i]
  if redis.call("ZSCORE", KEYS[2], id) then
    redis.call("LREM", KEYS[1], 0, id)
    redis.call("ZREM", KEYS[2], id)
    redis.call("DEL", ARGV[3] .. id)
    if ARGV[i + 1] ~= "" then
      local lock = ARGV[4] .. ARGV[i + 1]
      if redis.call("GET", lock) == id then
        redis.call("DEL", lock)
      end
    end
    count = count + 1
    codes[#codes + 1] = 1
  else
    codes[#codes + 1] = 0
  end
end
if count > 0 then
  if redis.call("INCRBY", KEYS[3], count) == count then
    redis.call("EXPIREAT", KEYS[3], ARGV[1])
  end
  local total = tonumber(redis.call("GET", KEYS[4]) or "0")
  if total > tonumber(ARGV[2]) - count then
    redis.call("SET", KEYS[4], count)
  else
    redis.call("INCRBY", KEYS[4], count)
  end
end
return codes
