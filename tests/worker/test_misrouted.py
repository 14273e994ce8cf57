"""Misrouted messages, on a real Redis broker: a producer's plain Celery app sends by name without a queue, the look
finds the message in `celery` without taking it, the watch warns once per change, the gauge counts it."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator

import pytest
import redis
from celery import Celery

from extendq.worker.keys import Keys, queue_lists
from extendq.worker.misrouted import (
    FIX,
    Misrouted,
    MisroutedCollector,
    PoolWatch,
    find_misrouted,
    look,
    task_name,
)
from extendq.worker.pool import WorkerEntry, WorkerRegistry

NAMES = frozenset({"extendq.run_workflow", "extendq.advance", "extendq.cancel"})


@pytest.fixture
def broker(module_redis_url: str, module_redis: redis.Redis) -> Iterator[redis.Redis]:
    """The module's database as a broker, with Celery's default queue empty before and after."""
    client = redis.Redis.from_url(module_redis_url)
    client.delete(*queue_lists("celery"))
    yield client
    client.delete(*queue_lists("celery"))
    client.close()


@pytest.fixture
def producer(module_redis_url: str) -> Iterator[Celery]:
    """A backend's own Celery app, which knows nothing of extendq's queues."""
    app = Celery("backend", broker=module_redis_url, set_as_current=False)
    yield app
    app.close()


def entry(name: str = "celery@a", *, queues: tuple[str, ...] = ("extendq", "extendq.checks")) -> WorkerEntry:
    return WorkerEntry(
        name=name, pid=1, concurrency=2, queues=queues, started_at=0.0, heartbeat_at=0.0, interval_s=15.0
    )


def test_a_message_sent_by_name_without_a_queue_is_found_in_celery_and_left_there(
    broker: redis.Redis, producer: Celery
) -> None:
    # Given a backend that sends extendq's task by name without queue=, next to a task of its own
    producer.send_task("extendq.run_workflow", kwargs={"workflow": "workflow_invoice", "file": {"text": "x"}})
    producer.send_task("billing.tasks.invoice_read", args=["job", {}])
    # When the queue is looked at
    found = look(broker, "celery", task_names=NAMES)
    # Then the extendq message is counted, the other is not, and both are still there
    assert found == Misrouted("celery", 1, 2, 2, {"extendq.run_workflow": 1})
    assert found.complete and broker.llen("celery") == 2


def test_every_priority_step_of_the_queue_is_looked_at(broker: redis.Redis, producer: Celery) -> None:
    producer.send_task("extendq.advance", args=["job-1"], priority=9)
    producer.send_task("extendq.cancel", args=["job-2"])
    found = find_misrouted(broker, task_names=NAMES, consumed=())
    assert [(m.queue, m.messages, m.tasks) for m in found] == [
        ("celery", 2, {"extendq.advance": 1, "extendq.cancel": 1})
    ]


def test_a_queue_some_extendq_worker_consumes_is_not_reported(broker: redis.Redis, producer: Celery) -> None:
    producer.send_task("extendq.run_workflow", kwargs={})
    assert find_misrouted(broker, task_names=NAMES, consumed={"celery", "extendq"}) == []


def test_the_look_is_bounded_and_says_its_count_is_a_lower_bound(broker: redis.Redis, producer: Celery) -> None:
    with producer.producer_or_acquire() as publisher:
        for n in range(30):
            producer.send_task("extendq.advance", args=[f"job-{n}"], producer=publisher)
    found = look(broker, "celery", task_names=NAMES, sample=10)
    assert (found.messages, found.sampled, found.length, found.complete) == (10, 10, 30, False)
    assert found.describe().startswith("at least 10 extendq task messages")


def test_task_name_reads_both_message_protocols_and_ignores_anything_else() -> None:
    body = base64.b64encode(json.dumps({"task": "extendq.cancel", "args": ["j"]}).encode()).decode()
    protocol_1 = {"body": body, "headers": {}, "properties": {"body_encoding": "base64"}}
    assert task_name(json.dumps({"headers": {"task": "extendq.advance"}, "body": ""})) == "extendq.advance"
    assert task_name(json.dumps(protocol_1)) == "extendq.cancel"
    assert task_name(b"not json") is None and task_name("[1, 2]") is None


def test_the_watch_beats_and_warns_once_per_change(
    broker: redis.Redis, module_redis: redis.Redis, producer: Celery, caplog: pytest.LogCaptureFixture
) -> None:
    registry = WorkerRegistry(module_redis, keys=Keys())
    watch = PoolWatch(registry=registry, broker=broker, describe=entry, task_names=NAMES, clock=lambda: 100.0)
    producer.send_task("extendq.run_workflow", kwargs={})
    with caplog.at_level(logging.WARNING, logger="extendq.pool"):
        # When the watch looks twice at one message, then at two
        first = watch.step()
        watch.step()
        producer.send_task("extendq.run_workflow", kwargs={})
        watch.step()
    # Then it warned twice (at first, and when the count changed), naming the queue, the count and the fix
    warnings = [r.getMessage() for r in caplog.records if r.name == "extendq.pool"]
    assert warnings == [
        "queue 'celery' holds 1 extendq task message (extendq.run_workflow: 1), but no extendq worker consumes "
        f"it: {FIX}",
        "queue 'celery' holds 2 extendq task messages (extendq.run_workflow: 2), but no extendq worker consumes "
        f"it: {FIX}",
    ]
    assert 'queue="extendq"' in FIX and "extendq.submit(" in FIX
    assert [m.queue for m in first] == ["celery"]
    # And the worker is in the registry
    assert [(w.name, w.queues) for w in registry.alive()] == [("celery@a", ("extendq", "extendq.checks"))]


def test_a_worker_consuming_celery_silences_the_watch(
    broker: redis.Redis, module_redis: redis.Redis, producer: Celery, caplog: pytest.LogCaptureFixture
) -> None:
    registry = WorkerRegistry(module_redis, keys=Keys())
    registry.beat(entry("celery@b", queues=("celery", "extendq")))
    watch = PoolWatch(registry=registry, broker=broker, describe=entry, task_names=NAMES)
    producer.send_task("extendq.run_workflow", kwargs={})
    with caplog.at_level(logging.WARNING, logger="extendq.pool"):
        assert watch.step() == []
    assert not [r for r in caplog.records if r.name == "extendq.pool"]


def test_the_gauge_counts_the_messages_per_watched_queue(
    broker: redis.Redis, module_redis: redis.Redis, producer: Celery
) -> None:
    collector = MisroutedCollector(broker, registry=WorkerRegistry(module_redis, keys=Keys()), task_names=NAMES)
    assert _samples(collector) == {"celery": 0.0}
    producer.send_task("extendq.run_workflow", kwargs={})
    producer.send_task("extendq.advance", args=["j"])
    assert _samples(collector) == {"celery": 2.0}


def _samples(collector: MisroutedCollector) -> dict[str, float]:
    return {
        sample.labels["queue"]: sample.value
        for family in collector.collect()
        for sample in family.samples
        if sample.name == "extendq_misrouted_messages"
    }
