"""The steps a worker process has in hand, and the heartbeat that renews their short leases while they run.

A step holds its job's lock for a short lease (`EXTENDQ_STEP_LEASE_S`), not for the whole of the lock's time:
a thread of the process running the step renews the lock every third of the lease, and with it the job's due
entry (while it is the one the step last saw), so the job never comes due while its step goes on. When the
process dies the renewals stop: the lock and the due entry lapse within one lease, and another worker's
dispatcher claims the job and takes its step. A step is still held no longer than the job lock's own time
(`EXTENDQ_JOB_LOCK_S`): a step that outlives that writes nothing, as before.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from extendq.worker.store import RedisJobStore

log = logging.getLogger("extendq.hand")


@dataclass
class HeldStep:
    """One step under way: its job, its lock's token, the due entry it last saw, and when its hold ends."""

    job_id: str
    token: str
    seen_due: float | None
    until: float


@dataclass(kw_only=True)
class StepHand:
    """The steps this process runs, kept alive by a heartbeat thread (started on first use, in each process)."""

    store: RedisJobStore
    lease_s: float
    clock: Callable[[], float] = time.time
    _held: dict[str, HeldStep] = field(default_factory=dict)
    _guard: threading.Lock = field(default_factory=threading.Lock)
    _wake: threading.Event = field(default_factory=threading.Event)
    _pid: int | None = None

    @contextmanager
    def holding(self, job_id: str, token: str, *, seen_due: float | None, hold_s: float) -> Iterator[HeldStep]:
        """Renew the step's lease (lock `token` of `job_id`) until the block ends, for at most `hold_s`."""
        now = self.clock()
        step = HeldStep(job_id, token, seen_due, now + hold_s)
        with self._guard:
            self._held[token] = step
        self._ensure_thread()
        if seen_due is not None and seen_due > now + self.lease_s:
            self._renew(step, now)  # due at a long lease end (a fresh claim): shortened now, not a beat later
        try:
            yield step
        finally:
            with self._guard:
                self._held.pop(token, None)

    def held(self) -> list[HeldStep]:
        """The steps held now."""
        with self._guard:
            return list(self._held.values())

    def beat(self) -> None:
        """Renew every held step's lease once; steps whose lock is gone, or whose hold ended, are let go."""
        now = self.clock()
        for step in self.held():
            self._renew(step, now)

    def _renew(self, step: HeldStep, now: float) -> None:
        left = step.until - now
        if left <= 0:
            self._drop(step)  # the job lock's own time is up: the lock lapses on its own
            return
        due_at = now + self.lease_s
        moved = self.store.renew_step(
            step.job_id, step.token, ttl_s=min(self.lease_s, left), seen_due=step.seen_due, due_at=due_at
        )
        if moved < 0:
            self._drop(step)
        elif moved > 0:
            step.seen_due = due_at
        else:
            step.seen_due = None  # the step rescheduled its job: what it wrote stays

    def _drop(self, step: HeldStep) -> None:
        with self._guard:
            self._held.pop(step.token, None)

    def _ensure_thread(self) -> None:
        # One heartbeat thread per process: a pool child forked from a parent that had one starts its own.
        with self._guard:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
        threading.Thread(target=self._loop, name="extendq-hand", daemon=True).start()

    def _loop(self) -> None:
        while not self._wake.wait(self.lease_s / 3):
            try:
                self.beat()
            except Exception as exc:  # Redis away: the leases lapse, as they would with the process gone
                log.warning("step lease renewal failed: %s", exc)
