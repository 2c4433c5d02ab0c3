-- delete_expired_completed: drop completed tasks whose retention has ended.
-- Semantics of asynq's deleteExpiredCompletedTasksCmd.
--
-- KEYS[1] = asynq:{q}:completed   completed set (id -> expiry, Unix s)
-- KEYS[2] = asynq:{q}:slot-guard   never exists: while the slot migrates, the call waits
-- ARGV[1] = now in Unix seconds
-- ARGV[2] = task key prefix asynq:{q}:t:
-- ARGV[3] = how many to delete at most in this call
-- DERIVED = ARGV[2] .. id -> asynq:{q}:t:<id>
-- RETURNS = the number deleted (call again until it returns 0)
local ids = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", ARGV[1], "LIMIT", 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do
  redis.call("DEL", ARGV[2] .. id)
  redis.call("ZREM", KEYS[1], id)
end
return #ids
