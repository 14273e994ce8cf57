"""Sliding-window limits: never more than the limit in any window, and an honest Retry-After."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from extendq.emulator.profiles import RateLimit
from extendq.emulator.ratelimit import RateLimiter, SlidingWindow

NOW = 1_800_000_000.0


def test_admits_up_to_the_limit_then_asks_to_wait() -> None:
    window = SlidingWindow(3, 1.0)
    assert [window.admit(10.0), window.admit(10.1), window.admit(10.2)] == [None, None, None]
    assert window.admit(10.3) == 1
    assert window.admit(11.0) is None  # the admission at 10.0 has left the window


def test_retry_after_is_rounded_up_to_whole_seconds() -> None:
    window = SlidingWindow(2, 60.0)
    window.admit(0.0)
    window.admit(30.0)
    assert window.admit(30.5) == 30  # 0.0 leaves at 60.0
    assert window.admit(60.0) is None


def test_rejected_requests_do_not_count() -> None:
    window = SlidingWindow(1, 1.0)
    window.admit(0.0)
    for step in range(9):
        assert window.admit(0.1 * (step + 1)) is not None
    assert window.admit(1.0) is None


@given(st.lists(st.floats(min_value=0, max_value=20, allow_nan=False), min_size=1, max_size=200), st.integers(1, 6))
def test_no_window_of_one_second_holds_more_than_the_limit(offsets: list[float], limit: int) -> None:
    window = SlidingWindow(limit, 1.0)
    admitted = [t for t in sorted(offsets) if window.admit(t) is None]
    for start in admitted:
        assert sum(1 for t in admitted if start <= t < start + 1.0) <= limit


@given(st.lists(st.floats(min_value=0, max_value=5, allow_nan=False), min_size=1, max_size=50), st.integers(1, 5))
def test_waiting_the_retry_after_is_enough(offsets: list[float], limit: int) -> None:
    window = SlidingWindow(limit, 1.0)
    for at in sorted(NOW + offset for offset in offsets):  # unix times, as the emulator sees them
        retry_after = window.admit(at)
        if retry_after is not None:
            assert window.admit(at + retry_after) is None
            return


def test_limiter_without_limits_admits_everything() -> None:
    limiter = RateLimiter(None)
    assert all(limiter.admit_request(0.0) is None for _ in range(1000))
    assert limiter.admit_runs(0.0, 1000) is None


def test_runs_per_minute_counts_runs() -> None:
    limiter = RateLimiter(RateLimit(runs_per_minute=80))
    assert all(limiter.admit_runs(i / 100, 1) is None for i in range(80))
    assert limiter.admit_runs(1.0, 1) == 59  # the first run leaves the window at 60.0
    assert limiter.admit_runs(60.0, 1) is None
