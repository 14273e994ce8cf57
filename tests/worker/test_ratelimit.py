"""The shared limiter, on a real Redis: spacing, all-or-nothing buckets, reservations in line, pauses."""

from __future__ import annotations

import threading

import pytest
import redis

from extendq.worker.keys import Keys
from extendq.worker.ratelimit import REQUEST_GRACE_S, Bucket, Grant, Limits, RateLimiter, RunsWindow


def limiter(client: redis.Redis, runs_window: RunsWindow = RunsWindow.GCRA, **limits: float) -> RateLimiter:
    """A limiter on the shared test keys; runs one per interval (GCRA) unless told (the log: test_runs_log.py)."""
    return RateLimiter(
        client,
        keys=Keys("extendq-rl:"),
        limits=Limits(runs_window=runs_window, **limits),  # type: ignore[arg-type]
    )


def test_no_limits_means_no_wait(redis_client: redis.Redis) -> None:
    assert all(limiter(redis_client).reserve(Bucket.REQUESTS).now for _ in range(100))


def test_reservations_line_up_at_the_rate(redis_client: redis.Redis) -> None:
    # Given 10 requests per second (spaced 0.115 s with the headroom)
    shared = limiter(redis_client, requests_per_second=10)
    # When 20 calls ask at once
    grants, slots = [], []
    for _ in range(20):
        grants.append(shared.reserve(Bucket.REQUESTS))
        slots.append(_next_slot(redis_client))  # each reservation moves the bucket's next slot (Redis time) on
    # Then the first goes now and each other is reserved exactly one interval after the previous
    assert grants[0].now and all(grant.reserved and not grant.now for grant in grants[1:])
    gaps = [b - a for a, b in zip(slots, slots[1:], strict=False)]
    assert all(abs(gap - 0.115) < 1e-3 for gap in gaps), gaps


def _slot(grant: Grant) -> float:
    assert grant.slot is not None
    return grant.slot


def _next_slot(client: redis.Redis) -> float:
    return float(client.get("extendq-rl:limit:default:requests") or 0)


def test_no_one_second_window_ever_holds_more_than_the_limit(redis_client: redis.Redis) -> None:
    shared = limiter(redis_client, requests_per_second=10)
    times = sorted(_slot(shared.reserve(Bucket.REQUESTS)) for _ in range(50))  # when each call may go (Redis time)
    assert max(sum(1 for t in times if s <= t < s + 1.0) for s in times) <= 10


def test_buckets_are_taken_together_or_not_at_all(redis_client: redis.Redis) -> None:
    shared = limiter(redis_client, requests_per_second=100, runs_per_minute=6)
    first = shared.reserve(Bucket.REQUESTS, Bucket.RUNS)
    second = shared.reserve(Bucket.REQUESTS, Bucket.RUNS)
    assert first.now and second.reserved
    assert _slot(second) - _slot(first) == pytest.approx(60.6 / 6, abs=1e-3)


def test_a_reserved_run_token_does_not_hold_up_requests(redis_client: redis.Redis) -> None:
    # As jobs reserve: the run token first (seconds away), the request token only when that one is due
    shared = limiter(redis_client, requests_per_second=100, runs_per_minute=6)
    assert shared.reserve(Bucket.RUNS).now
    assert shared.reserve(Bucket.RUNS).wait_s > 9
    assert all(shared.reserve(Bucket.REQUESTS).wait_s < 0.5 for _ in range(20))


def test_far_waits_are_not_reserved(redis_client: redis.Redis) -> None:
    shared = limiter(redis_client, runs_per_minute=1)
    assert shared.reserve(Bucket.RUNS).now
    far = shared.reserve(Bucket.RUNS, max_wait_s=5)
    assert not far.reserved and far.wait_s > 50
    # Nothing was taken by the refused reservation: the next one lines up at the same moment
    assert _slot(shared.reserve(Bucket.RUNS, max_wait_s=120)) == pytest.approx(_slot(far), abs=1e-3)


def test_a_429_pauses_every_bucket_for_everyone(redis_client: redis.Redis) -> None:
    first, other = limiter(redis_client), limiter(redis_client, requests_per_second=1000)
    before = first.server_time()
    first.pause(2.0)
    after = first.server_time()
    grant = other.reserve(Bucket.REQUESTS)
    assert grant.reserved and before + 2.0 <= _slot(grant) <= after + 2.0


def test_overlapping_pauses_end_at_the_latest_asked_not_their_sum(redis_client: redis.Redis) -> None:
    # Given a pause of 1 s, then more 429s within it: one asking 1 s again, one asking less
    shared = limiter(redis_client, requests_per_second=1000)
    before = shared.server_time()
    shared.pause(1.0)
    shared.pause(1.0)
    after = shared.server_time()
    shared.pause(0.2)
    # Then the pool waits 1 s from the last 1 s ask, not 2 s, and the shorter ask did not cut the pause short
    grant = shared.reserve(Bucket.REQUESTS)
    assert before + 1.0 <= _slot(grant) <= after + 1.0


def test_calls_held_up_by_a_pause_line_up_after_it_instead_of_stampeding(redis_client: redis.Redis) -> None:
    shared = limiter(redis_client, requests_per_second=10)
    before = shared.server_time()
    shared.pause(0.5)
    after = shared.server_time()
    slots = [_slot(shared.reserve(Bucket.REQUESTS)) for _ in range(5)]
    assert before + 0.5 <= slots[0] <= after + 0.5
    gaps = [b - a for a, b in zip(slots, slots[1:], strict=False)]
    assert all(abs(gap - 0.115) < 1e-3 for gap in gaps), gaps


def test_concurrent_callers_share_one_budget(redis_client: redis.Redis) -> None:
    # Given eight threads, each with its own limiter object on the same Redis (as processes would be)
    slots: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        mine = limiter(redis.Redis(connection_pool=redis_client.connection_pool), requests_per_second=20)
        for _ in range(10):
            slot = _slot(mine.reserve(Bucket.REQUESTS))
            with lock:
                slots.append(slot)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then the 80 reservations are 80 moments, no two closer than one interval (two taken at once would share
    # one); slots come back from Lua with 14 significant digits, 0.1 ms at this epoch
    gaps = [b - a for a, b in zip(sorted(slots), sorted(slots)[1:], strict=False)]
    assert len(slots) == 80 and min(gaps) >= 1.15 / 20 - 1e-3, min(gaps)


def test_usage_shows_the_tokens_reserved_ahead_and_the_pauses_of_the_last_hour(redis_client: redis.Redis) -> None:
    # Given 10 requests a second, 6 runs a minute, and five requests reserved at once
    shared = limiter(redis_client, requests_per_second=10, runs_per_minute=6)
    reserved_at = shared.server_time()
    for _ in range(5):
        shared.reserve(Bucket.REQUESTS)
    # And two 429s, plus one counted in a minute more than an hour ago
    shared.pause(1.0)
    paused_at = shared.server_time()
    shared.pause(2.0)
    minute = int(float(redis_client.time()[0]) // 60)
    redis_client.hset("extendq-rl:limit:default:pauses", str(minute - 61), 7)
    # When the budget is read
    usage = shared.usage()
    read_at = shared.server_time()
    # Then the requests bucket holds the five tokens less what time has spent since, runs none
    spent = (read_at - reserved_at) / 0.115
    assert (
        usage["buckets"]["requests"]["limit"] == "10/s"
        and 5 - spent - 0.01 <= usage["buckets"]["requests"]["reserved"] <= 5
    )
    assert usage["buckets"]["runs"] == {"limit": "6/min", "reserved": 0.0}
    # And the pool is paused for the 2 s less what has passed, after two pauses within the hour
    assert 2.0 - (read_at - paused_at) - 0.001 <= usage["paused_for_s"] <= 2.0 and usage["pauses_last_hour"] == 2


def test_the_pause_count_keeps_only_the_last_hour(redis_client: redis.Redis) -> None:
    shared = limiter(redis_client)
    key = "extendq-rl:limit:default:pauses"
    minute = int(float(redis_client.time()[0]) // 60)
    redis_client.hset(key, mapping={str(minute - n): 1 for n in range(1, 70)})
    shared.pause(0.01)
    fields = sorted(int(f) for f in redis_client.hkeys(key))
    assert fields[0] == minute - 59 and fields[-1] == minute and 0 < redis_client.ttl(key) <= 3660
    assert shared.usage()["buckets"] == {} and shared.usage()["pauses_last_hour"] == 60


def test_a_turn_slept_past_its_grace_takes_another_token(redis_client: redis.Redis) -> None:
    # Given a limiter at 10/s whose next slot is taken, and a host that oversleeps its first wait by 0.3 s
    shared = limiter(redis_client, requests_per_second=10)
    assert shared.reserve(Bucket.REQUESTS).now
    missed = _next_slot(redis_client)
    naps: list[float] = []

    def oversleep(seconds: float) -> bool:
        naps.append(seconds)
        threading.Event().wait(seconds + (0.3 if len(naps) == 1 else 0.0))
        return False

    # When a caller waits for its turn
    turn = shared.wait_turn(oversleep, max_wait_s=5.0)
    # Then the slot it missed is left spent, and the call goes on a second token, taken after the first's grace
    assert turn is None and naps
    assert _next_slot(redis_client) > missed + 0.115 + REQUEST_GRACE_S


def test_a_turn_on_time_goes_on_its_one_token(redis_client: redis.Redis) -> None:
    shared = limiter(redis_client, requests_per_second=10)
    assert shared.reserve(Bucket.REQUESTS).now
    naps: list[float] = []
    turn = shared.wait_turn(lambda seconds: naps.append(seconds) or threading.Event().wait(seconds) and False)
    assert turn is None and len(naps) == 1


def test_no_turn_within_reach_says_when_to_come_back_and_a_stop_ends_the_wait(redis_client: redis.Redis) -> None:
    shared = limiter(redis_client, requests_per_second=10)
    shared.pause(30.0)
    back = shared.wait_turn(lambda _: False, max_wait_s=5.0)
    assert back is not None and 25.0 < back <= 30.0
    redis_client.delete("extendq-rl:limit:default:pause")
    assert shared.reserve(Bucket.REQUESTS).now
    assert shared.wait_turn(lambda _: True) == 0.0


def test_granted_request_tokens_are_counted_per_second_of_their_slot(redis_client: redis.Redis) -> None:
    # Given a limiter of 10 requests a second with no burst
    limiter = RateLimiter(redis_client, keys=Keys(), limits=Limits(requests_per_second=10, burst=1))
    # When 25 request tokens are reserved (two and a half seconds of them)
    grants = [limiter.reserve(Bucket.REQUESTS) for _ in range(25)]
    # Then each second of a slot counts the tokens granted for it, 25 in all, none above the rate plus one
    counted = limiter.granted_per_second()
    assert sum(counted.values()) == 25
    assert all(count <= 11 for count in counted.values())
    assert set(counted) == {int(grant.slot) for grant in grants if grant.slot is not None}
