-- list_tasks: one page of the tasks in one state (or one group) of a queue.
-- Lists are read from the tail, so the oldest task comes first, as asynq lists them.
--
-- KEYS[1] = asynq:{q}:<state> or asynq:{q}:g:<group>   the container
-- KEYS[2] = asynq:{q}:lease                             lease set (for active tasks)
-- KEYS[3] = asynq:{q}:slot-guard   never exists: while the slot migrates, the call waits
-- ARGV[1] = "list" or "zset"
-- ARGV[2] = first index of the page (0-based)
-- ARGV[3] = last index of the page
-- ARGV[4] = task key prefix asynq:{q}:t:
-- DERIVED = ARGV[4] .. id -> asynq:{q}:t:<id>
-- RETURNS = for each task: id, msg, state, result, score (zset score or lease expiry, "" if none)
local ids
local scores = {}
if ARGV[1] == "list" then
  ids = redis.call("LRANGE", KEYS[1], -1 - tonumber(ARGV[3]), -1 - tonumber(ARGV[2]))
  local reversed = {}
  for i = #ids, 1, -1 do
    reversed[#reversed + 1] = ids[i]
  end
  ids = reversed
  for i, id in ipairs(ids) do
    scores[i] = redis.call("ZSCORE", KEYS[2], id) or ""
  end
else
  local pairs_ = redis.call("ZRANGE", KEYS[1], ARGV[2], ARGV[3], "WITHSCORES")
  ids = {}
  for i = 1, #pairs_, 2 do
    ids[#ids + 1] = pairs_[i]
    scores[#ids] = pairs_[i + 1]
  end
end
local out = {}
for i, id in ipairs(ids) do
  local fields = redis.call("HMGET", ARGV[4] .. id, "msg", "state", "result")
  out[#out + 1] = id
  out[#out + 1] = fields[1] or ""
  out[#out + 1] = fields[2] or ""
  out[#out + 1] = fields[3] or ""
  out[#out + 1] = scores[i]
end
return out
