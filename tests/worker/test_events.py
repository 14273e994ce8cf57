"""Applying webhook events: how long an event for a busy job waits before it is tried again."""

from __future__ import annotations

from extendq.worker.events import BUSY_FIRST_S, BUSY_MAX_S, busy_delay_s


def test_busy_event_waits_short_at_first_then_doubles_up_to_the_cap() -> None:
    delays = [busy_delay_s(retries) for retries in range(8)]
    assert delays[0] == BUSY_FIRST_S
    assert delays[:6] == [BUSY_FIRST_S * 2**n for n in range(6)]
    assert delays[6:] == [BUSY_MAX_S, BUSY_MAX_S]


def test_busy_event_delay_stays_capped_however_often_it_was_tried() -> None:
    # Never a tight loop, never a long wait held as a countdown, and no overflow after days of tries
    assert {busy_delay_s(retries) for retries in (50, 10_000, 10**9)} == {BUSY_MAX_S}
    assert busy_delay_s(-1) == BUSY_FIRST_S
