"""Periodic work: one run of a periodic job at a time across the pool (a Redis lock with a TTL, released by its
holder only), and the loop of a worker's background threads."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import redis

from extendq.errors import ExtendqError

log = logging.getLogger("extendq.periodic")

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


def repeat(
    step: Callable[[], object],
    *,
    every_s: float | Callable[[], float],
    stop: Callable[[float], bool],
    what: str,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Run `step` every `every_s` (a callable is asked after each step), from one start to the next, until
    `stop(timeout)` answers True; a failure (Redis, Extend) is logged as `what` failed and the loop goes on.

    A step's own time counts towards the interval (a sweep that takes a second under load still starts every
    `every_s`, not every `every_s` plus a second); after a step longer than that, a tenth of it passes first.
    """
    while True:
        started = clock()
        try:
            step()
        except (ExtendqError, redis.RedisError) as exc:
            log.warning("%s failed, trying again next interval: %s", what, exc)
        interval = every_s() if callable(every_s) else every_s
        if stop(max(interval - (clock() - started), interval / 10)):
            return
