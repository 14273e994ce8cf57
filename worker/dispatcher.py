"""The dispatcher: claims due jobs from the Redis schedule and hands each to a task, inside every worker."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from extendq.worker.store import RedisJobStore

log = logging.getLogger("extendq.dispatcher")
Send = Callable[[Sequence[tuple[str, float]]], None]


@dataclass(kw_only=True)
class Dispatcher:
    """Polls the due set; every worker runs one, and claims are atomic, so each due job is sent once."""

    store: RedisJobStore
    send: Send
    interval_s: float = 0.05
    batch: int = 500
    lease_s: float = 120.0
    # Claimed jobs are held on this short lease until their messages are sent, then on `lease_s` (None: on
    # `lease_s` at once): a dispatcher that dies between the two leaves its claims for this long only.
    send_lease_s: float | None = None
    clock: Callable[[], float] = time.time
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def run_once(self) -> int:
        """Claim and send the jobs due now; how many were sent."""
        now = self.clock()
        first = self.lease_s if self.send_lease_s is None else min(self.send_lease_s, self.lease_s)
        claimed = self.store.claim_due(now=now, limit=self.batch, lease_s=first)
        if claimed:
            self.send(claimed)
            if first < self.lease_s:
                self.store.extend_claims(claimed, due_at=now + self.lease_s)
        return len(claimed)

    def start(self) -> None:
        """Run in a daemon thread until `stop()`."""
        self._thread = threading.Thread(target=self._loop, name="extendq-dispatcher", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Ask the loop to end and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                sent = self.run_once()
            except Exception as exc:  # a broken Redis connection must not kill the thread: back off, retry
                log.warning("dispatcher pass failed, retrying in 1s: %s", exc)
                self._stop.wait(1.0)
                continue
            if sent < self.batch:
                self._stop.wait(self.interval_s)
