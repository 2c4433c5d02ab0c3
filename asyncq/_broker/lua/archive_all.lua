-- archive_all: archive every task of a waiting container (pending, scheduled, retry, a group).
-- Semantics of asynq's archiveAll*Cmd, with trimming that also deletes trimmed hashes.
--
-- KEYS[1] = asynq:{q}:<state> or asynq:{q}:g:<group>   the source (list or set)
-- KEYS[2] = asynq:{q}:archived                         archived set
-- KEYS[3] = asynq:{q}:groups                           set of group names
-- KEYS[4] = asynq:{q}:slot-guard   never exists: while the slot migrates, the call waits
-- ARGV[1] = "list" (pending) or "zset"
-- ARGV[2] = now in Unix seconds (the score)
-- ARGV[3] = cutoff in Unix seconds: archived tasks older than this are deleted
-- ARGV[4] = how many archived tasks to keep at most
-- ARGV[5] = task key prefix asynq:{q}:t:
-- ARGV[6] = the group name when the source is a group, else ""
-- DERIVED = ARGV[5] .. id -> asynq:{q}:t:<id>
-- RETURNS = how many tasks were archived
local ids
if ARGV[1] == "list" then
  ids = redis.call("LRANGE", KEYS[1], 0, -1)
else
  ids = redis.call("ZRANGE", KEYS[1], 0, -1)
end
local moved = 0
for _, id in ipairs(ids) do
  -- An id whose hash is gone is dropped (see run_all).
  if redis.call("EXISTS", ARGV[5] .. id) == 1 then
    redis.call("ZADD", KEYS[2], ARGV[2], id)
    redis.call("HSET", ARGV[5] .. id, "state", "archived")
    moved = moved + 1
  end
end
redis.call("DEL", KEYS[1])
if ARGV[6] ~= "" then
  redis.call("SREM", KEYS[3], ARGV[6])
end
for _, id in ipairs(redis.call("ZRANGEBYSCORE", KEYS[2], "-inf", ARGV[3])) do
  redis.call("DEL", ARGV[5] .. id)
  redis.call("ZREM", KEYS[2], id)
end
local excess = redis.call("ZCARD", KEYS[2]) - tonumber(ARGV[4])
if excess > 0 then
  for _, id in ipairs(redis.call("ZRANGE", KEYS[2], 0, excess - 1)) do
    redis.call("DEL", ARGV[5] .. id)
  end
  redis.call("ZREMRANGEBYRANK", KEYS[2], 0, excess - 1)
end
return moved
