-- extend_leases: asynq's ExtendLease (ZADD XX, so that a lease the recoverer has removed
-- is not revived), as a script: it then goes over the worker's lean link to the queue's
-- master like its other calls, not through redis-py, whose reading of the cluster's
-- layout can wait on a frozen node while every redis-py call waits behind it.
--
-- KEYS[1] = asynq:{q}:lease
-- ARGV[1] = the new expiry, Unix seconds
-- ARGV[2] = the first task id; the others follow
-- RETURNS = nothing
for i = 2, #ARGV do
  redis.call("ZADD", KEYS[1], "XX", ARGV[1], ARGV[i])
end
