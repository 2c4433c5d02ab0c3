-- write_scheduler_entries: a running scheduler's entries, for asynq's CLI and web UI.
-- Semantics of asynq's writeSchedulerEntriesCmd.
--
-- KEYS[1] = asynq:schedulers:{<host>:<pid>:<scheduler-id>}   list of SchedulerEntry
-- ARGV[1] = time to live in whole seconds
-- ARGV[2] = first SchedulerEntry protobuf, and so on
-- DERIVED = none
-- RETURNS = "OK"
redis.call("DEL", KEYS[1])
for i = 2, #ARGV do
  redis.call("LPUSH", KEYS[1], ARGV[i])
end
redis.call("EXPIRE", KEYS[1], ARGV[1])
return redis.status_reply("OK")
