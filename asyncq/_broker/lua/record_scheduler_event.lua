-- record_scheduler_event: one fire of a scheduler entry, kept in the entry's history.
-- Semantics of asynq's recordSchedulerEnqueueEventCmd (the newest events kept, then the
-- new one added), plus an expiry: asynq deletes an entry's history when its scheduler
-- shuts down, but asyncq's entry ids are shared by every scheduler that registers the
-- same entry, so the history stays, and goes away once the entry has stopped firing.
--
-- KEYS[1] = asynq:scheduler_history:<entry id>   SchedulerEnqueueEvent -> enqueued at
-- ARGV[1] = when the task was enqueued, Unix seconds (the score)
-- ARGV[2] = the SchedulerEnqueueEvent protobuf
-- ARGV[3] = how many events are kept, the new one included
-- ARGV[4] = seconds the history lives on unless the entry fires again
-- DERIVED = none
-- RETURNS = "OK"
redis.call("ZREMRANGEBYRANK", KEYS[1], 0, -ARGV[3])
redis.call("ZADD", KEYS[1], ARGV[1], ARGV[2])
redis.call("EXPIRE", KEYS[1], ARGV[4])
return redis.status_reply("OK")
