-- aggregation_check: if a group is ready, move (up to max size of) its tasks into a new
-- aggregation set. Semantics of asynq's aggregationCheckCmd: ready when the group holds
-- max size tasks, when its oldest task waited max delay, or when its newest task is
-- older than the grace period. Unlike asynq, the group is not taken out of the groups set
-- here when the set empties it: asynq's recoverer puts a dead aggregator's set back into
-- the group without listing the group again, and a group left unlisted then would wait
-- for a new task to be found. Deleting the set (delete_aggregation_set) unlists it.
--
-- KEYS[1] = asynq:{q}:g:<group>            the group
-- KEYS[2] = asynq:{q}:g:<group>:<set-id>   the new aggregation set
-- KEYS[3] = asynq:{q}:aggregation_sets     set key -> deadline
-- KEYS[4] = asynq:{q}:groups               set of group names
-- ARGV[1] = max size (0: no limit)
-- ARGV[2] = max delay in seconds (0: none)
-- ARGV[3] = grace period in seconds
-- ARGV[4] = the set's deadline in Unix seconds (after it, the set is reclaimed)
-- ARGV[5] = now in Unix seconds
-- ARGV[6] = the group name
-- DERIVED = none
-- RETURNS = 1 a set was made, 0 the group is not ready (or empty)
local size = redis.call("ZCARD", KEYS[1])
if size == 0 then
  return 0
end
local max_size = tonumber(ARGV[1])
local now = tonumber(ARGV[5])
local ready = max_size ~= 0 and size >= max_size
if not ready and tonumber(ARGV[2]) ~= 0 then
  local oldest = redis.call("ZRANGE", KEYS[1], 0, 0, "WITHSCORES")
  ready = tonumber(oldest[2]) <= now - tonumber(ARGV[2])
end
if not ready then
  local newest = redis.call("ZREVRANGE", KEYS[1], 0, 0, "WITHSCORES")
  ready = tonumber(newest[2]) <= now - tonumber(ARGV[3])
end
if not ready then
  return 0
end
local take = max_size ~= 0 and max_size or size
local members = redis.call("ZRANGE", KEYS[1], 0, take - 1, "WITHSCORES")
for i = 1, #members, 2 do
  redis.call("ZADD", KEYS[2], members[i + 1], members[i])
end
redis.call("ZREMRANGEBYRANK", KEYS[1], 0, take - 1)
redis.call("ZADD", KEYS[3], ARGV[4], KEYS[2])
return 1
