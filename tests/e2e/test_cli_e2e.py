"""The `extendq` commands against a real worker, Redis and the served emulator (through typer's CliRunner)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from typer.testing import CliRunner

from extendq.cli.main import Exit, app
from extendq.tasks.producer import build_request, enqueue
from tests.support.emulator import EmulatorProcess
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.e2e


@pytest.fixture
def cli(worker_env: dict[str, str], worker: WorkerProcess, clean: redis.Redis) -> Any:
    """Run `extendq ...` in this process with the workers' environment; the result of CliRunner."""
    runner = CliRunner()

    def invoke(*args: str) -> Any:
        return runner.invoke(app, list(args), env={**worker_env, "COLUMNS": "200"})

    return invoke


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    """A folder with two small invoices and a hidden file the CLI must skip."""
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("Invoice #: A-1\nTotal: 10.00\n")
    (folder / "b.txt").write_text("Invoice #: B-2\nTotal: 20.00\n")
    (folder / ".hidden").write_text("not a document")
    return folder


def wait_for(predicate: Any, timeout_s: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout_s}s")


def submit_one(cli: Any, path: Path, workflow: str, *extra: str) -> str:
    result = cli("submit", str(path), "--workflow", workflow, *extra)
    assert result.exit_code == Exit.OK, result.output
    return str(result.stdout.strip())


# ---- submit and result -------------------------------------------------------------------------------------


def test_submit_prints_the_job_id_and_result_returns_the_run(cli: Any, docs: Path) -> None:
    # Given a document submitted with metadata
    job_id = submit_one(cli, docs / "a.txt", "workflow_processed", "--metadata", '{"customer": "acme"}')
    # When its result is asked for as JSON
    result = cli("result", job_id, "--timeout", "20", "--json")
    # Then it is the terminal run with the API's wire names, and the exit code says PROCESSED
    assert result.exit_code == Exit.OK, result.output
    run = json.loads(result.stdout)
    assert run["status"] == "PROCESSED"
    assert run["metadata"]["customer"] == "acme"
    assert run["metadata"]["extendq:job_id"] == job_id
    # And the human view shows the same run
    shown = cli("result", job_id)
    assert shown.exit_code == Exit.OK
    assert run["id"] in shown.stdout and "PROCESSED" in shown.stdout


def test_submit_json_expands_a_folder(cli: Any, docs: Path) -> None:
    result = cli("submit", str(docs), "-w", "workflow_processed", "--json")
    assert result.exit_code == Exit.OK, result.output
    rows = json.loads(result.stdout)
    assert [Path(row["input"]).name for row in rows] == ["a.txt", "b.txt"]
    assert {row["workflow"] for row in rows} == {"workflow_processed"}
    assert len({row["job_id"] for row in rows}) == 2


def test_submit_wait_shows_the_job_ids_the_table_and_exits_0(cli: Any, docs: Path) -> None:
    result = cli("submit", str(docs), "-w", "workflow_processed", "--wait")
    assert result.exit_code == Exit.OK, result.output
    for name in ("a.txt", "b.txt"):
        assert name in result.stdout
    # Each job's id comes first, with its document, then the table
    ids = [line.split()[0] for line in result.stdout.splitlines()[:2]]
    assert [Path(line.split()[1]).name for line in result.stdout.splitlines()[:2]] == ["a.txt", "b.txt"]
    assert all(len(job_id) == 36 for job_id in ids)
    assert "SUCCESS 2" in result.stdout and "PROCESSED 2" in result.stdout
    assert "p50" in result.stdout and "p95" in result.stdout
    # The progress bar went to stderr, so stdout is only the table
    assert "2/2" in result.stderr


def test_submit_wait_exits_1_when_a_run_does_not_end_processed(cli: Any, docs: Path) -> None:
    result = cli("submit", str(docs), "-w", "workflow_failed", "--wait", "--json")
    assert result.exit_code == Exit.JOB_FAILED, result.output
    body = json.loads(result.stdout)
    assert [(job["state"], job["run_status"]) for job in body["jobs"]] == [("SUCCESS", "FAILED")] * 2
    assert body["summary"]["by_state"] == {"SUCCESS": 2}
    assert body["summary"]["by_run_status"] == {"FAILED": 2}
    assert body["summary"]["latency_p50_s"] > 0


def test_submit_wait_shows_a_failed_job_as_an_error(cli: Any, docs: Path) -> None:
    result = cli("submit", str(docs / "a.txt"), "-w", "workflow_does_not_exist", "--wait", "--json")
    assert result.exit_code == Exit.JOB_FAILED, result.output
    [job] = json.loads(result.stdout)["jobs"]
    assert (job["done"], job["state"], job["run_status"]) == (True, "FAILURE", None)
    assert job["note"].startswith("rejected: ")


def test_submit_a_manifest_with_wait(cli: Any, docs: Path) -> None:
    # Given a JSONL manifest with a workflow and metadata per row
    manifest = docs / "batch.jsonl"
    rows = [
        {"path": "a.txt", "workflow": "workflow_processed", "metadata": {"row": 1}},
        {"path": "b.txt", "workflow": "workflow_review", "metadata": {"row": 2}},
    ]
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    # When it is submitted and waited for
    result = cli("submit", "--manifest", str(manifest), "--wait", "--json")
    # Then each row ran with its own workflow; one needs review, so the exit code is 1
    assert result.exit_code == Exit.JOB_FAILED, result.output
    jobs = json.loads(result.stdout)["jobs"]
    assert [(job["input"], job["run_status"]) for job in jobs] == [("a.txt", "PROCESSED"), ("b.txt", "NEEDS_REVIEW")]
    assert all(job["done"] and job["run_id"] for job in jobs)


def test_result_of_a_failed_job_is_one_line_and_exit_1(cli: Any, docs: Path) -> None:
    job_id = submit_one(cli, docs / "a.txt", "workflow_does_not_exist")
    result = cli("result", job_id, "--timeout", "20")
    assert result.exit_code == Exit.JOB_FAILED
    assert result.stderr.startswith(f"Error: job {job_id} failed (rejected):")
    as_json = json.loads(cli("result", job_id, "--json").stdout)
    assert as_json["state"] == "FAILURE" and as_json["error"] == "rejected"


def test_result_timeout_exits_4_while_the_job_runs(cli: Any, docs: Path) -> None:
    job_id = submit_one(cli, docs / "a.txt", "workflow_long")
    result = cli("result", job_id, "--timeout", "0.5", "--json")
    assert result.exit_code == Exit.TIMED_OUT
    assert json.loads(result.stdout)["state"] in {"QUEUED", "SUBMITTING", "RUNNING"}
    cli("cancel", job_id)


# ---- status and cancel --------------------------------------------------------------------------------------


def test_status_follows_a_job_from_running_to_success(cli: Any, docs: Path) -> None:
    job_id = submit_one(cli, docs / "a.txt", "workflow_slow")

    def running() -> dict[str, Any] | None:
        [row] = json.loads(cli("status", job_id, "--json").stdout)
        return row if row["state"] == "RUNNING" and row["run_id"] else None

    row = wait_for(running)
    assert row["workflow_id"] == "workflow_slow"
    assert row["run_status"] in {"PENDING", "PROCESSING"}
    assert cli("result", job_id, "--timeout", "20").exit_code == Exit.OK
    done = cli("status", job_id, "--json")
    assert done.exit_code == Exit.OK
    [row] = json.loads(done.stdout)
    assert (row["state"], row["run_status"]) == ("SUCCESS", "PROCESSED")
    assert isinstance(row["checks"], int)  # 0 when a webhook, not a check, finished it
    table = cli("status", job_id)
    assert job_id in table.stdout and "PROCESSED" in table.stdout


def test_status_exits_1_for_a_failed_job(cli: Any, docs: Path) -> None:
    job_id = submit_one(cli, docs / "a.txt", "workflow_does_not_exist")
    cli("result", job_id, "--timeout", "20")
    result = cli("status", job_id, "--json")
    assert result.exit_code == Exit.JOB_FAILED
    [row] = json.loads(result.stdout)
    assert (row["state"], row["error"]) == ("FAILURE", "rejected")


def test_cancel_cancels_a_running_job(cli: Any, docs: Path) -> None:
    # Given a long job whose run is in flight
    job_id = submit_one(cli, docs / "a.txt", "workflow_long")
    wait_for(lambda: json.loads(cli("status", job_id, "--json").stdout)[0]["state"] == "RUNNING")
    # When it is cancelled
    result = cli("cancel", job_id, "--json")
    # Then the worker accepted it and the run ends CANCELLED (not PROCESSED: exit 1)
    assert result.exit_code == Exit.OK, result.output
    assert json.loads(result.stdout) == [{"job_id": job_id, "cancelled": True}]
    ended = cli("result", job_id, "--timeout", "20", "--json")
    assert ended.exit_code == Exit.JOB_FAILED
    assert json.loads(ended.stdout)["status"] == "CANCELLED"
    # And cancelling it again says it had already ended
    again = cli("cancel", job_id)
    assert again.exit_code == Exit.JOB_FAILED
    assert "already finished" in again.stdout


# ---- watch ----------------------------------------------------------------------------------------------------


def test_watch_json_prints_events_until_count_jobs_finished(
    cli: Any, producer: Celery, emulator: EmulatorProcess
) -> None:
    # Given watch running before any job finishes
    outcome: dict[str, Any] = {}
    watcher = threading.Thread(
        target=lambda: outcome.update(result=cli("watch", "--json", "--count", "2", "--timeout", "20"))
    )
    watcher.start()
    time.sleep(0.5)
    # When two jobs run to the end
    jobs = [
        enqueue(producer, build_request(workflow="workflow_processed", file={"text": f"Total: {n}.00"})) for n in (1, 2)
    ]
    watcher.join(timeout=25)
    # Then watch ended by itself after their two terminal events, one JSON object per line
    result = outcome["result"]
    assert result.exit_code == Exit.OK, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    terminal = [event for event in events if event["state"] in {"SUCCESS", "FAILURE"}]
    assert sorted(event["job_id"] for event in terminal) == sorted(job.id for job in jobs)
    assert {event["run_status"] for event in terminal} == {"PROCESSED"}
    assert all(event["workflow_id"] == "workflow_processed" and event["run_id"] for event in terminal)


def test_watch_view_shows_the_last_finished_jobs(cli: Any, docs: Path) -> None:
    job_id = submit_one(cli, docs / "a.txt", "workflow_processed")
    assert cli("result", job_id, "--timeout", "20").exit_code == Exit.OK
    wait_for(lambda: job_id in cli("watch", "--timeout", "0").stdout, timeout_s=5)
    view = cli("watch", "--timeout", "0.2")
    assert view.exit_code == Exit.OK
    assert "last finished" in view.stdout and "in flight: 0 jobs" in view.stdout
