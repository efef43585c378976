"""The `redis` probe family: PING, password required, persistence and key TTLs (3.2.x).

`probe` holds the kind and its aspects, `persistence` and `ttl` judge what the server
says; talking to Redis is the Redis transport's (`exporter.transport.redis`).
"""
