"""Scheduled work end to end: a real beat and real workers on a Redis database of their own, the served emulator.

Beat fires every periodic job each second here, and the grace and review intervals are a second, so each
test shows the real path: beat -> broker -> worker -> `worker.*` -> Extend (the emulator) and Redis.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from celery.result import AsyncResult
from typer.testing import CliRunner

from extendq.cli.main import Exit, app
from extendq.config.settings import Settings
from extendq.errors import DeadlineExceeded
from extendq.tasks.celery import create_app
from extendq.tasks.producer import build_request, enqueue
from tests.e2e.conftest import PROFILE, SECRETS_KEY
from tests.e2e.test_pipeline import wait_for
from tests.support.beat import BeatProcess
from tests.support.emulator import EmulatorProcess
from tests.support.worker import WorkerProcess

# Waits are a loaded machine's (WAIT_S each): they end as soon as what they wait for happens.
WAIT_S = 120
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

SCHEDULE = {name: {"every": "1s"} for name in ("reconcile", "review", "ingest", "usage")}
# workflow_invoice reads the document: no total -> FAILED, else PROCESSED.
SCHEDULED_PROFILE = {
    **PROFILE,
    "workflows": {
        **PROFILE["workflows"],
        "workflow_invoice": {"name": "Invoice", "duration_s": [0.3, 0.8], "outcomes": "content"},
    },
}


@pytest.fixture(scope="module")
def inbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("inbox")


@pytest.fixture(scope="module")
def env(worker_env: dict[str, str], module_redis_url: str, inbox: Path) -> dict[str, str]:
    """The workers' environment, on this module's database, with every scheduled job at test speed."""
    return {
        **worker_env,
        "EXTENDQ_REDIS_URL": module_redis_url,
        "EXTENDQ_BEAT_SCHEDULE": json.dumps(SCHEDULE),
        "EXTENDQ_BEAT_MAX_LOOP_INTERVAL_S": "0.25",
        "EXTENDQ_BEAT_LOCK_TIMEOUT_S": "3",
        "EXTENDQ_RECONCILE_GRACE_S": "1",
        "EXTENDQ_REVIEW_INTERVAL_S": "1",
        "EXTENDQ_INGEST_DIR": str(inbox),
        "EXTENDQ_INGEST_WORKFLOW": "workflow_invoice",
        "EXTENDQ_INGEST_SETTLE_S": "0.5",
        "EXTENDQ_SWEEP": "off",  # list sweeps would find ended runs on their own; here the reconciler must
    }


@pytest.fixture(scope="module")
def producer(env: dict[str, str]) -> Celery:
    return create_app(Settings.from_env(env))


@pytest.fixture(scope="module")
def beat(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[BeatProcess]:
    with BeatProcess(env, log_path=tmp_path_factory.mktemp("beat") / "beat.log") as process:
        yield process


@pytest.fixture
def start_worker(env: dict[str, str], tmp_path: Path) -> Iterator[Callable[[], WorkerProcess]]:
    """Start a worker on this module's database (stopped at the end of the test)."""
    started: list[WorkerProcess] = []

    def start() -> WorkerProcess:
        process = WorkerProcess(env, log_path=tmp_path / f"worker-{len(started)}.log", concurrency=2).start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def fresh(emulator: EmulatorProcess, module_redis_url: str, beat: BeatProcess) -> Iterator[redis.Redis]:
    """An empty emulator and no job data (beat's own keys stay: it is running); a client on the database."""
    client = redis.Redis.from_url(module_redis_url, decode_responses=True)
    emulator.set_profile(SCHEDULED_PROFILE)
    emulator.reset()
    _clean(client)
    yield client
    _clean(client)
    client.close()


def _clean(client: redis.Redis) -> None:
    for pattern in ("extendq*", "celery-task-meta-*"):
        keys = [key for key in client.scan_iter(match=pattern, count=1000) if not key.startswith("extendq:beat:")]
        if keys:
            client.delete(*keys)


def submit(producer: Celery, **request: Any) -> AsyncResult[Any]:
    request.setdefault("file", {"text": "Invoice #: 1\nTotal: 10.00"})
    return enqueue(producer, build_request(secrets_key=SECRETS_KEY, **request))


def runs_per(emulator: EmulatorProcess, key: str) -> Counter[str]:
    return Counter(str(run["metadata"].get(key)) for run in emulator.runs())


# ---- reconciliation ------------------------------------------------------------------------------------------


def test_jobs_whose_due_checks_were_lost_all_finish_with_one_run_each(
    producer: Celery, emulator: EmulatorProcess, fresh: redis.Redis, start_worker: Callable[[], WorkerProcess]
) -> None:
    # Given 50 jobs in flight with runs of 2-3 s, submitted by a worker that then stops
    first = start_worker()
    jobs = [submit(producer, workflow="workflow_slow") for _ in range(50)]
    wait_for(lambda: all(job.state == "RUNNING" for job in jobs), timeout_s=WAIT_S)
    first.stop()
    # When their due checks vanish (as a Redis restart without persistence would lose them)
    fresh.zrem("extendq:due", *(job.id for job in jobs))
    time.sleep(1.5)
    assert fresh.zcard("extendq:due") == 0 and not any(job.ready() for job in jobs)
    # and a worker runs again: nothing is scheduled, only beat's reconciler can find the jobs
    second = start_worker()
    # Then every job finishes, from the run Extend kept, with exactly one run per job
    results = [job.get(timeout=WAIT_S) for job in jobs]
    assert {run["status"] for run in results} == {"PROCESSED"}
    assert runs_per(emulator, "extendq:job_id") == Counter({job.id: 1 for job in jobs})
    driven = sum(int(line.split("unscheduled=")[1].split()[0]) for line in _lines(second, "reconcile: "))
    assert driven >= 50


def test_a_job_past_its_deadline_is_cancelled_and_failed_by_the_reconciler(
    producer: Celery, emulator: EmulatorProcess, fresh: redis.Redis, start_worker: Callable[[], WorkerProcess]
) -> None:
    # Given a job of a minute-long run with a 3 s deadline, whose next check was pushed an hour away
    worker = start_worker()
    job = submit(producer, workflow="workflow_long", deadline_s=3)
    wait_for(lambda: job.state == "RUNNING", timeout_s=WAIT_S)
    wait_for(lambda: _push_away(fresh, job.id), timeout_s=WAIT_S)
    # When the deadline passes
    with pytest.raises(DeadlineExceeded) as failed:
        job.get(timeout=WAIT_S)
    # Then the reconciler drove it: the run was cancelled on Extend and the job failed with the deadline
    assert failed.value.run_id is not None
    wait_for(lambda: [run["status"] for run in emulator.runs()] == ["CANCELLED"], timeout_s=WAIT_S)
    assert any("past_deadline=1" in line for line in _lines(worker, "reconcile: "))


def _push_away(client: redis.Redis, job_id: str) -> bool:
    """Schedule the job's next check an hour away; True once no check in progress rescheduled it since."""
    client.zadd("extendq:due", {job_id: time.time() + 3600})
    time.sleep(0.3)
    return float(client.zscore("extendq:due", job_id) or 0) > time.time() + 3000


def _lines(worker: WorkerProcess, marker: str) -> list[str]:
    return [line for line in worker.log_text().splitlines() if marker in line]


# ---- review follow-up ----------------------------------------------------------------------------------------


def test_a_watched_review_publishes_its_later_outcome(
    producer: Celery,
    emulator: EmulatorProcess,
    fresh: redis.Redis,
    start_worker: Callable[[], WorkerProcess],
    env: dict[str, str],
) -> None:
    # Given two watched jobs whose runs ended NEEDS_REVIEW (and one that did not ask to be watched)
    start_worker()
    approved, rejected, plain = (
        submit(producer, workflow="workflow_review", needs_review="watch"),
        submit(producer, workflow="workflow_review", needs_review="watch"),
        submit(producer, workflow="workflow_review"),
    )
    runs = {job.id: job.get(timeout=WAIT_S) for job in (approved, rejected, plain)}
    assert {run["status"] for run in runs.values()} == {"NEEDS_REVIEW"}
    # When a reviewer approves one and rejects the other in Extend
    emulator.review(runs[approved.id]["id"], "approve")
    emulator.review(runs[rejected.id]["id"], "reject", note="wrong vendor")
    # Then a REVIEWED event carries each later outcome, with the job and run ids
    reviewed = wait_for(lambda: len(_reviewed(fresh)) == 2 and _reviewed(fresh), timeout_s=WAIT_S)
    assert reviewed == {
        approved.id: ("PROCESSED", runs[approved.id]["id"]),
        rejected.id: ("REJECTED", runs[rejected.id]["id"]),
    }
    # and the jobs' status shows it, while their results stay the NEEDS_REVIEW runs the producer got
    status = CliRunner().invoke(app, ["status", approved.id, rejected.id, plain.id, "--json"], env=env)
    assert [row["review_status"] for row in json.loads(status.stdout)] == ["PROCESSED", "REJECTED", None]
    assert {AsyncResult(job.id, app=producer).get()["status"] for job in (approved, rejected)} == {"NEEDS_REVIEW"}
    assert fresh.zcard("extendq:review") == 0


def _reviewed(client: redis.Redis) -> dict[str, tuple[str, str]]:
    events = [fields for _, fields in client.xrange("extendq:events") if fields["state"] == "REVIEWED"]
    return {event["job_id"]: (event["status"], event["run_id"]) for event in events}


# ---- folder ingestion ----------------------------------------------------------------------------------------


def test_files_dropped_in_the_folder_become_one_job_each_and_are_filed_away(
    emulator: EmulatorProcess, fresh: redis.Redis, start_worker: Callable[[], WorkerProcess], inbox: Path
) -> None:
    start_worker()
    # Given 30 documents dropped into the folder: 24 whole, 6 still being written for a few seconds
    for n in range(24):
        total = f"Total: {n + 1}.00\n" if n % 4 else ""  # every fourth has no total: its run FAILS
        (inbox / f"inv-{n:02d}.txt").write_text(f"ACME\nInvoice #: {n}\n{total}")
    growing = [inbox / f"inv-{n:02d}.txt" for n in range(24, 30)]
    writer = threading.Thread(target=_write_slowly, args=(growing,))
    writer.start()
    try:
        # When beat's scans take them as they settle
        wait_for(lambda: _filed(inbox) == 30, timeout_s=WAIT_S)
    finally:
        writer.join()
    # Then each landed in done/ (PROCESSED) or failed/ with a sidecar holding its run, nothing is left behind,
    done, failed = sorted((inbox / "done").glob("*.txt")), sorted((inbox / "failed").glob("*.txt"))
    assert (len(done), len(failed)) == (24, 6)
    for path in done + failed:
        sidecar = json.loads(path.with_name(path.name + ".json").read_text())
        assert sidecar["file"] == path.name and sidecar["run"]["status"] == sidecar["status"]
        assert sidecar["status"] == ("PROCESSED" if path.parent.name == "done" else "FAILED")
    assert (inbox / "done" / "inv-29.txt").read_text().endswith("Total: 29.00\n")
    assert [path.name for path in inbox.iterdir() if path.is_file()] == []
    # and no file was submitted twice: one run per job key, one job key per file
    per_key = runs_per(emulator, "extendq:job_key")
    assert len(per_key) == 30 and set(per_key.values()) == {1}
    assert sorted(run["metadata"]["ingest_file"] for run in emulator.runs()) == [f"inv-{n:02d}.txt" for n in range(30)]


def _write_slowly(paths: list[Path]) -> None:
    for path in paths:
        path.write_text("ACME\n")
    for step in range(8):  # appended every 0.4 s: never settled while being written
        time.sleep(0.4)
        for path in paths:
            with path.open("a") as handle:
                handle.write(f"line {step}\n")
    for path in paths:
        with path.open("a") as handle:
            handle.write(f"Invoice #: {path.stem}\nTotal: {int(path.stem[-2:])}.00\n")


def _filed(inbox: Path) -> int:
    return sum(1 for folder in ("done", "failed") for _ in (inbox / folder).glob("*.txt.json"))


# ---- usage report --------------------------------------------------------------------------------------------


def test_usage_report_matches_the_credits_extend_counted(
    producer: Celery,
    emulator: EmulatorProcess,
    fresh: redis.Redis,
    start_worker: Callable[[], WorkerProcess],
    env: dict[str, str],
) -> None:
    # Given finished runs of two workflows, some tagged for two teams
    start_worker()
    jobs = [
        submit(producer, workflow=workflow, metadata={"extend:usage_tags": tags} if tags else {})
        for workflow, tags in [
            ("workflow_processed", ["team-ap"]),
            ("workflow_processed", ["team-ap", "eu"]),
            ("workflow_failed", ["team-ar"]),
            ("workflow_invoice", None),
            ("workflow_review", ["team-ap"]),
        ]
    ]
    for job in jobs:
        job.get(timeout=WAIT_S)
    served = emulator.runs()
    credits = sum(run["usage"]["credits"] for run in served)
    by_tag: Counter[str] = Counter()
    for run in served:
        for tag in run["metadata"].get("extend:usage_tags", []):
            by_tag[tag] += run["usage"]["credits"]

    # When beat's usage job has rolled them up, `extendq usage --json` reports
    def report() -> dict[str, Any] | None:
        result = CliRunner().invoke(app, ["usage", "--json"], env=env)
        assert result.exit_code == Exit.OK, result.output
        body: dict[str, Any] = json.loads(result.stdout)
        return body if body["total"]["runs"] == len(jobs) and body["pending_runs"] == 0 else None

    body = wait_for(report, timeout_s=WAIT_S)
    # Then its totals are Extend's: in all, by tag and by workflow
    total = body["total"]
    assert credits > 0 and total["credits"] == pytest.approx(credits)
    assert {tag: part["credits"] for tag, part in total["by_tag"].items()} == pytest.approx(dict(by_tag))
    assert sum(part["credits"] for part in total["by_workflow"].values()) == pytest.approx(credits)
    assert total["by_workflow"]["workflow_processed"]["runs"] == 2
    [today] = body["days"]
    assert today["credits"] == total["credits"]
    table = CliRunner().invoke(app, ["usage"], env={**env, "COLUMNS": "200"})
    assert table.exit_code == Exit.OK and "team-ap" in table.stdout and "total" in table.stdout
