-- read_aggregation_set: the messages of an aggregation set's tasks, oldest first.
-- Semantics of asynq's readAggregationSetCmd.
--
-- KEYS[1] = asynq:{q}:g:<group>:<set-id>   the aggregation set
-- KEYS[2] = asynq:{q}:slot-guard   never exists: while the slot migrates, the call waits
-- ARGV[1] = task key prefix asynq:{q}:t:
-- DERIVED = ARGV[1] .. id -> asynq:{q}:t:<id>
-- RETURNS = the messages (tasks whose hash is gone are skipped)
local out = {}
for _, id in ipairs(redis.call("ZRANGE", KEYS[1], 0, -1)) do
  local msg = redis.call("HGET", ARGV[1] .. id, "msg")
  if msg then
    out[#out + 1] = msg
  end
end
return out
