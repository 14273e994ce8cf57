"""The pool at a glance, read from Redis and never written: what `extendq info` shows.

Workers alive (their own heartbeats, `worker.pool`), queue depths and consumers, extendq task messages in queues
no worker consumes (`worker.misrouted`), jobs in flight by state and the oldest of them, the due checks and how
late the most overdue is, each rate-limit scope's budget in use and its 429 pauses, and the sweep and webhook
modes. Each part is a few Redis commands; job states are read for at most `max_states` jobs.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from extendq.worker.keys import CELERY_DEFAULT_QUEUE, CHECKS_QUEUE, QUEUE, Keys, queue_lists
from extendq.worker.misrouted import find_misrouted
from extendq.worker.pool import WorkerEntry, WorkerRegistry
from extendq.worker.ratelimit import RateLimiter
from extendq.worker.records import _F_STATE
from extendq.worker.store import RedisJobStore

SHOWN_QUEUES = (QUEUE, CHECKS_QUEUE, CELERY_DEFAULT_QUEUE)
_OLDEST_PROBES = 20  # entries of the in-flight index looked at, at most, for one whose job is still scheduled


@dataclass(kw_only=True)
class Overview:
    """Reads the pool's state; `read()` gives one JSON-able dict (its keys are listed in the README)."""

    store: RedisJobStore
    broker: redis.Redis | None  # None: the broker is not a Redis, so no queue is shown
    limiters: Mapping[str, RateLimiter]  # scope ("default", "tenant:<name>") -> its limiter
    task_names: frozenset[str]
    modes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # "sweeps", "webhooks": from settings
    queues: Sequence[str] = SHOWN_QUEUES
    max_states: int = 10_000
    tenant: str | None = None  # one tenant's view: its jobs in flight and its sweeps (the limiters given are its)
    clock: Callable[[], float] = time.time

    def read(self) -> dict[str, Any]:
        """Everything, in the order `extendq info` prints it."""
        now = self.clock()
        registry = WorkerRegistry(self.store.client, keys=self.store.keys, clock=self.clock)
        workers = registry.alive()
        consumed = registry.consumed(workers)
        misrouted = find_misrouted(self.broker, task_names=self.task_names, consumed=consumed) if self.broker else []
        return {
            "at": now,
            "workers": [worker.to_json(now) for worker in workers],
            "queues": self._queues(workers),
            "misrouted": [found.to_json() for found in misrouted],
            "jobs": self._jobs(now),
            "due": self._due(now),
            "rate_limit": {scope: limiter.usage() for scope, limiter in self.limiters.items()},
            "sweeps": {**self.modes.get("sweeps", {}), "active": self._sweeping()},
            "webhooks": dict(self.modes.get("webhooks", {})),
            **self._tenant(),
        }

    def _sweeping(self) -> bool:
        """Whether the sweeps of the account in view (the default one, or the tenant's) run now."""
        return bool(self._redis.exists(self._keys.sweep("active", self.tenant)))

    def _tenant(self) -> dict[str, Any]:
        """A tenant's own part of the view: its name and how many of its jobs are in flight (nothing without one)."""
        if self.tenant is None:
            return {}
        return {
            "tenant": {
                "name": self.tenant,
                "in_flight": int(self._redis.zcard(self._keys.tenant_in_flight(self.tenant))),
            }
        }

    @property
    def _redis(self) -> redis.Redis:
        return self.store.client

    @property
    def _keys(self) -> Keys:
        return self.store.keys

    def _queues(self, workers: Sequence[WorkerEntry]) -> dict[str, dict[str, int]]:
        if self.broker is None:
            return {}
        pipe = self.broker.pipeline(transaction=False)
        for queue in self.queues:
            for name in queue_lists(queue):
                pipe.llen(name)
        lengths = pipe.execute()
        step = len(queue_lists(""))
        return {
            queue: {
                "messages": sum(lengths[i * step : (i + 1) * step]),
                "consumers": sum(1 for worker in workers if queue in worker.queues),
            }
            for i, queue in enumerate(self.queues)
        }

    def _jobs(self, now: float) -> dict[str, Any]:
        in_flight = int(self._redis.zcard(self._keys.due))
        ids = [str(job_id) for job_id in self._redis.zrange(self._keys.due, 0, self.max_states - 1)]
        pipe = self._redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.hget(self._keys.job(job_id), _F_STATE)
        states = Counter(str(state) for state in pipe.execute() if state is not None)
        return {
            "in_flight": in_flight,
            "by_state": dict(sorted(states.items())),
            "states_read": len(ids),
            "oldest": self._oldest(now),
        }

    def _oldest(self, now: float) -> dict[str, Any] | None:
        # The in-flight index may keep an entry its job left behind (the metrics scrape drops those): an entry
        # counts only while its job is still scheduled.
        entries: list[Any] = list(self._redis.zrange(self._keys.in_flight, 0, _OLDEST_PROBES - 1, withscores=True))
        pipe = self._redis.pipeline(transaction=False)
        for job_id, _ in entries:
            pipe.zscore(self._keys.due, job_id)
        for (job_id, enqueued_at), due in zip(entries, pipe.execute(), strict=True):
            if due is not None:
                return {"job_id": str(job_id), "enqueued_at": enqueued_at, "age_s": round(max(now - enqueued_at, 0), 3)}
        return None

    def _due(self, now: float) -> dict[str, Any]:
        pipe = self._redis.pipeline(transaction=False)
        pipe.zcard(self._keys.due)
        pipe.zcount(self._keys.due, "-inf", now)
        pipe.zrange(self._keys.due, 0, 0, withscores=True)
        entries, due_now, first = pipe.execute()
        lag = max(now - float(first[0][1]), 0.0) if first else 0.0
        return {"entries": int(entries), "due_now": int(due_now), "dispatch_lag_s": round(lag, 3)}
