from __future__ import annotations

import pytest

from extendq.worker.schedule import CheckSchedule, RetryPolicy


def test_check_schedule_is_one_second_for_the_first_thirty_seconds() -> None:
    schedule = CheckSchedule(jitter=0)
    assert [schedule.base_delay_s(t) for t in (0, 10, 29.9)] == [1.0, 1.0, 1.0]


def test_check_schedule_backs_off_like_create_and_poll_then_caps() -> None:
    schedule = CheckSchedule(jitter=0)
    # The SDK's formula: n = floor(log(s*0.15 + 1) / log 1.15) with s seconds since the fast phase.
    assert schedule.base_delay_s(30.0) == pytest.approx(1.0)
    assert schedule.base_delay_s(31.0) == pytest.approx(1.15)
    assert schedule.base_delay_s(32.2) == pytest.approx(1.15**2)
    assert schedule.base_delay_s(10_000) == 30.0


def test_check_schedule_jitter_stays_within_a_quarter() -> None:
    low = CheckSchedule(rand=lambda: 0.0).delay_s(0)
    high = CheckSchedule(rand=lambda: 0.999999).delay_s(0)
    assert low == pytest.approx(0.75)
    assert high == pytest.approx(1.25, abs=1e-4)


def test_retry_backoff_grows_and_caps() -> None:
    policy = RetryPolicy(backoff_s=1, backoff_max_s=8, rand=lambda: 1.0)
    assert [policy.delay_s(n) for n in (1, 2, 3, 4, 5)] == [1, 2, 4, 8, 8]


def test_retry_never_earlier_than_retry_after() -> None:
    policy = RetryPolicy(backoff_s=1, rand=lambda: 0.0)
    assert policy.delay_s(1, retry_after_s=7) >= 7


def test_retry_budget() -> None:
    policy = RetryPolicy(budget=3)
    assert not policy.exhausted(3)
    assert policy.exhausted(4)
