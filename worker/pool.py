"""The pool's live workers, as each records itself in Redis: name, concurrency, queues and last heartbeat.

Every worker's main process writes its entry when it is ready and again every interval, and removes it when it
stops. An entry whose heartbeat is more than three of its own intervals old belongs to a worker that died
without saying so: it is not alive, and entries ten intervals old are dropped. Redis, not Celery's remote
control, because the answer must not depend on a broadcast's timeout or on the worker's heartbeat options.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import redis

from extendq.worker.keys import Keys

_ALIVE_INTERVALS = 3  # an entry is alive while its heartbeat is at most this many of its intervals old
_DROP_INTERVALS = 10  # and dropped from the hash once it is this many intervals old


@dataclass(frozen=True, kw_only=True)
class WorkerEntry:
    """One worker as it recorded itself."""

    name: str
    pid: int
    concurrency: int
    queues: tuple[str, ...]
    started_at: float
    heartbeat_at: float
    interval_s: float

    @property
    def id(self) -> str:
        """Unique within the pool: several workers on one host may share a Celery node name."""
        return f"{self.name}:{self.pid}"

    def alive(self, now: float) -> bool:
        """Whether the worker beat recently enough to be taken as running."""
        return now - self.heartbeat_at <= self.interval_s * _ALIVE_INTERVALS

    def to_json(self, now: float) -> dict[str, object]:
        """The entry as `extendq info --json` shows it."""
        shown: dict[str, object] = asdict(self)
        shown["queues"] = list(self.queues)
        shown["heartbeat_age_s"] = round(max(now - self.heartbeat_at, 0.0), 3)
        return shown


class WorkerRegistry:
    """Reads and writes the pool's worker entries (the hash `Keys.workers`)."""

    def __init__(self, client: redis.Redis, *, keys: Keys, clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self._key = keys.workers
        self._clock = clock

    def beat(self, entry: WorkerEntry) -> WorkerEntry:
        """Record `entry` with a fresh heartbeat, and drop the entries of workers long dead; the entry written."""
        now = self._clock()
        fresh = WorkerEntry(**{**asdict(entry), "heartbeat_at": now, "queues": tuple(entry.queues)})
        pipe = self._client.pipeline(transaction=False)
        pipe.hset(self._key, fresh.id, json.dumps(asdict(fresh)))
        # A pool whose workers all stopped without a word leaves nothing behind for long.
        pipe.expire(self._key, max(1, int(entry.interval_s * _DROP_INTERVALS)))
        pipe.execute()
        stale = [e.id for e in self._entries() if now - e.heartbeat_at > e.interval_s * _DROP_INTERVALS]
        if stale:
            self._client.hdel(self._key, *stale)
        return fresh

    def remove(self, entry: WorkerEntry) -> None:
        """Forget a worker that stops."""
        self._client.hdel(self._key, entry.id)

    def alive(self) -> list[WorkerEntry]:
        """The workers whose heartbeat is recent, by name."""
        now = self._clock()
        return sorted((e for e in self._entries() if e.alive(now)), key=lambda e: (e.name, e.pid))

    def consumed(self, workers: Sequence[WorkerEntry] | None = None) -> frozenset[str]:
        """The queues some live worker consumes."""
        return frozenset(queue for worker in (self.alive() if workers is None else workers) for queue in worker.queues)

    def _entries(self) -> list[WorkerEntry]:
        entries = []
        for raw in self._client.hvals(self._key):
            try:
                values = json.loads(raw)
                entries.append(WorkerEntry(**{**values, "queues": tuple(values["queues"])}))
            except (ValueError, TypeError, KeyError):
                continue  # written by another version: not ours to read
        return entries
