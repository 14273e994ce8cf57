"""The step messages a live worker holds keep their jobs' claims on a short lease, renewed until they run.

A dispatcher claims a due job until its claim lease ends (`EXTENDQ_CLAIM_LEASE_S`, long: the message may wait
in the broker's queue). Once a worker has taken the message from the queue (reserved, or running) the worker
renews the job's claim as it takes it, then every second (or third of the step lease, `EXTENDQ_STEP_LEASE_S`,
when shorter), each time to one lease from then: a message lost with its worker (the broker gives it back only after its
visibility timeout) leaves the job claimed for one lease at most, then a live worker's dispatcher claims it
again. The lost message, when it
comes back, carries a claim that is no longer the job's and does nothing. A start message holds the claim
`new` of a job its producer recorded, so a new job lost with its worker is taken up as soon.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from extendq.worker.store import RedisJobStore

log = logging.getLogger("extendq.claims")
Held = Sequence[tuple[str, float | str]]


@dataclass(kw_only=True)
class ClaimKeeper:
    """Renews the claims of the messages `held()` lists (job id, claim), in a daemon thread until `stop()`."""

    store: RedisJobStore
    held: Callable[[], Held]
    lease_s: float
    clock: Callable[[], float] = time.time
    _stop: threading.Event = field(default_factory=threading.Event)

    def renew(self) -> int:
        """Renew once; how many jobs were still claimed by the messages held."""
        return self.store.renew_claims(self.held(), due_at=self.clock() + self.lease_s)

    def received(self, claims: Held) -> None:
        """Renew the claims of a message the worker has just taken from the queue, at once: its job may be due
        only at the long claim lease's end until then, and the worker could die before the next renewal."""
        try:
            self.store.renew_claims(claims, due_at=self.clock() + self.lease_s)
        except Exception as exc:  # the next renewal tries again
            log.warning("claim renewal failed: %s", exc)

    def start(self) -> None:
        threading.Thread(target=self._loop, name="extendq-claims", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(min(1.0, self.lease_s / 3)):
            try:
                self.renew()
            except Exception as exc:  # Redis away: the claims lapse, and the jobs come due again
                log.warning("claim renewal failed: %s", exc)
