"""One run of a periodic job at a time across the pool: a Redis lock with a TTL, released by its holder only."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@contextmanager
def exclusive(client: redis.Redis, key: str, *, ttl_s: float) -> Iterator[bool]:
    """Hold `key` while the body runs; yields False (and the body should do nothing) when another run holds it.

    The TTL bounds how long a crashed holder blocks the next run; it should exceed the task's time limit.
    """
    token = uuid.uuid4().hex
    held = bool(client.set(key, token, nx=True, px=max(1, int(ttl_s * 1000))))
    try:
        yield held
    finally:
        if held:
            client.eval(_RELEASE, 1, key, token)
