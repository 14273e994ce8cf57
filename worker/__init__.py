"""The domain of extendq: job requests, the job state machine, the Extend boundary and the Redis store."""
