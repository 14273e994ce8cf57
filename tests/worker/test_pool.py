"""The pool's registry of live workers, on a real Redis: heartbeats, liveness by each worker's own interval,
stale entries dropped, removal on stop, and the queues the live workers consume."""

from __future__ import annotations

import redis

from extendq.worker.keys import Keys
from extendq.worker.pool import WorkerEntry, WorkerRegistry


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def entry(name: str, pid: int, *queues: str, interval_s: float = 10.0) -> WorkerEntry:
    return WorkerEntry(
        name=name,
        pid=pid,
        concurrency=4,
        queues=queues or ("extendq", "extendq.checks"),
        started_at=900.0,
        heartbeat_at=0.0,
        interval_s=interval_s,
    )


def test_a_beating_worker_is_alive_with_its_fresh_heartbeat(redis_client: redis.Redis) -> None:
    clock = Clock()
    registry = WorkerRegistry(redis_client, keys=Keys(), clock=clock)
    written = registry.beat(entry("celery@a", 11))
    assert written.heartbeat_at == 1_000.0
    clock.now += 5
    (alive,) = registry.alive()
    assert alive == written and alive.to_json(clock.now)["heartbeat_age_s"] == 5.0
    assert 0 < redis_client.ttl(Keys().workers) <= 100  # gone ten intervals after the last beat of the pool
    assert alive.to_json(clock.now)["queues"] == ["extendq", "extendq.checks"]


def test_two_workers_with_one_node_name_are_two_entries(redis_client: redis.Redis) -> None:
    registry = WorkerRegistry(redis_client, keys=Keys(), clock=Clock())
    registry.beat(entry("celery@host", 11))
    registry.beat(entry("celery@host", 12, "celery"))
    assert [w.pid for w in registry.alive()] == [11, 12]
    assert registry.consumed() == {"extendq", "extendq.checks", "celery"}


def test_a_silent_worker_is_not_alive_after_three_intervals_and_dropped_after_ten(redis_client: redis.Redis) -> None:
    # Given two workers, one of which stops beating without saying so
    clock = Clock()
    registry = WorkerRegistry(redis_client, keys=Keys(), clock=clock)
    registry.beat(entry("celery@gone", 1))
    # When three of its intervals and a bit pass while the other beats
    clock.now += 31
    registry.beat(entry("celery@here", 2))
    # Then only the one beating is alive, though the other's entry is kept for now
    assert [w.name for w in registry.alive()] == ["celery@here"]
    assert redis_client.hlen(Keys().workers) == 2
    # And ten intervals on, the next beat drops it
    clock.now += 70
    registry.beat(entry("celery@here", 2))
    assert redis_client.hkeys(Keys().workers) == ["celery@here:2"]


def test_a_stopping_worker_removes_its_entry(redis_client: redis.Redis) -> None:
    registry = WorkerRegistry(redis_client, keys=Keys(), clock=Clock())
    written = registry.beat(entry("celery@a", 11))
    registry.remove(written)
    assert registry.alive() == [] and registry.consumed() == frozenset()


def test_an_entry_it_cannot_read_is_skipped(redis_client: redis.Redis) -> None:
    registry = WorkerRegistry(redis_client, keys=Keys(), clock=Clock())
    redis_client.hset(Keys().workers, "other:1", '{"name": "x"}')
    registry.beat(entry("celery@a", 11))
    assert [w.name for w in registry.alive()] == ["celery@a"]
