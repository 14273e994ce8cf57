"""Messages for extendq's tasks sitting in a queue no extendq worker consumes, and the worker's watch for them.

A producer whose own Celery app sends `extendq.run_workflow` by name without `queue="extendq"` puts it in its
app's default queue, `celery`, which no extendq worker reads: the job stays PENDING and nothing says why. With
the Redis broker a queue is a Redis list per priority step (`keys.queue_lists`); kombu pushes each message on
the left as JSON `{"body", "content-type", "headers": {"task", "id", ...}, "properties": {...}}` (Celery's
message protocol 2; protocol 1 has the task name in the base64 body). A look reads the oldest `sample`
messages of each list with LRANGE and takes none.

Every worker's main process runs a `PoolWatch`: it records the worker's heartbeat (`worker.pool`) and logs a
WARNING naming the queue, the count and the fix whenever it finds such messages (again when the count changes,
or after `repeat_s`). `MisroutedCollector` exposes the same look as a Prometheus gauge at scrape time.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import redis

from extendq.config.redis_connection import is_redis_url, redis_client
from extendq.config.settings import Settings
from extendq.worker.keys import CELERY_DEFAULT_QUEUE, QUEUE, queue_lists
from extendq.worker.periodic import repeat
from extendq.worker.pool import WorkerEntry, WorkerRegistry

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

log = logging.getLogger("extendq.pool")

SAMPLE = 100  # messages read per list, at most, on each look
WATCHED_QUEUES = (CELERY_DEFAULT_QUEUE,)
FIX = f'send extendq tasks with queue="{QUEUE}", or use extendq.submit(...)'


@dataclass(frozen=True)
class Misrouted:
    """extendq task messages found in one queue that no extendq worker consumes."""

    queue: str
    messages: int  # extendq task messages among those read
    length: int  # every message in the queue, extendq's or not
    sampled: int  # messages read
    tasks: dict[str, int] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Every message of the queue was read, so `messages` is exact (else it is a lower bound)."""
        return self.sampled >= self.length

    def describe(self) -> str:
        """`3 extendq task messages (extendq.run_workflow: 3)` with "at least" when not every message was read."""
        count = f"{self.messages}" if self.complete else f"at least {self.messages}"
        kinds = ", ".join(f"{name}: {n}" for name, n in sorted(self.tasks.items()))
        return f"{count} extendq task message{'s' if self.messages != 1 else ''} ({kinds})"

    def to_json(self) -> dict[str, Any]:
        """As `extendq info --json` shows it."""
        return {
            "queue": self.queue,
            "messages": self.messages,
            "complete": self.complete,
            "length": self.length,
            "sampled": self.sampled,
            "tasks": dict(sorted(self.tasks.items())),
        }


def broker_client(settings: Settings) -> redis.Redis | None:
    """A client of the broker when it is a Redis (lazy: no connection yet); None for another broker."""
    url = settings.broker
    return redis_client(settings, url) if is_redis_url(url) else None


def task_name(raw: bytes | str) -> str | None:
    """The task a message on kombu's Redis transport carries; None when it is not a Celery task message."""
    try:
        message = json.loads(raw)
        name = message.get("headers", {}).get("task")
        if name is None and message.get("properties", {}).get("body_encoding") == "base64":
            name = json.loads(base64.b64decode(message.get("body", ""))).get("task")  # message protocol 1
    except (ValueError, TypeError, AttributeError):
        return None
    return name if isinstance(name, str) else None


def look(broker: redis.Redis, queue: str, *, task_names: Collection[str], sample: int = SAMPLE) -> Misrouted:
    """Count the extendq task messages among the oldest `sample` of each of `queue`'s lists, consuming none."""
    lists = queue_lists(queue)
    pipe = broker.pipeline(transaction=False)
    for name in lists:
        pipe.llen(name)
        pipe.lrange(name, -sample, -1)  # pushed on the left, taken from the right: the oldest are at the end
    replies = pipe.execute()
    lengths, read = replies[0::2], [item for items in replies[1::2] for item in items]
    tasks = Counter(name for name in map(task_name, read) if name is not None and name in task_names)
    return Misrouted(queue, sum(tasks.values()), sum(lengths), len(read), dict(tasks))


def find_misrouted(
    broker: redis.Redis,
    *,
    task_names: Collection[str],
    consumed: Collection[str],
    queues: Iterable[str] = WATCHED_QUEUES,
    sample: int = SAMPLE,
) -> list[Misrouted]:
    """The watched queues that hold extendq task messages and that no live extendq worker consumes."""
    looks = (look(broker, queue, task_names=task_names, sample=sample) for queue in queues if queue not in consumed)
    return [found for found in looks if found.messages]


@dataclass(kw_only=True)
class PoolWatch:
    """A worker's main-process loop: its heartbeat in the pool's registry, and the look for misrouted messages."""

    registry: WorkerRegistry
    broker: redis.Redis | None  # None: the broker is not a Redis, there is nothing to look at
    describe: Callable[[], WorkerEntry]  # this worker as it stands (its queues may change at run time)
    task_names: frozenset[str]
    interval_s: float = 15.0
    repeat_s: float = 300.0  # an unchanged finding is logged again after this long
    queues: Sequence[str] = WATCHED_QUEUES
    clock: Callable[[], float] = time.monotonic
    _logged: dict[str, tuple[int, float]] = field(default_factory=dict)  # queue -> (messages, when logged)

    def step(self) -> list[Misrouted]:
        """Beat, then look; logs what it found (see `warn`) and returns it."""
        workers = [*self.registry.alive(), self.registry.beat(self.describe())]
        if self.broker is None:
            return []
        found = find_misrouted(
            self.broker, task_names=self.task_names, consumed=self.registry.consumed(workers), queues=self.queues
        )
        self.warn(found)
        return found

    def warn(self, found: Sequence[Misrouted]) -> None:
        """Log a WARNING per queue holding extendq messages: at first, when the count changes, and every `repeat_s`."""
        now = self.clock()
        for item in found:
            last = self._logged.get(item.queue)
            if last is None or last[0] != item.messages or now - last[1] >= self.repeat_s:
                log.warning(
                    "queue %r holds %s, but no extendq worker consumes it: %s",
                    item.queue,
                    item.describe(),
                    FIX,
                    extra={"event": "misrouted"},
                )
                self._logged[item.queue] = (item.messages, now)
        for queue in set(self._logged) - {item.queue for item in found}:
            del self._logged[queue]  # emptied: a new finding is news again

    def run(self, stop: Callable[[float], bool]) -> None:
        """`step` every interval until `stop(timeout)` answers True; a failing step is logged and retried."""
        repeat(self.step, every_s=self.interval_s, stop=stop, what="pool heartbeat or queue look")


class MisroutedCollector:
    """The gauge `extendq_misrouted_messages{queue}`, read from the broker at scrape time (the same on every
    endpoint of the pool: aggregate with `max`)."""

    def __init__(
        self,
        broker: redis.Redis,
        *,
        registry: WorkerRegistry,
        task_names: frozenset[str],
        queues: Sequence[str] = WATCHED_QUEUES,
    ) -> None:
        self._broker = broker
        self._registry = registry
        self._task_names = task_names
        self._queues = queues

    def collect(self) -> Iterator[Metric]:
        """One sample per watched queue: its extendq task messages that no worker will take (0: none)."""
        from prometheus_client.core import GaugeMetricFamily

        try:
            consumed = self._registry.consumed()
            found = {
                m.queue: m.messages
                for m in find_misrouted(
                    self._broker, task_names=self._task_names, consumed=consumed, queues=self._queues
                )
            }
        except redis.RedisError as exc:
            log.debug("misrouted messages not read: %s", exc)
            return
        gauge = GaugeMetricFamily(
            "extendq_misrouted_messages",
            "extendq task messages waiting in a queue no extendq worker consumes (oldest 100 per list read).",
            labels=["queue"],
        )
        for queue in self._queues:
            gauge.add_metric([queue], found.get(queue, 0))
        yield gauge
