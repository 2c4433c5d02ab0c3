-- write_server_state: a running server's heartbeat record and its active workers.
-- Semantics of asynq's writeServerStateCmd. Both keys share the tag of the server.
--
-- KEYS[1] = asynq:servers:{<host>:<pid>:<server-id>}   ServerInfo (string)
-- KEYS[2] = asynq:workers:{<host>:<pid>:<server-id>}   task id -> WorkerInfo (hash)
-- ARGV[1] = time to live in whole seconds
-- ARGV[2] = ServerInfo protobuf
-- ARGV[3] = first task id, then its WorkerInfo, and so on in pairs (optional)
-- DERIVED = none
-- RETURNS = "OK"
redis.call("SETEX", KEYS[1], ARGV[1], ARGV[2])
redis.call("DEL", KEYS[2])
for i = 3, #ARGV, 2 do
  redis.call("HSET", KEYS[2], ARGV[i], ARGV[i + 1])
end
redis.call("EXPIRE", KEYS[2], ARGV[1])
return redis.status_reply("OK")
