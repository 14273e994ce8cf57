"""Every Redis key, channel and stream extendq uses, and nothing else names them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    """Key names under one prefix, so several deployments (or test runs) can share a Redis."""

    prefix: str = "extendq:"

    def job(self, job_id: str) -> str:
        """Hash: the job record (request, run id, state, counters)."""
        return f"{self.prefix}job:{job_id}"

    def job_key(self, job_key: str) -> str:
        """String: the job id that owns a producer's `job_key`."""
        return f"{self.prefix}key:{job_key}"

    def run(self, run_id: str) -> str:
        """String: the job id that owns an Extend run id (webhooks and adoption look runs up by it)."""
        return f"{self.prefix}run:{run_id}"

    def aliases(self, job_id: str) -> str:
        """Set: other task ids enqueued with the same job key, which get the same result."""
        return f"{self.prefix}alias:{job_id}"

    def lock(self, job_id: str) -> str:
        """String: held while one task advances the job."""
        return f"{self.prefix}lock:{job_id}"

    @property
    def due(self) -> str:
        """Sorted set: job id -> when its next step is due (unix seconds)."""
        return f"{self.prefix}due"

    @property
    def events(self) -> str:
        """Stream: one entry per terminal job (and per progress change)."""
        return f"{self.prefix}events"

    def event_seen(self, event_id: str) -> str:
        """String: set once a webhook event id has been accepted (Extend re-delivers)."""
        return f"{self.prefix}seen:{event_id}"

    @property
    def counters(self) -> str:
        """Hash: counters of things worth watching (webhook events for unknown runs, duplicates...)."""
        return f"{self.prefix}counters"
