"""Callbacks: queued in the outbox by the atomic finish, once per job, and sent by the relay at least once."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import redis

from extendq.errors import InvalidJobRequest, RunRejected
from extendq.worker.callbacks import GROUP, Callback, CallbackRelay, callback_id
from extendq.worker.events import EventApplier, Outcome
from extendq.worker.jobs import JobRunner
from extendq.worker.keys import Keys
from extendq.worker.models import JobRequest
from extendq.worker.store import RedisJobStore
from tests.support.fakes import FakeApi, Results

KEYS = Keys("extendq-callbacks-test:")  # not the pool's prefix: a session worker's relay would take the entries


@pytest.fixture
def store(redis_client: redis.Redis) -> RedisJobStore:
    return RedisJobStore(redis_client, keys=KEYS, result_ttl_s=3600)


def _runner(store: RedisJobStore, api: FakeApi) -> JobRunner:
    return JobRunner(api=api, store=store, publisher=Results())


def _request(**extra: Any) -> JobRequest:
    return JobRequest.parse({"workflow": "workflow_x", "file": {"text": "Total: 1.00"}, **extra})


def _outbox(client: redis.Redis) -> list[Callback]:
    return [Callback.decode(fields["callback"]) for _, fields in client.xrange(KEYS.outbox)]


class Sent:
    """The relay's `send`: records every callback; raises after recording while `crash` is set."""

    def __init__(self) -> None:
        self.callbacks: list[Callback] = []
        self.crash = False

    def __call__(self, callback: Callback) -> None:
        self.callbacks.append(callback)
        if self.crash:
            raise RuntimeError("the relay died before acknowledging")


def _relay(client: redis.Redis, sent: Sent, consumer: str, *, claim_idle_s: float = 30.0) -> CallbackRelay:
    return CallbackRelay(
        client=client, keys=KEYS, send=sent, consumer=consumer, block_s=0.01, claim_idle_s=claim_idle_s
    )


def test_a_job_that_ends_queues_its_success_callback_once(store: RedisJobStore, redis_client: redis.Redis) -> None:
    # Given a job asking for both callbacks, checked until its run ends
    runner = _runner(store, FakeApi("PROCESSED"))
    runner.start("job-1", _request(on_success="app.done", on_failure="app.failed", callback_queue="app"))
    runner.advance("job-1")
    # When something tries to finish it a second time (a late webhook, a sweep)
    record = store.load("job-1")
    assert record is not None and record.finished
    runner.finish_with_run(record, {"id": record.run_id, "status": "PROCESSED"}, time.time())
    # Then exactly one callback is queued: on_success, with the run, a fixed id and the queue asked for
    [callback] = _outbox(redis_client)
    assert (callback.task, callback.queue, callback.kind) == ("app.done", "app", "success")
    assert callback.id == callback_id("job-1", "success") and callback.args[0] == "job-1"
    assert callback.args[1]["id"] == record.run_id and callback.args[1]["status"] == "PROCESSED"


def test_a_job_that_fails_queues_its_failure_callback_with_the_error(
    store: RedisJobStore, redis_client: redis.Redis
) -> None:
    api = FakeApi()
    api.create_error = RunRejected("workflow_x is not published (400)", None, 400)
    _runner(store, api).start("job-2", _request(on_success="app.done", on_failure="app.failed"))
    [callback] = _outbox(redis_client)
    assert (callback.task, callback.queue, callback.kind) == ("app.failed", "celery", "failure")
    job_id, error = callback.args
    assert job_id == "job-2"
    assert error == {
        "job_id": "job-2",
        "error": "rejected",
        "type": "RunRejected",
        "message": "workflow_x is not published (400)",
        "run_id": None,
    }


def test_jobs_without_callbacks_queue_nothing(store: RedisJobStore, redis_client: redis.Redis) -> None:
    runner = _runner(store, FakeApi("FAILED", instant=True))
    runner.start("plain", _request())
    runner.start("only-failure", _request(on_failure="app.failed"))  # a FAILED run is a result, not a failure
    assert store.load("plain") is not None and store.load("only-failure") is not None
    assert _outbox(redis_client) == []


def test_a_webhook_finish_queues_the_callback_and_the_later_check_adds_none(
    store: RedisJobStore, redis_client: redis.Redis
) -> None:
    # Given a submitted job whose run ended on Extend
    api = FakeApi("PROCESSED")
    runner = _runner(store, api)
    runner.start("job-3", _request(on_success="app.done"))
    record = store.load("job-3")
    assert record is not None and record.run_id is not None
    payload = {**api.runs[record.run_id], "status": "PROCESSED"}
    # When the webhook arrives first, then the scheduled check
    event = {"eventId": "evt_1", "eventType": "workflow_run.completed", "payload": payload}
    assert EventApplier(runner=runner).apply(event) is Outcome.APPLIED
    runner.advance("job-3")
    # Then one callback, and the check made no call
    assert [callback.kind for callback in _outbox(redis_client)] == ["success"]
    assert api.calls == ["create"]


def test_callback_task_names_are_checked_at_enqueue() -> None:
    with pytest.raises(InvalidJobRequest, match="on_success"):
        _request(on_success="not a task name")
    with pytest.raises(InvalidJobRequest, match="callback_queue"):
        _request(on_failure="app.failed", callback_queue="")


def test_the_relay_sends_then_acknowledges_and_deletes(store: RedisJobStore, redis_client: redis.Redis) -> None:
    runner = _runner(store, FakeApi("PROCESSED", instant=True))
    for name in ("a", "b"):
        runner.start(name, _request(on_success="app.done"))
    sent = Sent()
    assert _relay(redis_client, sent, "w1").relay_once() == 2
    assert [callback.job_id for callback in sent.callbacks] == ["a", "b"]
    assert redis_client.xlen(KEYS.outbox) == 0
    assert redis_client.xpending(KEYS.outbox, GROUP)["pending"] == 0
    assert _relay(redis_client, sent, "w1").relay_once() == 0


def test_a_callback_a_dead_relay_took_is_sent_again_with_the_same_id(
    store: RedisJobStore, redis_client: redis.Redis
) -> None:
    # Given a relay that sent a callback and died before acknowledging it
    _runner(store, FakeApi("PROCESSED", instant=True)).start("job-4", _request(on_success="app.done"))
    sent = Sent()
    sent.crash = True
    with pytest.raises(RuntimeError):
        _relay(redis_client, sent, "dead", claim_idle_s=0.05).relay_once()
    sent.crash = False
    # When another relay runs before and after the entry has been idle long enough
    other = _relay(redis_client, sent, "alive", claim_idle_s=0.05)
    assert other.relay_once() == 0
    time.sleep(0.1)
    assert other.relay_once() == 1
    # Then the callback went out twice with one task id (the producer's task de-duplicates on it), and is done
    assert [callback.id for callback in sent.callbacks] == [callback_id("job-4", "success")] * 2
    assert redis_client.xlen(KEYS.outbox) == 0


def test_the_relay_recreates_its_group_and_drops_entries_it_cannot_read(redis_client: redis.Redis) -> None:
    sent = Sent()
    relay = _relay(redis_client, sent, "w1")
    assert relay.relay_once() == 0
    redis_client.delete(KEYS.outbox)  # a flushed Redis takes the group with it
    redis_client.xadd(KEYS.outbox, {"callback": "{not json"})
    good = Callback(id="cb", task="app.done", queue="celery", job_id="j", kind="success", args=["j", {}])
    redis_client.xadd(KEYS.outbox, {"callback": good.encode()})
    assert relay.relay_once() == 1
    assert sent.callbacks == [good] and redis_client.xlen(KEYS.outbox) == 0


def test_a_callback_entry_round_trips_as_json() -> None:
    callback = Callback(id="x", task="t", queue="q", job_id="j", kind="failure", args=["j", {"error": "auth"}])
    assert Callback.decode(callback.encode()) == callback
    assert json.loads(callback.encode())["args"] == ["j", {"error": "auth"}]
    with pytest.raises(ValueError, match="not a callback entry"):
        Callback.decode('{"id": "x"}')


def test_relays_of_stopped_workers_are_forgotten_once_idle_with_nothing_pending(redis_client: redis.Redis) -> None:
    # Given three relays: one holding an entry, two idle
    redis_client.xgroup_create(KEYS.outbox, GROUP, id="0", mkstream=True)
    redis_client.xadd(KEYS.outbox, {"callback": "{}"})
    redis_client.xreadgroup(GROUP, "holding", {KEYS.outbox: ">"})
    for name in ("idle-1", "idle-2"):
        redis_client.xgroup_createconsumer(KEYS.outbox, GROUP, name)
    time.sleep(0.05)
    relay = _relay(redis_client, Sent(), "new")
    # When a starting relay tidies up with a short idle limit
    assert relay.forget_gone_consumers(idle_s=0.01) == 2
    # Then only the one with a pending entry is left (it is claimed, never dropped)
    assert [c["name"] for c in redis_client.xinfo_consumers(KEYS.outbox, GROUP)] == ["holding"]
