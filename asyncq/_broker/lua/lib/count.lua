-- count(key, n): included by the scripts that record a task's outcome.
-- Adds n to a counter and returns the new count. A counter holding something else than a
-- whole number (another writer's), or about to pass int64's largest value (where asynq
-- wraps its totals), starts again at n: a failed INCRBY would end this script with the
-- task's own writes done but its reply an error.
local function count(key, n)
  local counted = redis.pcall("INCRBY", key, n)
  if type(counted) == "table" then
    redis.call("SET", key, n)
    return n
  end
  return counted
end
