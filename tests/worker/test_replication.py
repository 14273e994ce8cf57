"""Before a create, the job's record reaches a replica when the primary has any: a private primary and replica."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from extendq.errors import NotReplicated
from extendq.worker.jobs import JobRunner
from extendq.worker.keys import Keys
from extendq.worker.models import JobRequest, JobState
from extendq.worker.replication import ReplicaWait
from extendq.worker.store import RedisJobStore
from tests.support.fakes import FakeApi, Results
from tests.support.sentinel_redis import RedisNode

KEYS = Keys("extendq-replication:")
DATA = ["--save", "", "--appendonly", "no", "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisNode, RedisNode]]:
    """A primary and its replica, in sync."""
    folder = tmp_path_factory.mktemp("pair")
    primary = RedisNode(folder / "primary", DATA).start()
    replica = RedisNode(folder / "replica", [*DATA, "--replicaof", "127.0.0.1", str(primary.port)])
    try:
        replica.start()
        with primary.client() as client:
            deadline = time.monotonic() + 30
            while ReplicaWait(client=client, fence_key=KEYS.replica_fence).replicas() == 0:
                assert time.monotonic() < deadline, "the replica never came online"
                time.sleep(0.05)
        yield primary, replica
    finally:
        replica.stop()
        primary.stop()


def waits(client: redis.Redis) -> int:
    """How many WAIT commands the server has run."""
    return int(client.info("commandstats").get("cmdstat_wait", {}).get("calls", 0))


def test_with_a_replica_online_the_fence_reaches_it_before_confirm_returns(pair: tuple[RedisNode, RedisNode]) -> None:
    primary, replica = pair
    with primary.client() as client, replica.client() as on_replica:
        # Given a record written on the primary
        client.set("extendq-replication:written-before", "1")
        # When the writes so far are confirmed
        ReplicaWait(client=client, fence_key=KEYS.replica_fence, timeout_ms=5000).confirm("a create")
        # Then the replica has them (the replication stream is in order: the fence came after the record)
        assert on_replica.get("extendq-replication:written-before") == b"1"
        assert on_replica.get(KEYS.replica_fence) == client.get(KEYS.replica_fence)


def test_a_replica_that_does_not_acknowledge_holds_the_create_back(pair: tuple[RedisNode, RedisNode]) -> None:
    primary, replica = pair
    wait = ReplicaWait(client=primary.client(), fence_key=KEYS.replica_fence, timeout_ms=200)
    assert wait.replicas() == 1
    # Given a replica that stopped answering (still connected: the primary counts it online)
    replica.pause()
    try:
        # When the writes are to be confirmed
        with pytest.raises(NotReplicated) as refused:
            wait.confirm("the create of job j-1")
    finally:
        replica.resume()
    # Then the create must wait, for a short while, without spending the retry budget
    assert "no Redis replica acknowledged within 200 ms: the create of job j-1 waits" in str(refused.value)
    assert refused.value.may_have_landed is False and refused.value.retry_after_s == 1.0


def test_a_primary_without_replicas_is_never_waited_for(redis_client: redis.Redis) -> None:
    # Given the test Redis, which has no replica
    wait = ReplicaWait(client=redis_client, fence_key=KEYS.replica_fence, timeout_ms=5000)
    before = waits(redis_client)
    # When writes are confirmed, twice
    wait.confirm("a create")
    wait.confirm("another create")
    # Then no WAIT was sent (and nothing written)
    assert wait.replicas() == 0 and waits(redis_client) == before
    assert redis_client.get(KEYS.replica_fence) is None


class CountingInfo:
    """A client whose INFO answers one online replica, and counts the calls."""

    def __init__(self) -> None:
        self.calls = 0

    def info(self, section: str) -> dict[str, object]:
        self.calls += 1
        return {"role": "master", "connected_slaves": 1, "slave0": {"state": "online", "offset": 1, "lag": 0}}


def test_the_replica_count_is_looked_up_at_most_once_per_period() -> None:
    now, client = [100.0], CountingInfo()
    wait = ReplicaWait(client=client, fence_key=KEYS.replica_fence, cache_s=1.0, clock=lambda: now[0])  # type: ignore[arg-type]
    for step in range(10):
        now[0] = 100.0 + step * 0.25  # 2.25 s in all: lookups at 100, 101 and 102
        assert wait.replicas() == 1
    assert client.calls == 3


def test_a_redis_that_refuses_wait_is_not_waited_for_again() -> None:
    class Refusing(CountingInfo):
        def pipeline(self, transaction: bool = True) -> Refusing:
            return self

        def incr(self, key: str) -> None:
            pass

        def wait(self, replicas: int, timeout_ms: int) -> None:
            pass

        def execute(self) -> list[object]:
            raise redis.ResponseError("unknown command 'WAIT'")

    wait = ReplicaWait(client=Refusing(), fence_key=KEYS.replica_fence)  # type: ignore[arg-type]
    wait.confirm("a create")  # no error: the create goes out, recovery stands behind it
    assert wait.timeout_ms == 0


def test_a_replica_still_syncing_is_not_counted() -> None:
    class Syncing(CountingInfo):
        def info(self, section: str) -> dict[str, object]:
            return {"connected_slaves": 1, "slave0": {"state": "wait_bgsave", "offset": 0, "lag": 0}}

    assert ReplicaWait(client=Syncing(), fence_key="").replicas() == 0  # type: ignore[arg-type]


def test_a_create_held_back_goes_out_at_a_later_step_without_spending_the_budget(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    # Given a job whose create finds no replica acknowledging in time, then one that does
    store = RedisJobStore(redis_client, keys=KEYS, result_ttl_s=60)
    store.create(
        "job-1", JobRequest.parse({"workflow": "w", "file": {"id": "f"}}), now=time.time(), lease_s=1, secrets=None
    )
    api = FakeApi()
    held = [NotReplicated("no Redis replica acknowledged within 500 ms: the create of job job-1 waits", 1.0)]

    class Flaky(ReplicaWait):
        def confirm(self, what: str) -> None:
            if held:
                raise held.pop()

    runner = JobRunner(api=api, store=store, publisher=Results(), replica_wait=Flaky(client=redis_client, fence_key=""))
    # When the job's first step runs
    runner.advance("job-1")
    # Then no run was created; the job waits, its posting mark cleared and its retry budget untouched
    record = store.load("job-1")
    assert api.calls == [] and record is not None and record.run_id is None
    assert record.posting_since is None and record.attempts == 0
    due = store.due_at("job-1")
    assert due is not None and due > time.time()
    # And its next step creates the run
    runner.advance("job-1")
    record = store.load("job-1")
    assert api.calls == ["create"] and record is not None and record.state is JobState.RUNNING
