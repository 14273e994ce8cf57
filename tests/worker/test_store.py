from __future__ import annotations

import redis

from extendq.worker.keys import Keys
from extendq.worker.models import JobRequest, JobState
from extendq.worker.store import RedisJobStore


def _store(client: redis.Redis) -> RedisJobStore:
    return RedisJobStore(client, keys=Keys("extendq-t:"), result_ttl_s=60)


def _request(**extra: object) -> JobRequest:
    return JobRequest.parse({"workflow": "workflow_x", "file": {"id": "file_1"}, **extra})


def test_create_records_and_schedules_a_safety_net(redis_client: redis.Redis) -> None:
    store = _store(redis_client)
    assert store.create("job-1", _request(deadline_s=30), now=100.0, lease_s=120, secrets=None) == "job-1"
    record = store.load("job-1")
    assert record is not None
    assert record.state is JobState.QUEUED
    assert record.deadline_at == 130.0
    assert store.due_at("job-1") == 220.0


def test_create_is_idempotent_and_job_keys_have_one_owner(redis_client: redis.Redis) -> None:
    store = _store(redis_client)
    assert store.create("job-1", _request(job_key="k"), now=1.0, lease_s=1, secrets=None) == "job-1"
    assert store.create("job-1", _request(job_key="k"), now=2.0, lease_s=1, secrets=None) == "job-1"
    assert store.create("job-2", _request(job_key="k"), now=3.0, lease_s=1, secrets=None) == "job-1"
    assert store.load("job-2") is None


def test_claim_due_moves_claimed_jobs_to_their_lease_end(redis_client: redis.Redis) -> None:
    store = _store(redis_client)
    for name, due in (("a", 10.0), ("b", 20.0), ("c", 99.0)):
        store.schedule(name, due)
    claimed = store.claim_due(now=50.0, limit=10, lease_s=30)
    assert sorted(claimed) == [("a", 80.0), ("b", 80.0)]
    assert store.claim_due(now=50.0, limit=10, lease_s=30) == []
    assert store.due_at("a") == 80.0


def test_lock_is_exclusive_and_released(redis_client: redis.Redis) -> None:
    store = _store(redis_client)
    with store.lock("job-1", ttl_s=5) as first:
        with store.lock("job-1", ttl_s=5) as second:
            assert first and not second
    with store.lock("job-1", ttl_s=5) as again:
        assert again


def test_finish_happens_once_and_drops_secrets(redis_client: redis.Redis) -> None:
    store = _store(redis_client)
    store.create("job-1", _request(), now=1.0, lease_s=1, secrets="sealed")
    record = store.load("job-1")
    assert record is not None and record.secrets == "sealed"
    event = {"job_id": "job-1", "state": "SUCCESS"}
    assert store.finish(record, now=5.0, state=JobState.SUCCESS, error="", event=event) == []  # no aliases
    assert store.finish(record, now=6.0, state=JobState.FAILURE, error="x", event=event) is None
    again = store.load("job-1")
    assert again is not None and again.finished and again.state is JobState.SUCCESS and again.secrets is None
    assert store.due_at("job-1") is None
    assert redis_client.xlen("extendq-t:events") == 1
    assert 0 < redis_client.ttl("extendq-t:job:job-1") <= 60


def test_update_and_bump(redis_client: redis.Redis) -> None:
    store = _store(redis_client)
    store.create("job-1", _request(), now=1.0, lease_s=1, secrets=None)
    store.update("job-1", run_id="workflow_run_1", posting_since=3.5, cancel_requested=True)
    assert store.bump("job-1", "checks") == 1
    store.update("job-1", posting_since=None)
    record = store.load("job-1")
    assert record is not None
    assert (record.run_id, record.posting_since, record.cancel_requested, record.checks) == (
        "workflow_run_1",
        None,
        True,
        1,
    )


def test_enqueueing_a_finished_job_key_again_keeps_its_expiry(redis_client: redis.Redis) -> None:
    store = _store(redis_client)
    store.create("job-1", _request(job_key="k"), now=1.0, lease_s=1, secrets=None)
    record = store.load("job-1")
    assert record is not None
    store.finish(record, now=2.0, state=JobState.SUCCESS, error="", event={"job_id": "job-1"})
    assert store.create("job-1", _request(job_key="k"), now=3.0, lease_s=1, secrets=None) == "job-1"
    assert 0 < redis_client.ttl("extendq-t:key:k") <= 60


def test_long_requests_and_secrets_are_stored_in_pieces_that_keep_the_hash_compact(
    redis_client: redis.Redis,
) -> None:
    # Given a request and sealed secrets far longer than one listpack value (64 bytes)
    store = _store(redis_client)
    request = _request(file={"text": "line of invoice text\n" * 40}, metadata={"customer": "x" * 300})
    sealed = "gAAAAAB" + "s" * 250
    store.create("job-1", request, now=1.0, lease_s=1, secrets=sealed)
    # Then every stored value fits a listpack, the hash is one, and the record reads back whole
    raw = redis_client.hgetall("extendq-t:job:job-1")
    assert max(len(value) for value in raw.values()) <= 64 and len(raw) > 10
    assert redis_client.object("encoding", "extendq-t:job:job-1") == "listpack"
    record = store.load("job-1")
    assert record is not None and record.request == request and record.secrets == sealed
    # And finishing drops every piece of the secrets
    store.finish(record, now=2.0, state=JobState.SUCCESS, error="", event={"job_id": "job-1"})
    assert not [name for name in redis_client.hkeys("extendq-t:job:job-1") if name.startswith("sec")]
    finished = store.load("job-1")
    assert finished is not None and finished.secrets is None and finished.request == request


def test_create_locked_takes_the_lock_only_for_a_new_job(redis_client: redis.Redis) -> None:
    store = _store(redis_client)
    owner, token = store.create_locked("job-1", _request(job_key="k"), now=1.0, lease_s=1, secrets=None, lock_ttl_s=5)
    assert owner == "job-1" and token is not None
    with store.lock("job-1", ttl_s=5) as held:
        assert not held  # the creator holds it
    store.unlock("job-1", token)
    assert store.create_locked("job-1", _request(job_key="k"), now=2.0, lease_s=1, secrets=None, lock_ttl_s=5) == (
        "job-1",
        None,
    )
    assert store.create_locked("job-2", _request(job_key="k"), now=3.0, lease_s=1, secrets=None, lock_ttl_s=5) == (
        "job-1",
        None,
    )
    assert redis_client.zscore("extendq-t:inflight", "job-1") == 1.0


def test_an_update_of_a_record_that_is_gone_writes_nothing(redis_client: redis.Redis) -> None:
    # Given a job whose record was read, then expired (or was deleted)
    store = _store(redis_client)
    store.create("job-gone", _request(), now=1.0, lease_s=1, secrets=None)
    store.client.delete(store.keys.job("job-gone"))
    # When a late step writes a field of it
    written = store.update("job-gone", cancel_requested=True)
    # Then no record is made of that field alone (no reader could load a record without its request)
    assert (written, store.client.exists(store.keys.job("job-gone")), store.load("job-gone")) == (False, 0, None)
