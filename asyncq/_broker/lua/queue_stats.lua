-- queue_stats: the sizes and counters of one queue, as asynq's currentStatsCmd reads them.
-- MEMORY USAGE is deliberately not called here: managed Redis services refuse it
-- inside scripts (asynq #728), so memory is sampled by separate commands.
--
-- KEYS[1] = asynq:{q}:pending                 pending list
-- KEYS[2] = asynq:{q}:active                  active list
-- KEYS[3] = asynq:{q}:scheduled               scheduled set
-- KEYS[4] = asynq:{q}:retry                   retry set
-- KEYS[5] = asynq:{q}:archived                archived set
-- KEYS[6] = asynq:{q}:completed               completed set
-- KEYS[7] = asynq:{q}:processed:<yyyy-mm-dd>  today's processed counter
-- KEYS[8] = asynq:{q}:failed:<yyyy-mm-dd>     today's failed counter
-- KEYS[9] = asynq:{q}:processed               total processed counter
-- KEYS[10] = asynq:{q}:failed                 total failed counter
-- KEYS[11] = asynq:{q}:paused                 exists while paused
-- KEYS[12] = asynq:{q}:groups                 set of group names
-- KEYS[13] = asynq:{q}:slot-guard   never exists: while the slot migrates, the call waits
-- ARGV[1] = task key prefix asynq:{q}:t:
-- ARGV[2] = group key prefix asynq:{q}:g:
-- DERIVED = ARGV[1] .. id -> asynq:{q}:t:<id>; ARGV[2] .. group -> asynq:{q}:g:<group>
-- RETURNS = pending, active, scheduled, retry, archived, completed, processed today,
--           failed today, processed total, failed total, paused (0/1), oldest pending_since
--           (ns, 0 when none), group count, aggregating task count
local out = {
  redis.call("LLEN", KEYS[1]),
  redis.call("LLEN", KEYS[2]),
  redis.call("ZCARD", KEYS[3]),
  redis.call("ZCARD", KEYS[4]),
  redis.call("ZCARD", KEYS[5]),
  redis.call("ZCARD", KEYS[6]),
}
-- A counter or pending_since another writer left as text that is not a number reads
-- as 0 (tonumber gives nil, which would cut the reply short).
for i = 7, 10 do
  out[#out + 1] = tonumber(redis.call("GET", KEYS[i])) or 0
end
out[#out + 1] = redis.call("EXISTS", KEYS[11])
local oldest = 0
local id = redis.call("LINDEX", KEYS[1], -1)
if id then
  oldest = tonumber(redis.call("HGET", ARGV[1] .. id, "pending_since")) or 0
end
out[#out + 1] = oldest
local groups = redis.call("SMEMBERS", KEYS[12])
local aggregating = 0
for _, group in ipairs(groups) do
  aggregating = aggregating + redis.call("ZCARD", ARGV[2] .. group)
end
out[#out + 1] = #groups
out[#out + 1] = aggregating
return out
