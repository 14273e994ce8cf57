"""Finished jobs by finish time (`extendq list`) and replay requests (`extendq retry`)."""

from __future__ import annotations

import json
import time

import pytest
import redis
from typer.testing import CliRunner

from extendq.cli.main import Exit, app
from extendq.config.settings import Settings
from extendq.errors import InvalidJobRequest, RunRejected
from extendq.worker.history import finished_jobs, parse_age, replay_request
from extendq.worker.jobs import JobRunner
from extendq.worker.keys import Keys
from extendq.worker.models import JobRequest
from extendq.worker.store import RedisJobStore
from tests.support.fakes import FakeApi, Results

KEYS = Keys("extendq:")


class Clock:
    def __init__(self) -> None:
        self.now = time.time() - 1000

    def __call__(self) -> float:
        return self.now


def _request(**extra: object) -> JobRequest:
    return JobRequest.parse({"workflow": "workflow_x", "file": {"text": "Total: 1.00"}, **extra})


@pytest.fixture
def runs(redis_client: redis.Redis) -> tuple[JobRunner, FakeApi, Clock]:
    """A runner whose runs end at once, on a clock the test moves."""
    clock = Clock()
    api = FakeApi("PROCESSED", instant=True)
    store = RedisJobStore(redis_client, keys=KEYS, result_ttl_s=600)
    return JobRunner(api=api, store=store, publisher=Results(), clock=clock), api, clock


def _finish(runs: tuple[JobRunner, FakeApi, Clock], job_id: str, outcome: str, **extra: object) -> None:
    runner, api, clock = runs
    clock.now += 10
    api.status, api.create_error = outcome, None
    if outcome == "REJECTED_REQUEST":
        api.create_error = RunRejected("workflow_x refused the request (400)", None, 400)
    runner.start(job_id, _request(**extra))


def test_finished_jobs_are_listed_newest_first_and_filtered_by_outcome(
    runs: tuple[JobRunner, FakeApi, Clock],
) -> None:
    # Given jobs that ended every way, one of them a replay
    for job_id, outcome in (("ok", "PROCESSED"), ("run-failed", "FAILED"), ("refused", "REJECTED_REQUEST")):
        _finish(runs, job_id, outcome)
    _finish(runs, "review", "NEEDS_REVIEW", replay_of="ok", tenant=None)
    store, since = runs[0].store, runs[2].now - 3600
    # When they are listed
    every = finished_jobs(store, since=since)
    failed = finished_jobs(store, since=since, statuses=["failed"])
    # Then newest first, with how each ended; "failed" is a job with no run (FAILURE) or a FAILED run
    assert [row["job_id"] for row in every] == ["review", "refused", "run-failed", "ok"]
    assert [row["outcome"] for row in every] == ["NEEDS_REVIEW", "FAILURE", "FAILED", "PROCESSED"]
    assert every[1]["error"] == "rejected" and every[0]["replay_of"] == "ok" and every[0]["workflow_id"] == "workflow_x"
    assert [row["job_id"] for row in failed] == ["refused", "run-failed"]
    assert [row["job_id"] for row in finished_jobs(store, since=since, statuses=["needs_review", "PROCESSED"])] == [
        "review",
        "ok",
    ]
    assert [row["job_id"] for row in finished_jobs(store, since=runs[2].now - 15)] == ["review", "refused"]
    assert len(finished_jobs(store, since=since, limit=1)) == 1


def test_the_index_keeps_what_results_keep(runs: tuple[JobRunner, FakeApi, Clock], redis_client: redis.Redis) -> None:
    _finish(runs, "old", "FAILED")
    runs[2].now += 700  # past the result TTL of 600 s
    _finish(runs, "new", "FAILED")
    assert redis_client.zrange(KEYS.finished, 0, -1) == ["new"]
    redis_client.delete(KEYS.job("new"))  # a record gone before its index entry is skipped
    assert finished_jobs(runs[0].store, since=0) == []


def test_a_replay_is_the_same_request_as_a_new_job_linked_to_the_first(
    runs: tuple[JobRunner, FakeApi, Clock],
) -> None:
    _finish(runs, "refused", "REJECTED_REQUEST", job_key="order-1", metadata={"order": 1}, priority=5)
    replay = replay_request(runs[0].store, "refused")
    assert replay.replay_of == "refused" and replay.job_key is None
    assert (replay.metadata, replay.priority, replay.workflow.id) == ({"order": 1}, 5, "workflow_x")
    assert replay_request(runs[0].store, "refused", job_key="order-1-again").job_key == "order-1-again"


def test_only_finished_jobs_that_did_not_end_processed_can_be_replayed(
    runs: tuple[JobRunner, FakeApi, Clock],
) -> None:
    runner, api, _ = runs
    _finish(runs, "ok", "PROCESSED")
    api.instant = False
    runner.start("running", _request())
    for job_id, message in (("ok", "ended PROCESSED"), ("running", "still in flight"), ("nope", "unknown")):
        with pytest.raises(InvalidJobRequest, match=message):
            replay_request(runner.store, job_id)


def test_ages_read_like_durations() -> None:
    assert [parse_age(value) for value in ("90", "90s", "30m", "1h", "2d", "1.5h")] == [
        90,
        90,
        1800,
        3600,
        172800,
        5400,
    ]
    with pytest.raises(InvalidJobRequest, match="--since"):
        parse_age("yesterday")


def test_the_list_command_prints_json_and_refuses_a_bad_age(
    runs: tuple[JobRunner, FakeApi, Clock], settings: Settings
) -> None:
    runs[2].now = time.time()
    _finish(runs, "refused", "REJECTED_REQUEST")
    _finish(runs, "ok", "PROCESSED")
    env = {"EXTENDQ_REDIS_URL": settings.redis_url, "COLUMNS": "200"}
    listed = CliRunner().invoke(app, ["list", "--status", "failed", "--since", "1h", "--json"], env=env)
    assert listed.exit_code == Exit.OK, listed.output
    assert [row["job_id"] for row in json.loads(listed.stdout)] == ["refused"]
    table = CliRunner().invoke(app, ["list"], env=env)
    assert "refused" in table.stdout and "ok" in table.stdout and "2 jobs" in table.stdout
    bad = CliRunner().invoke(app, ["list", "--since", "soon"], env=env)
    assert bad.exit_code == Exit.BAD_INPUT and "--since" in bad.stderr


def test_finished_jobs_can_be_listed_for_some_tenants_only(runs: tuple[JobRunner, FakeApi, Clock]) -> None:
    # Given a default job and one of each of two tenants (unknown to this runner: they fail with no call)
    _finish(runs, "default", "PROCESSED")
    _finish(runs, "acme-job", "PROCESSED", tenant="acme")
    _finish(runs, "globex-job", "PROCESSED", tenant="globex")
    store, since = runs[0].store, runs[2].now - 3600
    # Then a tenant filter lists only the jobs of those tenants' accounts
    assert [row["job_id"] for row in finished_jobs(store, since=since, tenants=["acme"])] == ["acme-job"]
    assert len(finished_jobs(store, since=since, tenants=["acme", "globex"])) == 2
    assert len(finished_jobs(store, since=since)) == 3
