-- add_to_group: put a new task into an aggregation group of its queue.
-- Semantics of asynq's addToGroupCmd / addToGroupUniqueCmd, with two fixes: the
-- id conflict is checked before the unique lock is taken, and a unique task
-- records its lock in `unique_key` so the lock is released when it finishes.
--
-- KEYS[1] = asynq:{q}:t:<id>              task hash
-- KEYS[2] = asynq:{q}:g:<group>           group set
-- KEYS[3] = asynq:{q}:groups              set of group names
-- KEYS[4] = asynq:{q}:unique:<type>:<md5> unique lock (optional: only for unique tasks)
-- ARGV[1] = task message (protobuf TaskMessage)
-- ARGV[2] = task id
-- ARGV[3] = now in Unix seconds (the score)
-- ARGV[4] = group name
-- ARGV[5] = unique lock TTL in whole seconds (used only with KEYS[4])
-- ARGV[6] = scheduler fire lock asynq:{q}:fired:<entry>:<time>, or "" (see the Scheduler);
--           it holds the id of the task its fire stored, or "duplicate"
-- ARGV[7] = fire lock TTL in whole seconds
-- ARGV[8] = "1" when this call may repeat one that was stored (a re-send after a lost reply);
--           "2" likewise, from a client that waits for replicas (see below)
-- DERIVED = ARGV[6] -> asynq:{q}:fired:<entry>:<time>
-- RETURNS = 1 added, 0 the task id is taken, -1 a unique lock is held (duplicate),
--           -2 another scheduler already enqueued this fire
if redis.call("EXISTS", KEYS[1]) == 1 then
  -- A re-sent call whose first attempt was stored (and its reply lost) finds its own
  -- message there: that is this call's success, not a conflict.
  if ARGV[8] ~= "0" and redis.call("HGET", KEYS[1], "msg") == ARGV[1] then
    if ARGV[8] == "2" then
      -- Written again, unchanged, so that this call counts as a write: the WAIT sent
      -- behind it then waits for the first attempt's writes too (Redis 7.2 and later).
      redis.call("HSET", KEYS[1], "msg", ARGV[1])
    end
    return 1
  end
  return 0
end
if ARGV[6] ~= "" and not redis.call("SET", ARGV[6], ARGV[2], "NX", "EX", ARGV[7]) then
  -- The lock holds the id of the task its fire stored: a re-send of that very call
  -- (its reply lost, the task run and gone since, else it was found above) stored it.
  if ARGV[8] ~= "0" and redis.call("GET", ARGV[6]) == ARGV[2] then
    return 1
  end
  return -2
end
if KEYS[4] then
  if not redis.call("SET", KEYS[4], ARGV[2], "NX", "EX", ARGV[5]) then
    if ARGV[6] ~= "" then
      redis.call("SET", ARGV[6], "duplicate", "KEEPTTL")  -- taken, but nothing stored
    end
    return -1
  end
  redis.call("HSET", KEYS[1], "msg", ARGV[1], "state", "aggregating", "group", ARGV[4],
             "unique_key", KEYS[4])
else
  redis.call("HSET", KEYS[1], "msg", ARGV[1], "state", "aggregating", "group", ARGV[4])
end
redis.call("ZADD", KEYS[2], ARGV[3], ARGV[2])
redis.call("SADD", KEYS[3], ARGV[4])
return 1
