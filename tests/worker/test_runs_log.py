"""Runs per minute held by the log of creates, on a real Redis: never more than the limit in any window, every slot
held once, a late slot given back and taken again."""

from __future__ import annotations

import random
import threading
import time

import pytest
import redis

from extendq.worker.jobs import JobRunner
from extendq.worker.keys import Keys
from extendq.worker.models import JobRequest
from extendq.worker.ratelimit import Bucket, Grant, Limits, RateLimiter
from extendq.worker.spending import hold
from extendq.worker.store import RedisJobStore
from tests.support.fakes import FakeApi, Results

KEYS = Keys("extendq-rl:")
LOG = "extendq-rl:limit:default:runs_log"
SPAN_S = 60.6  # a minute plus the limiter's headroom


def limiter(client: redis.Redis, runs_per_minute: float, **limits: float) -> RateLimiter:
    return RateLimiter(client, keys=KEYS, limits=Limits(runs_per_minute=runs_per_minute, **limits))  # type: ignore[arg-type]


def logged(client: redis.Redis) -> list[float]:
    return sorted(score for _, score in client.zrange(LOG, 0, -1, withscores=True))


def most_in_a_window(times: list[float]) -> int:
    """The most log times within any span shorter than SPAN_S (less a microsecond of float rounding)."""
    times = sorted(times)
    return max((sum(1 for t in times if start <= t < start + SPAN_S - 1e-6) for start in times), default=0)


def test_the_limit_goes_at_once_and_the_next_create_waits_for_the_window(redis_client: redis.Redis) -> None:
    shared = limiter(redis_client, runs_per_minute=6)
    grants = [shared.reserve(Bucket.RUNS) for _ in range(6)]
    assert all(grant.now for grant in grants)
    # The seventh is more than the 60 s a job may reserve ahead: nothing is held for it
    seventh = shared.reserve(Bucket.RUNS)
    assert not seventh.reserved and len(logged(redis_client)) == 6
    # Asked to wait longer, it is held exactly one span after the first
    later = shared.reserve(Bucket.RUNS, max_wait_s=120)
    assert later.reserved and later.slot == pytest.approx(_slot(grants[0]) + SPAN_S, abs=1e-6)


def test_no_window_ever_holds_more_than_the_limit_as_slots_are_given_back_and_taken(
    redis_client: redis.Redis,
) -> None:
    # Given 5 runs a minute, and 60 reservations far ahead, a third of them given back as another is taken
    shared, rand = limiter(redis_client, runs_per_minute=5), random.Random(18)
    held: list[float] = []
    released = 0
    for _ in range(60):
        release = held.pop(rand.randrange(len(held))) if held and rand.random() < 0.33 else None
        released += release is not None
        grant = shared.reserve(Bucket.RUNS, max_wait_s=10_000, release=release, keep_late_s=rand.choice([0, 1]))
        assert grant.reserved
        held.append(_slot(grant))
    # Then the log holds exactly the slots held (none lost, none twice), and no window more than five of them
    assert released > 10 and len(set(held)) == len(held) == 60 - released
    assert logged(redis_client) == sorted(held)
    assert most_in_a_window(held) == 5


def test_new_creates_leave_two_request_intervals_between_them(redis_client: redis.Redis) -> None:
    # Given 6 runs a minute and 10 requests a second (an interval of 0.115 s)
    shared = limiter(redis_client, runs_per_minute=6, requests_per_second=10)
    # When the minute's creates are reserved at once
    slots = [_slot(shared.reserve(Bucket.RUNS)) for _ in range(6)]
    # Then they are spread 0.23 s apart (computed slots), so the burst leaves half the requests to other calls
    gaps = [b - a for a, b in zip(slots, slots[1:], strict=False)]
    assert all(gap == pytest.approx(0.23, abs=1e-5) for gap in gaps), gaps


def test_concurrent_takers_hold_every_slot_once_and_never_overfill_a_window(redis_client: redis.Redis) -> None:
    # Given eight threads, each with its own limiter on the same Redis (as processes would be), 20 runs a minute
    taken: list[float] = []
    lock = threading.Lock()

    def taker(seed: int) -> None:
        mine, rand = (
            limiter(redis.Redis(connection_pool=redis_client.connection_pool), runs_per_minute=20),
            random.Random(seed),
        )
        slots: list[float] = []
        for _ in range(15):
            release = slots.pop() if slots and rand.random() < 0.3 else None
            slots.append(_slot(mine.reserve(Bucket.RUNS, max_wait_s=10_000, release=release)))
        with lock:
            taken.extend(slots)

    threads = [threading.Thread(target=taker, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then every slot a thread holds is in the log once, the log holds nothing else, and no window more than 20
    assert len(set(taken)) == len(taken) and logged(redis_client) == sorted(taken)
    assert most_in_a_window(taken) == 20


def test_a_late_slot_is_taken_again_now_when_the_window_allows(redis_client: redis.Redis) -> None:
    # Given 2 runs a minute, both taken
    shared = limiter(redis_client, runs_per_minute=2)
    first, second = shared.reserve(Bucket.RUNS), shared.reserve(Bucket.RUNS)
    assert first.now and second.now and not shared.reserve(Bucket.RUNS).reserved
    # When the first one's step comes late and gives its slot back
    again = shared.reserve(Bucket.RUNS, release=_slot(first))
    # Then it goes now on a slot of its own, and the log still holds two
    assert again.now and again.slot != first.slot
    assert logged(redis_client) == sorted([_slot(second), _slot(again)])


def test_a_late_slot_that_fits_nowhere_near_now_is_kept_only_within_its_grace(redis_client: redis.Redis) -> None:
    # Given 1 run a minute: one slot taken now, the next held a span later
    shared = limiter(redis_client, runs_per_minute=1)
    first = shared.reserve(Bucket.RUNS)
    next_one = shared.reserve(Bucket.RUNS, max_wait_s=120)
    assert first.now and next_one.reserved
    # When the first one's step gives it back: moved to now it would crowd the next one's window
    kept = shared.reserve(Bucket.RUNS, release=_slot(first), keep_late_s=60)
    # Then, within its grace, it is spent as it was
    assert kept.now and kept.slot == first.slot
    assert logged(redis_client) == [_slot(first), _slot(next_one)]
    # And past its grace it is given back, and nothing is held within a minute
    dropped = shared.reserve(Bucket.RUNS, release=_slot(first), keep_late_s=0)
    assert not dropped.reserved and logged(redis_client) == [_slot(next_one)]


def test_usage_counts_the_creates_held_ahead(redis_client: redis.Redis) -> None:
    shared = limiter(redis_client, runs_per_minute=6)
    for _ in range(8):
        shared.reserve(Bucket.RUNS, max_wait_s=120)
    assert shared.usage()["buckets"]["runs"] == {"limit": "6/min", "reserved": 2.0}


def test_a_create_whose_step_came_late_takes_its_run_again(redis_client: redis.Redis) -> None:
    # Given a job holding the one run slot of the minute, reserved a moment before its step
    store = RedisJobStore(redis_client, keys=KEYS, result_ttl_s=60)
    shared = limiter(redis_client, runs_per_minute=1, requests_per_second=100)
    store.create(
        "job-1",
        JobRequest.parse({"workflow": "workflow_x", "file": {"id": "file_1"}}),
        now=time.time(),
        lease_s=1,
        secrets=None,
    )
    slot = _slot(shared.reserve(Bucket.RUNS))
    record = store.load("job-1")
    assert record is not None
    hold(store, record, {Bucket.RUNS.value: slot})
    api = FakeApi()
    runner = JobRunner(api=api, store=store, publisher=Results(), limiter=shared)
    _until_server_time_passes(shared, slot + 0.4)  # the step comes later than the slot's grace (0.3 s)
    # When its step runs
    runner.advance("job-1")
    # Then the run was created on the slot taken again now: one create, one slot in the log, not the late one
    assert api.calls == ["create"]
    assert len(logged(redis_client)) == 1 and logged(redis_client)[0] > slot


def _until_server_time_passes(shared: RateLimiter, moment: float) -> None:
    while shared.server_time() <= moment:
        time.sleep(0.05)


def _slot(grant: Grant) -> float:
    assert grant.slot is not None
    return grant.slot
