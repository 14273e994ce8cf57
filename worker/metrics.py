"""Prometheus metrics: what the workers and the webhook receiver count, and the pool's gauges read from Redis.

Why prometheus_client's multiprocess mode, not counting in Redis. A worker is one main process and N prefork
children, and the children do the counting; a plain in-memory registry served from the main process would
show the main process's counts only. In multiprocess mode every process writes its samples to memory-mapped
files in one directory (PROMETHEUS_MULTIPROC_DIR) and the main process's endpoint adds them up at scrape
time. Recording stays a memory write: counting in Redis instead would add a round trip to every Extend request
and every job transition (the hot path, where a step already spends a few Redis calls), and every endpoint
would then export the same pool-wide totals, which Prometheus sums N-fold across targets. Here each worker
exports its own counts and `sum()` across instances is the pool; a restarted worker starts from zero, which
`rate()` handles. Only gauges are live state, and none is kept per process: what is pool-wide by nature (jobs in
flight, the oldest of them, the dispatcher's lag, queue lengths) is read from Redis at scrape time by
`PoolCollector`, the same on every endpoint (aggregate those with `max()`). So the children's files hold
counters and histograms only, and a dead child's files keep counting towards the totals, as they should.

The webhook receiver finishes jobs too (terminal events it applies itself). Their job metrics are not counted in
the receiver's process, where nobody looks for them: it notes each in a Redis list (`hand_over_finished`), and a
worker's endpoint takes the notes at its next scrape (`HandedOver`, an atomic pop: each note counts on one worker)
and records them as its own. That is one write per job finished by webhook, off the hot path of checks.

The worker's main process makes a fresh directory before its pool forks and removes it when it stops
(config/metrics.py, tasks/observe.py); the receiver's `extendq webhooks` does the same for its processes.
prometheus_client picks in-memory or file-backed values when a metric's value is first made, so metrics are
created lazily, after `configure()`; a process that never configures (beat, producers, tests) counts in memory.

Every recording function is best effort: it logs at DEBUG and never raises, so metrics never fail a job.
"""

from __future__ import annotations

import json
import logging
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis

from extendq.config.redis_connection import is_redis_url, redis_client
from extendq.worker.joblog import time_to_result
from extendq.worker.keys import CHECKS_QUEUE, QUEUE, Keys, queue_lists
from extendq.worker.store import RedisJobStore, open_store

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

    from extendq.config.settings import Settings
    from extendq.worker.records import JobRecord

log = logging.getLogger("extendq.metrics")

_DURATION_BUCKETS = (1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600)
_RESULT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
_CHECK_BUCKETS = (0, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144)
_REQUEST_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_WAIT_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_OLDEST_PROBES = 20  # stale entries dropped per scrape, at most, while looking for the oldest job in flight
HANDOVER_MAX = 10_000  # finished jobs' metrics the receiver's hand-over list keeps (no worker taking them)


class _Metrics:
    """Every metric a process records (created on first use, once the value class is settled)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.enqueued = Counter(
            "extendq_jobs_enqueued", "Jobs recorded by a worker.", ["workflow", "tenant"], registry=r
        )
        self.submitted = Counter(
            "extendq_jobs_submitted", "Jobs whose Extend run was created.", ["workflow", "tenant"], registry=r
        )
        self.finished = Counter(
            "extendq_jobs_finished",
            "Jobs finished with a terminal run, by its status.",
            ["workflow", "status", "tenant"],
            registry=r,
        )
        self.failed = Counter(
            "extendq_jobs_failed",
            "Jobs that could not get a terminal run, by error kind.",
            ["workflow", "kind", "tenant"],
            registry=r,
        )
        self.duration = Histogram(
            "extendq_job_duration_seconds",
            "From enqueued to finished (SUCCESS: a terminal run; FAILURE: an error).",
            ["workflow", "state", "tenant"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.time_to_result = Histogram(
            "extendq_time_to_result_seconds",
            "From the run's end on Extend (its endTime) to its result published, by what noticed it.",
            ["workflow", "via", "tenant"],
            buckets=_RESULT_BUCKETS,
            registry=r,
        )
        self.checks = Histogram(
            "extendq_job_checks",
            "Checks (GET of the run) a finished job took.",
            ["workflow", "tenant"],
            buckets=_CHECK_BUCKETS,
            registry=r,
        )
        self.requests = Counter(
            "extendq_extend_requests",
            "Extend API requests, by endpoint, HTTP status and account.",
            ["endpoint", "status", "tenant"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "extendq_extend_request_duration_seconds",
            "Time to Extend's answer (headers), by endpoint.",
            ["endpoint"],
            buckets=_REQUEST_BUCKETS,
            registry=r,
        )
        self.limit_wait = Histogram(
            "extendq_rate_limit_wait_seconds",
            "Wait for a shared rate-limit token, per reservation (0: at once), by bucket and account.",
            ["bucket", "tenant"],
            buckets=_WAIT_BUCKETS,
            registry=r,
        )
        self.pauses = Counter(
            "extendq_rate_limit_pauses", "429 answers that paused an account's calls.", ["tenant"], registry=r
        )
        self.pause_seconds = Counter(
            "extendq_rate_limit_pause_seconds",
            "Seconds of pause asked by 429s (Retry-After), by account.",
            ["tenant"],
            registry=r,
        )
        self.webhook_events = Counter(
            "extendq_webhook_events",
            "Webhook events applied by workers, by event type and outcome.",
            ["type", "outcome"],
            registry=r,
        )
        self.webhook_deliveries = Counter(
            "extendq_webhook_deliveries",
            "Deliveries answered by the webhook receiver, by event type (verified only) and outcome.",
            ["type", "outcome"],
            registry=r,
        )
        self.credits = Counter(
            "extendq_credits_used", "Extend credits of finished runs.", ["workflow", "tenant"], registry=r
        )
        self.credits_by_tag = Counter(
            "extendq_credits_used_by_tag",
            "Extend credits of finished runs, by usage tag (a run counts towards each of its tags).",
            ["tag"],
            registry=r,
        )


_state: _Metrics | None = None
_multiprocess_dir: str | None = None
_tenants: frozenset[str] | None = None
_lock = threading.Lock()
DEFAULT_ACCOUNT = "default"  # the `tenant` label of the default account's jobs and calls
OTHER_ACCOUNT = "unknown"  # ... of a job naming a tenant this process is not configured with


def configure(*, multiprocess_dir: str | None, tenants: Iterable[str] | None = None) -> None:
    """Record into files under `multiprocess_dir` from now on (None: in this process's memory); `tenants`: the
    names the `tenant` label may take besides `default` (None: any).

    Call it before any metric is recorded in the process, and before the worker's pool forks.
    """
    global _state, _multiprocess_dir, _tenants
    from prometheus_client import values

    with _lock:
        _multiprocess_dir = multiprocess_dir
        _tenants = None if tenants is None else frozenset(tenants)
        # The library settles its value class when imported; it may have been imported before the directory
        # was set, so it is asked again (from the same environment variable the library itself reads).
        values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
        _state = None


def _metrics() -> _Metrics:
    global _state
    if _state is None:
        with _lock:
            if _state is None:
                _state = _Metrics()
    return _state


def account_label(tenant: str | None) -> str:
    """The `tenant` label of an account: `default`, a configured tenant's name, or `unknown` (a job naming a tenant
    this process does not know): the label's values stay bounded by the configuration, whatever jobs name."""
    if tenant is None or tenant == DEFAULT_ACCOUNT:
        return DEFAULT_ACCOUNT
    return tenant if _tenants is None or tenant in _tenants else OTHER_ACCOUNT


def _account(record: JobRecord) -> str:
    return account_label(record.request.tenant)


def _best_effort(record: Callable[..., None]) -> Callable[..., None]:
    def guarded(*args: Any, **kwargs: Any) -> None:
        try:
            record(*args, **kwargs)
        except Exception as exc:  # a metric must never fail the job it describes
            log.debug("metric %s not recorded: %s", record.__name__, exc)

    guarded.__name__ = record.__name__
    guarded.__doc__ = record.__doc__
    return guarded


# ---- what jobs record ------------------------------------------------------------------------------------


def job_enqueued(store: RedisJobStore, record: JobRecord) -> bool:
    """Note a recorded job among the jobs in flight (by enqueue time); True, and counted, the first time only.

    Best effort: False when Redis does not answer.
    """
    try:
        if not store.client.zadd(store.keys.in_flight, {record.job_id: record.enqueued_at}, nx=True):
            return False
    except redis.RedisError as exc:
        log.debug("metric job_enqueued not recorded: %s", exc)
        return False
    _count_enqueued(record.request.workflow.id, _account(record))
    return True


def job_recorded(record: JobRecord) -> None:
    """Count a job its worker recorded, and placed among the jobs in flight, itself (once per job)."""
    _count_enqueued(record.request.workflow.id, _account(record))


@_best_effort
def _count_enqueued(workflow: str, tenant: str) -> None:
    _metrics().enqueued.labels(workflow, tenant).inc()


@_best_effort
def job_submitted(record: JobRecord) -> None:
    """A job's run (or its batch) was created on Extend. Best effort."""
    _metrics().submitted.labels(record.request.workflow.id, _account(record)).inc()


@_best_effort
def job_finished(record: JobRecord, run: dict[str, Any], now: float, *, via: str) -> None:
    """A job finished with a terminal run (once per job): status, duration, time to result, checks, credits.

    Best effort.
    """
    _record_finished(_finished_note(record, run, now, via=via))


def _finished_note(record: JobRecord, run: dict[str, Any], now: float, *, via: str) -> dict[str, Any]:
    """What `job_finished` records, as plain JSON (the receiver hands it to the workers in this form)."""
    usage, metadata = run.get("usage"), run.get("metadata")
    tags = metadata.get("extend:usage_tags") if isinstance(metadata, dict) else None
    return {
        "workflow": record.request.workflow.id,
        "tenant": _account(record),
        "status": str(run.get("status")),
        "duration_s": max(now - record.enqueued_at, 0.0),
        "checks": record.checks,
        "to_result_s": time_to_result(run, now),
        "via": via,
        "credits": float(usage.get("credits") or 0) if isinstance(usage, dict) else 0.0,
        "tags": sorted({str(tag) for tag in tags}) if isinstance(tags, list) else [],
    }


def _record_finished(note: dict[str, Any]) -> None:
    m, workflow = _metrics(), str(note["workflow"])
    tenant = account_label(note.get("tenant"))  # a note handed over by a receiver of an older version has none
    m.finished.labels(workflow, note["status"], tenant).inc()
    m.duration.labels(workflow, "SUCCESS", tenant).observe(note["duration_s"])
    m.checks.labels(workflow, tenant).observe(note["checks"])
    if note["to_result_s"] is not None:
        m.time_to_result.labels(workflow, note["via"], tenant).observe(note["to_result_s"])
    credits = float(note["credits"])
    if credits > 0:
        m.credits.labels(workflow, tenant).inc(credits)
        for tag in note["tags"]:
            m.credits_by_tag.labels(tag).inc(credits)


def hand_over_finished(store: RedisJobStore, record: JobRecord, run: dict[str, Any], now: float, *, via: str) -> None:
    """`job_finished` for a job the webhook receiver finished: noted in Redis, where the next scrape of a worker's
    endpoint takes it and counts it (`HandedOver`), so a job's metrics show where every other job's do.

    The list keeps the latest `HANDOVER_MAX` notes (no worker serving metrics takes any). Best effort.
    """
    try:
        note = json.dumps(_finished_note(record, run, now, via=via))
        pipe = store.client.pipeline(transaction=False)
        pipe.rpush(store.keys.metrics_handover, note)
        pipe.ltrim(store.keys.metrics_handover, -HANDOVER_MAX, -1)
        pipe.execute()
    except Exception as exc:  # a metric must never fail the job it describes
        log.debug("metric hand_over_finished not noted: %s", exc)


class HandedOver:
    """Counts, at each scrape, the finished jobs the webhook receiver handed over; each note is taken by one worker
    (an atomic pop), so adding up the workers' endpoints counts every job once."""

    def __init__(self, client: redis.Redis, *, keys: Keys) -> None:
        self._redis = client
        self._keys = keys

    def collect(self) -> Iterator[Metric]:
        """Takes the notes into this process's metrics; yields nothing of its own (the recorded samples show them)."""
        self.take()
        yield from ()

    def take(self) -> int:
        """Count the notes waiting now; how many. Best effort: 0 when Redis does not answer."""
        try:
            notes: list[Any] = self._redis.lpop(self._keys.metrics_handover, HANDOVER_MAX) or []  # type: ignore[assignment]
        except redis.RedisError as exc:
            log.debug("handed-over metrics not taken: %s", exc)
            return 0
        for raw in notes:
            try:
                _record_finished(json.loads(raw))
            except Exception as exc:  # one odd note never stops the others
                log.debug("handed-over metric not recorded: %s", exc)
        return len(notes)


@_best_effort
def job_failed(record: JobRecord, kind: str, now: float) -> None:
    """A job failed without a terminal run (once per job). Best effort."""
    m, workflow, tenant = _metrics(), record.request.workflow.id, _account(record)
    m.failed.labels(workflow, kind, tenant).inc()
    m.duration.labels(workflow, "FAILURE", tenant).observe(max(now - record.enqueued_at, 0.0))
    m.checks.labels(workflow, tenant).observe(record.checks)


# ---- what the Extend boundary, the limiter and webhooks record -------------------------------------------


@_best_effort
def extend_request(endpoint: str, status: str, seconds: float, *, tenant: str | None = None) -> None:
    """One Extend API request: its route template (`GET /workflow_runs/{id}`), HTTP status or `error`, and the
    account it went to (None: the default one). Best effort."""
    m = _metrics()
    m.requests.labels(endpoint, status, account_label(tenant)).inc()
    m.request_seconds.labels(endpoint).observe(seconds)


@_best_effort
def rate_limit_wait(bucket: str, seconds: float, *, tenant: str | None = None) -> None:
    """A reservation of an account's shared rate limit, and how long its call waits for the token. Best effort."""
    _metrics().limit_wait.labels(bucket, account_label(tenant)).observe(seconds)


@_best_effort
def rate_limit_pause(seconds: float, *, tenant: str | None = None) -> None:
    """Extend answered 429: the account's calls pause for `seconds`. Best effort."""
    m, account = _metrics(), account_label(tenant)
    m.pauses.labels(account).inc()
    m.pause_seconds.labels(account).inc(seconds)


@_best_effort
def webhook_event(event_type: str, outcome: str) -> None:
    """A worker applied a webhook event (`applied`, `progress`, `already_finished`, ...). Best effort."""
    _metrics().webhook_events.labels(event_type or "unknown", outcome).inc()


@_best_effort
def webhook_delivery(event_type: str, outcome: str) -> None:
    """The receiver answered a delivery (`accepted`, `duplicate`, `refused_401`, `unavailable`, ...). Best effort."""
    _metrics().webhook_deliveries.labels(event_type or "unverified", outcome).inc()


# ---- pool gauges and exposition --------------------------------------------------------------------------


class PoolCollector:
    """Pool-wide gauges read from Redis at scrape time: the same value on every endpoint of the pool."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        keys: Keys,
        broker: redis.Redis | None = None,
        queues: Iterable[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = client
        self._keys = keys
        self._broker = broker
        self._queues = tuple(queues)
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        """The gauges; `extendq_redis_up` 0 (and nothing else) when Redis does not answer."""
        from prometheus_client.core import GaugeMetricFamily

        try:
            values = self._read()
        except redis.RedisError as exc:
            log.warning("metrics: Redis unreachable: %s", exc)
            yield GaugeMetricFamily("extendq_redis_up", "Whether the pool's Redis answered this scrape.", value=0)
            return
        yield GaugeMetricFamily("extendq_redis_up", "Whether the pool's Redis answered this scrape.", value=1)
        yield GaugeMetricFamily(
            "extendq_jobs_in_flight", "Jobs not finished yet (the due set of the pool).", value=values["in_flight"]
        )
        yield GaugeMetricFamily(
            "extendq_oldest_job_in_flight_seconds",
            "Age of the oldest job not finished yet (0 when none).",
            value=values["oldest"],
        )
        yield GaugeMetricFamily(
            "extendq_dispatch_lag_seconds",
            "How late the most overdue due step is (0 when none is overdue).",
            value=values["lag"],
        )
        queue = GaugeMetricFamily("extendq_queue_length", "Messages waiting in a broker queue.", labels=["queue"])
        for name, length in values["queues"].items():
            queue.add_metric([name], length)
        yield queue

    def _read(self) -> dict[str, Any]:
        now = self._clock()
        pipe = self._redis.pipeline(transaction=False)
        pipe.zcard(self._keys.due)
        pipe.zrange(self._keys.due, 0, 0, withscores=True)
        in_flight, first_due = pipe.execute()
        lag = max(now - float(first_due[0][1]), 0.0) if first_due else 0.0
        oldest = self._oldest_enqueued()
        return {
            "in_flight": in_flight,
            "oldest": max(now - oldest, 0.0) if oldest is not None else 0.0,
            "lag": lag,
            "queues": self._queue_lengths(),
        }

    def _oldest_enqueued(self) -> float | None:
        # Entries leave the set when their job finishes; one left behind (a crash between finishing and the
        # removal, an expired record) is dropped here, so the gauge heals itself.
        key = self._keys.in_flight
        for _ in range(_OLDEST_PROBES):
            first: list[Any] = list(self._redis.zrange(key, 0, 0, withscores=True))
            if not first:
                return None
            member, enqueued_at = first[0]
            job_id = member.decode() if isinstance(member, bytes) else str(member)
            if self._redis.zscore(self._keys.due, job_id) is not None:
                return float(enqueued_at)
            self._redis.zrem(key, job_id)
        return None

    def _queue_lengths(self) -> dict[str, int]:
        if self._broker is None or not self._queues:
            return {}
        pipe = self._broker.pipeline(transaction=False)
        for queue in self._queues:
            for name in queue_lists(queue):
                pipe.llen(name)
        lengths = pipe.execute()
        step = len(queue_lists(""))
        return {queue: sum(lengths[i * step : (i + 1) * step]) for i, queue in enumerate(self._queues)}


def pool_collector(settings: Settings, store: RedisJobStore | None = None) -> PoolCollector:
    """The pool's gauges for `settings`: the job store's Redis, and the broker's queues when it is a Redis."""

    store = store or open_store(settings)
    broker = redis_client(settings, settings.broker) if is_redis_url(settings.broker) else None
    return PoolCollector(store.client, keys=store.keys, broker=broker, queues=(CHECKS_QUEUE, QUEUE))


class _Recorded:
    """The samples this process (or, in multiprocess mode, every process of its directory) recorded."""

    def collect(self) -> Iterator[Metric]:
        if _multiprocess_dir is not None:
            yield from _merged(Path(_multiprocess_dir))
        else:
            yield from _metrics().registry.collect()


def _merged(directory: Path, attempts: int = 3) -> Iterable[Metric]:
    """Every process's samples in `directory`, summed. A pool process creates its file empty and sizes it a moment
    later, and a dead one's file is removed: prometheus_client would fail the whole scrape on either, so an empty
    file is left out and a file gone while reading means reading again."""
    from prometheus_client.multiprocess import MultiProcessCollector

    for attempt in range(attempts):
        files = [str(path) for path in directory.glob("*.db") if _size(path) > 0]
        try:
            return MultiProcessCollector.merge(files, accumulate=True)  # type: ignore[no-any-return,no-untyped-call]
        except (FileNotFoundError, struct.error):
            if attempt == attempts - 1:
                raise
    return []


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # a dead process's file, removed as the scrape lists the directory
        return 0


def scrape_registry(pool: PoolCollector | None = None, *, handed_over: HandedOver | None = None) -> CollectorRegistry:
    """What an endpoint serves: the recorded counters and histograms (after taking in `handed_over`, a worker's),
    and the pool's gauges."""
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    if handed_over is not None:  # first: what it takes in is then in the recorded samples of the same scrape
        registry.register(handed_over)
    registry.register(_Recorded())
    if pool is not None:
        registry.register(pool)
    return registry


def exposition(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The text exposition of `registry` and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return generate_latest(registry), CONTENT_TYPE_LATEST


def start_server(*, port: int, host: str, registry: CollectorRegistry) -> Callable[[], None] | None:
    """Serve `registry` on `host:port` from a daemon thread; a function that stops it (None if the port is taken).

    Best effort: a worker whose metrics port is busy (a second worker on the machine) runs on without one.
    """
    from prometheus_client import start_http_server

    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        log.warning("metrics endpoint not started on %s:%d: %s", host, port, exc)
        return None
    log.info("metrics on http://%s:%d/metrics", host, port)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return stop
