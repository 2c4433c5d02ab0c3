-- task_info: one task's message, state, result and the score of its state.
--
-- KEYS[1] = asynq:{q}:t:<id>   task hash
-- KEYS[2] = asynq:{q}:lease    lease set
-- KEYS[3] = asynq:{q}:slot-guard   never exists: while the slot migrates, the call waits
-- ARGV[1] = task id
-- ARGV[2] = queue key prefix asynq:{q}:
-- DERIVED = ARGV[2] .. state -> asynq:{q}:<state>; ARGV[2] .. "g:" .. group -> asynq:{q}:g:<group>
-- RETURNS = msg, state, result, score ("" when the state has none); nil if no such task
local fields = redis.call("HMGET", KEYS[1], "msg", "state", "result", "group")
if not fields[1] then
  return nil
end
local state = fields[2] or ""
local score = ""
if state == "active" then
  score = redis.call("ZSCORE", KEYS[2], ARGV[1]) or ""
elseif state == "scheduled" or state == "retry" or state == "archived" or state == "completed" then
  score = redis.call("ZSCORE", ARGV[2] .. state, ARGV[1]) or ""
elseif state == "aggregating" and fields[4] then
  score = redis.call("ZSCORE", ARGV[2] .. "g:" .. fields[4], ARGV[1]) or ""
end
return {fields[1], state, fields[3] or "", score}
