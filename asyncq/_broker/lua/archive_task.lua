-- archive_task: archive one task that is waiting (pending, scheduled, retry or aggregating).
-- Semantics of asynq's archiveTaskCmd, with its trimming fixed: archived tasks older
-- than the cutoff or beyond the size limit are deleted with their hashes.
--
-- KEYS[1] = asynq:{q}:t:<id>     task hash
-- KEYS[2] = asynq:{q}:archived   archived set
-- KEYS[3] = asynq:{q}:pending    pending list
-- KEYS[4] = asynq:{q}:groups     set of group names
-- KEYS[5] = asynq:{q}:slot-guard   never exists: while the slot migrates, the call waits
-- ARGV[1] = task id
-- ARGV[2] = queue key prefix asynq:{q}:
-- ARGV[3] = now in Unix seconds (the score)
-- ARGV[4] = cutoff in Unix seconds: archived tasks older than this are deleted
-- ARGV[5] = how many archived tasks to keep at most
-- ARGV[6] = task key prefix asynq:{q}:t:
-- DERIVED = ARGV[2] .. state -> asynq:{q}:<state>; ARGV[2] .. "g:" .. group -> asynq:{q}:g:<group>; ARGV[6] .. id -> asynq:{q}:t:<id>
-- RETURNS = 1 done, 0 no such task, -1 the task is running (in active), -2 already archived, -3 completed, -4 it is being aggregated
local fields = redis.call("HMGET", KEYS[1], "state", "group")
local state, group = fields[1], fields[2]
if not state then
  return 0
elseif state == "active" then
  -- Running only while it is in active: asynq's scripts can leave a hash that says
  -- active in no list at all (a lease lost mid-write, asynq #1051), which nothing else
  -- would ever take back.
  if redis.call("LPOS", ARGV[2] .. "active", ARGV[1]) then
    return -1
  end
  redis.call("ZREM", ARGV[2] .. "lease", ARGV[1])
elseif state == "archived" then
  return -2
elseif state == "completed" then
  return -3
end
if state == "pending" then
  redis.call("LREM", KEYS[3], 0, ARGV[1])
elseif state == "aggregating" then
  local members = ARGV[2] .. "g:" .. group
  if redis.call("ZREM", members, ARGV[1]) == 0 then
    -- Moved into an aggregation set: an aggregator is combining it right now, and will
    -- delete it (or the set returns to the group after 2 minutes). asynq refuses too.
    return -4
  end
  if redis.call("ZCARD", members) == 0 then
    redis.call("SREM", KEYS[4], group)
  end
elseif state ~= "active" then
  redis.call("ZREM", ARGV[2] .. state, ARGV[1])
end
redis.call("ZADD", KEYS[2], ARGV[3], ARGV[1])
redis.call("HSET", KEYS[1], "state", "archived")
for _, id in ipairs(redis.call("ZRANGEBYSCORE", KEYS[2], "-inf", ARGV[4])) do
  redis.call("DEL", ARGV[6] .. id)
  redis.call("ZREM", KEYS[2], id)
end
local excess = redis.call("ZCARD", KEYS[2]) - tonumber(ARGV[5])
if excess > 0 then
  for _, id in ipairs(redis.call("ZRANGE", KEYS[2], 0, excess - 1)) do
    redis.call("DEL", ARGV[6] .. id)
  end
  redis.call("ZREMRANGEBYRANK", KEYS[2], 0, excess - 1)
end
return 1
