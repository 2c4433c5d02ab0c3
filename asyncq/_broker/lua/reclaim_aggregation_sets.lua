-- reclaim_aggregation_sets: put the tasks of aggregation sets past their deadline back
-- into their groups (their aggregator crashed). Semantics of asynq's
-- reclaimStaleAggregationSetsCmd, fixed: the group is added back to the groups set,
-- so a group emptied in the meantime is not stranded.
--
-- KEYS[1] = asynq:{q}:aggregation_sets   set key -> deadline
-- KEYS[2] = asynq:{q}:groups             set of group names
-- KEYS[3] = asynq:{q}:slot-guard   never exists: while the slot migrates, the call waits
-- ARGV[1] = now in Unix seconds
-- ARGV[2] = group key prefix asynq:{q}:g:
-- DERIVED = ARGV[2] .. suffix -> asynq:{q}:g:<group>[:<set-id>]
-- RETURNS = how many sets were reclaimed
local stale = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", ARGV[1])
for _, name in ipairs(stale) do
  if string.sub(name, 1, #ARGV[2]) == ARGV[2] then
    -- "<group>:<set-id>": the set id is the part after the last colon.
    local rest = string.sub(name, #ARGV[2] + 1)
    local group = string.match(rest, "^(.*):[^:]*$")
    -- A name with no set id is no set asynq or asyncq made: it is only unlisted.
    if group then
      local set = ARGV[2] .. rest
      local members = ARGV[2] .. group
      local entries = redis.call("ZRANGE", set, 0, -1, "WITHSCORES")
      for i = 1, #entries, 2 do
        redis.call("ZADD", members, entries[i + 1], entries[i])
      end
      redis.call("DEL", set)
      if #entries > 0 then
        redis.call("SADD", KEYS[2], group)
      end
    end
  end
  redis.call("ZREM", KEYS[1], name)
end
return #stale
