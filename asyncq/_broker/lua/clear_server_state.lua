-- clear_server_state: remove a stopping server's records.
-- Semantics of asynq's clearServerStateCmd.
--
-- KEYS[1] = asynq:servers:{<host>:<pid>:<server-id>}   ServerInfo
-- KEYS[2] = asynq:workers:{<host>:<pid>:<server-id>}   WorkerInfo hash
-- DERIVED = none
-- RETURNS = "OK"
redis.call("DEL", KEYS[1])
redis.call("DEL", KEYS[2])
return redis.status_reply("OK")
