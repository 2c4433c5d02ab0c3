-- remove_queue: delete a queue and every key a list or set of it names. (The keys no list
-- names, fire locks and dequeue records, are found with SCAN afterwards: see
-- InspectBroker.delete_unlisted.)
-- asynq's removeQueueCmd leaves completed tasks, groups, counters, locks and the pause
-- flag; this removes them all. Refuses while tasks run; without force, refuses any task.
--
-- KEYS[1] = asynq:{q}:pending            pending list
-- KEYS[2] = asynq:{q}:active             active list
-- KEYS[3] = asynq:{q}:scheduled          scheduled set
-- KEYS[4] = asynq:{q}:retry              retry set
-- KEYS[5] = asynq:{q}:archived           archived set
-- KEYS[6] = asynq:{q}:completed          completed set
-- KEYS[7] = asynq:{q}:lease              lease set
-- KEYS[8] = asynq:{q}:groups             set of group names
-- KEYS[9] = asynq:{q}:aggregation_sets   aggregation set index
-- KEYS[10] = asynq:{q}:paused            pause flag
-- KEYS[11] = asynq:{q}:processed         total processed counter
-- KEYS[12] = asynq:{q}:failed            total failed counter
-- KEYS[13] = asynq:{q}:slot-guard   never exists: while the slot migrates, the call waits
-- ARGV[1] = "1" to delete tasks too, "0" to refuse a queue that has any
-- ARGV[2] = queue key prefix asynq:{q}:
-- ARGV[3] = unique lock prefix asynq:{q}:unique:
-- ARGV[4] = first of the day names (yyyy-mm-dd) whose daily counters to delete, and so on
-- DERIVED = ARGV[2] .. "t:" .. id -> asynq:{q}:t:<id>; ARGV[2] .. suffix -> asynq:{q}:g:<group>[:<set>]; ARGV[2] .. "processed:" .. day -> asynq:{q}:processed:<day>; ARGV[3] .. suffix -> asynq:{q}:unique:<type>:<md5>
-- RETURNS = 1 removed, -1 tasks are running, -2 the queue has tasks (and no force)
if redis.call("LLEN", KEYS[2]) > 0 then
  return -1
end
-- Group and aggregation-set keys, as suffixes after the queue prefix.
local suffixes = {}
for _, group in ipairs(redis.call("SMEMBERS", KEYS[8])) do
  suffixes[#suffixes + 1] = "g:" .. group
end
for _, name in ipairs(redis.call("ZRANGE", KEYS[9], 0, -1)) do
  if string.sub(name, 1, #ARGV[2]) == ARGV[2] then
    suffixes[#suffixes + 1] = string.sub(name, #ARGV[2] + 1)
  end
end
local total = redis.call("LLEN", KEYS[1])
for i = 3, 6 do
  total = total + redis.call("ZCARD", KEYS[i])
end
for _, suffix in ipairs(suffixes) do
  local members = ARGV[2] .. suffix
  total = total + redis.call("ZCARD", members)
end
if total > 0 and ARGV[1] ~= "1" then
  return -2
end
local function drop(id)
  local key = ARGV[2] .. "t:" .. id
  local lock = redis.call("HGET", key, "unique_key")
  if lock and string.sub(lock, 1, #ARGV[3]) == ARGV[3] then
    local owned = ARGV[3] .. string.sub(lock, #ARGV[3] + 1)
    if redis.call("GET", owned) == id then
      redis.call("DEL", owned)
    end
  end
  redis.call("DEL", key)
end
for _, id in ipairs(redis.call("LRANGE", KEYS[1], 0, -1)) do
  drop(id)
end
for i = 3, 6 do
  for _, id in ipairs(redis.call("ZRANGE", KEYS[i], 0, -1)) do
    drop(id)
  end
end
for _, suffix in ipairs(suffixes) do
  local members = ARGV[2] .. suffix
  for _, id in ipairs(redis.call("ZRANGE", members, 0, -1)) do
    drop(id)
  end
  redis.call("DEL", members)
end
for i = 1, 12 do
  redis.call("DEL", KEYS[i])
end
for i = 4, #ARGV do
  redis.call("DEL", ARGV[2] .. "processed:" .. ARGV[i])
  redis.call("DEL", ARGV[2] .. "failed:" .. ARGV[i])
end
return 1
