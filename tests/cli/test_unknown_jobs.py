"""Unknown means unknown: `status`, `result`, `cancel` and `retry` against a real Redis with no worker.

The module has a Redis database of its own: no worker takes the messages these tests leave in the queues.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from typer.testing import CliRunner

from extendq.cli.main import Exit, app
from extendq.config.settings import Settings
from extendq.tasks.celery import create_app
from extendq.tasks.producer import RUN_WORKFLOW, build_request
from extendq.worker.keys import QUEUE
from extendq.worker.store import open_store

NOBODY = "00000000-0000-0000-0000-000000000000"


@pytest.fixture
def env(module_redis_url: str, module_redis: redis.Redis) -> dict[str, str]:
    module_redis.delete("unacked", "unacked_index")
    return {"EXTENDQ_REDIS_URL": module_redis_url, "EXTEND_API_KEY": "sk_test", "COLUMNS": "200"}


@pytest.fixture
def cli(env: dict[str, str]) -> Any:
    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args), env=env)


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_text(f"Invoice #: {name}\nTotal: 10.00\n")
    return tmp_path


def the_one_line(result: Any) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return str(lines[0])


@pytest.mark.parametrize(
    "args",
    [("status", NOBODY), ("status", NOBODY, "--json"), ("result", NOBODY, "--timeout", "3"), ("cancel", NOBODY)],
)
def test_an_id_nobody_sent_is_unknown_with_exit_2(cli: Any, args: tuple[str, ...]) -> None:
    result = cli(*args)
    assert result.exit_code == Exit.BAD_INPUT
    assert the_one_line(result) == f"Error: unknown job {NOBODY} (or its record expired)"
    assert result.stdout == ""


def test_retry_of_an_unknown_id_is_unknown_with_exit_2(cli: Any) -> None:
    result = cli("retry", "hello")
    assert result.exit_code == Exit.BAD_INPUT
    assert the_one_line(result) == "Error: unknown job hello (or its record expired)"


def test_status_shows_the_known_jobs_and_names_the_unknown_one(cli: Any, docs: Path) -> None:
    job_id = cli("submit", str(docs / "a.txt"), "-w", "workflow_invoice").stdout.strip()
    result = cli("status", job_id, NOBODY, "--json")
    assert result.exit_code == Exit.BAD_INPUT
    assert [row["job_id"] for row in json.loads(result.stdout)] == [job_id]
    assert the_one_line(result) == f"Error: unknown job {NOBODY} (or its record expired)"


def test_a_job_just_submitted_is_queued_not_unknown(cli: Any, docs: Path) -> None:
    # Given a lone file submitted while no worker runs
    submitted = cli("submit", str(docs / "a.txt"), "-w", "workflow_invoice")
    assert submitted.exit_code == Exit.OK, submitted.output
    job_id = submitted.stdout.strip()
    # When its status and result are asked for
    status = cli("status", job_id, "--json")
    waited = cli("result", job_id, "--timeout", "0", "--json")
    # Then it is QUEUED (recorded before its message was sent), still in flight for `result`
    assert status.exit_code == Exit.OK, status.output
    [row] = json.loads(status.stdout)
    assert (row["state"], row["workflow_id"], row["run_status"]) == ("QUEUED", "workflow_invoice", None)
    assert waited.exit_code == Exit.TIMED_OUT
    assert json.loads(waited.stdout)["state"] == "QUEUED"


def test_jobs_of_a_batch_not_yet_recorded_are_found_in_the_queue(cli: Any, docs: Path) -> None:
    # Given a folder submitted: its jobs go in one batch message, recorded only when a worker takes it
    submitted = cli("submit", str(docs), "-w", "workflow_invoice", "--json")
    ids = [row["job_id"] for row in json.loads(submitted.stdout)]
    # When their status is asked for, then each is QUEUED
    status = cli("status", *ids, "--json")
    assert status.exit_code == Exit.OK, status.output
    assert [(row["job_id"], row["state"]) for row in json.loads(status.stdout)] == [(i, "QUEUED") for i in ids]


def test_a_job_sent_by_name_is_queued_while_waiting_and_while_a_worker_holds_it(
    cli: Any, module_redis_url: str, module_redis: redis.Redis
) -> None:
    # Given a job sent by task name, as a producer without extendq does: no record
    settings = Settings.from_env({"EXTENDQ_REDIS_URL": module_redis_url})
    producer = create_app(settings)
    request = build_request(workflow="workflow_invoice", file={"text": "Total: 1.00"})
    job_id = producer.send_task(RUN_WORKFLOW, kwargs=request.wire(), task_id="by-name-1").id
    producer.close()
    # Then while its message waits in the queue it is QUEUED
    assert [row["state"] for row in json.loads(cli("status", job_id, "--json").stdout)] == ["QUEUED"]
    # And while a worker holds it unacknowledged (kombu keeps it in the `unacked` hash) it is QUEUED too
    raw = module_redis.rpop(QUEUE)
    assert raw is not None and job_id in raw
    module_redis.hset("unacked", "tag-1", json.dumps([json.loads(raw), QUEUE, QUEUE]))
    assert [row["state"] for row in json.loads(cli("status", job_id, "--json").stdout)] == ["QUEUED"]
    # And once it is gone from the broker with no record written, it is unknown
    module_redis.delete("unacked")
    assert cli("status", job_id).exit_code == Exit.BAD_INPUT


def test_status_shows_the_records_state_over_celerys_pending(cli: Any, module_redis_url: str) -> None:
    settings = Settings.from_env({"EXTENDQ_REDIS_URL": module_redis_url})
    store = open_store(settings)
    request = build_request(workflow="workflow_invoice", file={"text": "Total: 1.00"})
    store.create("recorded-1", request, now=time.time(), lease_s=60, secrets=None)
    store.update("recorded-1", state="SUBMITTING")
    store.client.close()
    [row] = json.loads(cli("status", "recorded-1", "--json").stdout)
    assert row["state"] == "SUBMITTING"


def test_list_refuses_an_unknown_state_naming_the_valid_ones(cli: Any) -> None:
    result = cli("list", "--status", "bogus")
    assert result.exit_code == Exit.BAD_INPUT
    line = the_one_line(result)
    assert "'bogus'" in line
    for name in ("failed", "success", "failure", "processed", "needs_review", "rejected", "cancelled"):
        assert name in line


def test_list_takes_a_state_or_a_run_status_in_any_case(cli: Any) -> None:
    for value in ("FAILURE", "processed", "Needs_Review", "failed"):
        assert cli("list", "--status", value).exit_code == Exit.OK
