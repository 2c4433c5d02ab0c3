"""asynq's Redis Cluster tutorial, in Python: a client and a worker for three queues."""
