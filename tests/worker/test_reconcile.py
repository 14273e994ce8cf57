from __future__ import annotations

from collections.abc import Sequence

import redis

from extendq.worker.keys import Keys
from extendq.worker.models import JobRequest, JobState
from extendq.worker.reconcile import Reconciler
from extendq.worker.store import RedisJobStore

NOW = 1_000_000.0
TTL = 3600


class Driven:
    """The `drive` callback: remembers every job id handed to it."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def __call__(self, job_ids: Sequence[str]) -> None:
        self.ids.extend(job_ids)


def _store(client: redis.Redis) -> RedisJobStore:
    return RedisJobStore(client, keys=Keys("extendq:"), result_ttl_s=TTL)


def _reconciler(store: RedisJobStore, driven: Driven, *, batch: int = 1000) -> Reconciler:
    return Reconciler(store=store, drive=driven, result_ttl_s=TTL, grace_s=60, batch=batch, clock=lambda: NOW)


def _job(store: RedisJobStore, job_id: str, *, due: float | None, **request: object) -> None:
    payload = {"workflow": "workflow_x", "file": {"id": "file_1"}, **request}
    store.create(job_id, JobRequest.parse(payload), now=NOW - 600, lease_s=1, secrets=None)
    if due is None:
        store.client.zrem(store.keys.due, job_id)
    else:
        store.schedule(job_id, due)


def _finish(store: RedisJobStore, job_id: str, *, at: float) -> None:
    record = store.load(job_id)
    assert record is not None
    store.finish(record, now=at, state=JobState.SUCCESS, error="", event={"job_id": job_id})


def test_jobs_missing_from_the_schedule_late_or_past_their_deadline_are_driven(redis_client: redis.Redis) -> None:
    # Given jobs in every situation a pass can meet
    store, driven = _store(redis_client), Driven()
    _job(store, "on-time", due=NOW + 5)
    _job(store, "claimed", due=NOW + 120)  # a dispatcher's lease
    _job(store, "slightly-late", due=NOW - 30)  # within the grace period: the dispatcher will get to it
    _job(store, "unscheduled", due=None)
    _job(store, "overdue", due=NOW - 61)
    _job(store, "past-deadline", due=NOW + 3600, deadline_s=500)  # deadline NOW - 100, check an hour away
    _job(store, "finished", due=None)
    _finish(store, "finished", at=NOW - 10)
    # When the reconciler runs (in batches smaller than the keyspace)
    counts = _reconciler(store, driven, batch=2).run()
    # Then exactly the stuck jobs were driven, each once, and nothing else changed
    assert sorted(driven.ids) == ["overdue", "past-deadline", "unscheduled"]
    assert (counts["unscheduled"], counts["overdue"], counts["past_deadline"], counts["driven"]) == (1, 1, 1, 3)
    assert store.due_at("on-time") == NOW + 5 and store.due_at("unscheduled") is None


def test_a_second_pass_after_the_jobs_moved_on_drives_nothing(redis_client: redis.Redis) -> None:
    store, driven = _store(redis_client), Driven()
    _job(store, "a", due=None)
    _reconciler(store, driven).run()
    store.schedule("a", NOW + 1)  # what the driven job's step does
    assert _reconciler(store, driven).run() == {}
    assert driven.ids == ["a"]


def test_finished_records_without_expiry_get_one_or_go(redis_client: redis.Redis) -> None:
    # Given finished records whose expiry was lost, one of them older than the TTL, and a record fragment
    store, driven = _store(redis_client), Driven()
    for job_id, finished_at in (("recent", NOW - 100), ("ancient", NOW - TTL - 1)):
        _job(store, job_id, due=None)
        _finish(store, job_id, at=finished_at)
        redis_client.persist(f"extendq:job:{job_id}")
    redis_client.hset("extendq:job:fragment", "chk", 3)  # a counter bumped after the record expired
    # When the reconciler runs
    counts = _reconciler(store, driven).run()
    # Then the recent one expires when it should have, the others are gone, and none was driven
    assert 0 < redis_client.ttl("extendq:job:recent") <= TTL - 100
    assert not redis_client.exists("extendq:job:ancient") and not redis_client.exists("extendq:job:fragment")
    assert (counts["records_expiring"], counts["records_removed"]) == (1, 2)
    assert driven.ids == []


def test_indexes_of_finished_or_vanished_jobs_never_outlive_them(redis_client: redis.Redis) -> None:
    # Given a finished job whose job-key index lost its expiry (the key was enqueued again) and which got a
    # late alias; a run index and alias set whose job is gone; and a job in flight with its indexes
    store, driven = _store(redis_client), Driven()
    _job(store, "done", due=None, job_key="order-1")
    store.record_run("done", "run_done", submitted_at=NOW - 500)
    _finish(store, "done", at=NOW - 10)
    redis_client.persist("extendq:key:order-1")
    store.add_alias("done", "late-alias")
    redis_client.set("extendq:run:run_gone", "gone-job")
    redis_client.sadd("extendq:alias:gone-job", "x")
    _job(store, "live", due=NOW + 5, job_key="order-2")
    store.record_run("live", "run_live", submitted_at=NOW - 500)
    store.add_alias("live", "twin")
    # When the reconciler runs
    counts = _reconciler(store, driven).run()
    # Then the finished job's indexes expire with it, the orphans are gone, the live job's are untouched
    job_ttl = redis_client.pttl("extendq:job:done")
    for key in ("extendq:key:order-1", "extendq:alias:done", "extendq:run:run_done"):
        assert 0 < redis_client.pttl(key) <= job_ttl, key
    assert not redis_client.exists("extendq:run:run_gone") and not redis_client.exists("extendq:alias:gone-job")
    for key in ("extendq:key:order-2", "extendq:run:run_live", "extendq:alias:live"):
        assert redis_client.ttl(key) == -1, key
    assert (counts["indexes_expiring"], counts["indexes_removed"]) == (2, 2)


def test_due_entries_without_a_job_record_are_removed(redis_client: redis.Redis) -> None:
    store, driven = _store(redis_client), Driven()
    _job(store, "real", due=NOW + 5)
    store.schedule("ghost", NOW - 1000)
    counts = _reconciler(store, driven).run()
    assert redis_client.zrange("extendq:due", 0, -1) == ["real"]
    assert counts["due_orphans_removed"] == 1 and driven.ids == []


def test_a_prefix_with_glob_characters_scans_only_its_own_keys(redis_client: redis.Redis) -> None:
    store = RedisJobStore(redis_client, keys=Keys("extendq[1]:"), result_ttl_s=TTL)
    other, driven = _store(redis_client), Driven()
    _job(store, "mine", due=None)
    _job(other, "not-mine", due=None)
    Reconciler(store=store, drive=driven, result_ttl_s=TTL, grace_s=60, clock=lambda: NOW).run()
    assert driven.ids == ["mine"]


def test_a_tenants_in_flight_set_keeps_only_its_jobs_in_flight(redis_client: redis.Redis) -> None:
    # Given two of acme's jobs in flight, one finished (it left the set), and one whose record was lost
    store, driven = _store(redis_client), Driven()
    for job_id in ("running", "finished", "lost"):
        _job(store, job_id, due=NOW + 5, tenant="acme")
    _finish(store, "finished", at=NOW - 10)
    assert redis_client.zrange("extendq:tenant:acme:inflight", 0, -1) == ["lost", "running"]
    redis_client.delete("extendq:job:lost")
    # When the reconciler runs, then only the job in flight is counted for acme's sweeps
    counts = _reconciler(store, driven).run()
    assert redis_client.zrange("extendq:tenant:acme:inflight", 0, -1) == ["running"]
    assert counts["tenant_orphans_removed"] == 1
