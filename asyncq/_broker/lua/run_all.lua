-- run_all: make every task of a waiting set (scheduled, retry, archived, or a group) pending.
-- Semantics of asynq's runAllCmd / runAllAggregatingCmd.
--
-- KEYS[1] = asynq:{q}:<state> or asynq:{q}:g:<group>   the source set
-- KEYS[2] = asynq:{q}:pending                          pending list
-- KEYS[3] = asynq:{q}:groups                           set of group names
-- KEYS[4] = asynq:{q}:slot-guard   never exists: while the slot migrates, the call waits
-- ARGV[1] = task key prefix asynq:{q}:t:
-- ARGV[2] = now in Unix nanoseconds (pending_since)
-- ARGV[3] = wake-up channel asynq:{q}:wakeup
-- ARGV[4] = the group name when the source is a group, else ""
-- DERIVED = ARGV[1] .. id -> asynq:{q}:t:<id>; ARGV[3] -> asynq:{q}:wakeup
-- RETURNS = how many tasks became pending
local moved = 0
for _, id in ipairs(redis.call("ZRANGE", KEYS[1], 0, -1)) do
  -- An id whose hash is gone (evicted, say) is dropped: written, it would become a hash
  -- with a state and no message, listed as an empty task and never deleted.
  if redis.call("EXISTS", ARGV[1] .. id) == 1 then
    redis.call("LPUSH", KEYS[2], id)
    redis.call("HSET", ARGV[1] .. id, "state", "pending", "pending_since", ARGV[2])
    redis.call("HDEL", ARGV[1] .. id, "group")  -- runs on its own now (see run_task)
    moved = moved + 1
  end
end
redis.call("DEL", KEYS[1])
if ARGV[4] ~= "" then
  redis.call("SREM", KEYS[3], ARGV[4])
end
if moved > 0 then
  redis.pcall("SPUBLISH", ARGV[3], "1")
end
return moved
