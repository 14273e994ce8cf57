"""The pipeline under strain: storms, killed workers, many runs in flight, producers without extendq, secrets."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import redis
from celery import Celery

from extendq.worker.extend import api_time
from tests.e2e.conftest import API_KEY, PROFILE
from tests.e2e.test_pipeline import submit, wait_for
from tests.support.emulator import EmulatorProcess
from tests.support.worker import WorkerProcess

# Each result is awaited for up to 90 s on a loaded machine, through faults and retries with backoff.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def runs_per_job(emulator: EmulatorProcess) -> Counter[str]:
    return Counter(run["metadata"].get("extendq:job_id") for run in emulator.runs())


def test_error_storm_ends_in_success_with_one_run_per_job(
    producer: Celery, worker: WorkerProcess, emulator: EmulatorProcess, clean: redis.Redis
) -> None:
    # Given an Extend that fails 30 % of requests with 5xx/408 and rate-limits at 20 requests per second
    emulator.set_profile(
        {
            **PROFILE,
            "faults": {"error_rate": 0.3, "latency_s": [0.0, 0.05], "drop_rate": 0.0},
            "rate_limit": {"requests_per_second": 20},
        }
    )
    # When 30 jobs go through it
    jobs = [submit(producer, workflow="workflow_processed") for _ in range(30)]
    results = [job.get(timeout=90) for job in jobs]
    # Then every job ends PROCESSED, and a create that failed was never silently duplicated
    assert {run["status"] for run in results} == {"PROCESSED"}
    statuses = Counter(str(r["status"]) for r in emulator.requests())
    assert statuses["429"] > 0 and sum(statuses[s] for s in ("500", "502", "503", "408")) > 0
    per_job = runs_per_job(emulator)
    assert set(per_job) == {job.id for job in jobs}
    assert set(per_job.values()) == {1}


def test_retry_after_is_waited_out(
    producer: Celery, worker: WorkerProcess, emulator: EmulatorProcess, clean: redis.Redis
) -> None:
    # Given an Extend allowing one request per second, and one job in flight (so every request is its own)
    emulator.set_profile({**PROFILE, "rate_limit": {"requests_per_second": 1}})
    job = submit(producer, workflow="workflow_slow")
    assert job.get(timeout=60)["status"] == "PROCESSED"
    log = sorted(emulator.requests(), key=lambda r: r["at"])
    # Then no request followed a 429 before its Retry-After had run out
    limited = [(entry, after) for entry, after in zip(log, log[1:], strict=False) if entry["status"] == 429]
    for entry, after in limited:
        assert after["at"] - entry["at"] >= entry["retryAfter"] - 0.01, (entry, after)


def test_killed_worker_process_loses_nothing_and_duplicates_nothing(
    producer: Celery, emulator: EmulatorProcess, clean: redis.Redis, new_worker: Callable[..., WorkerProcess]
) -> None:
    # Given a worker of its own (the session worker is not involved) and 60 jobs of 2-3 s runs
    process = new_worker(concurrency=2)
    jobs = [submit(producer, workflow="workflow_slow", job_key=f"kill-{i}") for i in range(60)]
    # When pool processes are SIGKILLed in the middle of the batch
    killed = []
    for _ in range(3):
        time.sleep(0.7)
        killed.append(process.kill_child())
    assert all(killed)
    # Then every job still finishes, with exactly one Extend run per job key
    results = [job.get(timeout=120) for job in jobs]
    assert {run["status"] for run in results} == {"PROCESSED"}
    keys = Counter(run["metadata"].get("extendq:job_key") for run in emulator.runs())
    assert keys == Counter({f"kill-{i}": 1 for i in range(60)})


def test_many_runs_in_flight_on_two_slots(
    producer: Celery, worker: WorkerProcess, emulator: EmulatorProcess, clean: redis.Redis
) -> None:
    # Given 400 jobs whose runs take 2-3 s each, and one worker with two slots
    jobs = [submit(producer, workflow="workflow_slow") for _ in range(400)]
    # When they all finish
    results = [job.get(timeout=300) for job in jobs]
    # Then they ran side by side, far more of them at once than the two slots (a blocking design runs two at a
    # time: 400 x 2.5 s / 2 = 500 s; bench/pipeline.py measures the time)
    assert {run["status"] for run in results} == {"PROCESSED"}
    runs = emulator.runs()
    assert len(runs) == 400
    assert most_at_once(runs) > 20


def test_producer_without_extendq_enqueues_by_name(
    worker: WorkerProcess, emulator: EmulatorProcess, clean: redis.Redis, redis_url: str
) -> None:
    # Given a producer process that imports celery and nothing from extendq
    script = textwrap.dedent(
        f"""
        import json, sys
        from celery import Celery
        app = Celery(broker={redis_url!r}, backend={redis_url!r})
        app.conf.task_serializer = "json"
        result = app.send_task("extendq.run_workflow", queue="extendq", kwargs={{
            "workflow": "workflow_processed",
            "file": {{"text": "Invoice #: 5\\nTotal: 1.00", "name": "five.txt"}},
            "metadata": {{"source": "by-name"}},
        }})
        run = result.get(timeout=30)
        assert not any(m.startswith(("worker", "tasks", "config", "emulator")) for m in sys.modules), "imported extendq"
        print(json.dumps({{"job_id": result.id, "status": run["status"], "source": run["metadata"]["source"]}}))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd="/")
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    # Then the job ran and its result came back through the result backend
    assert answer["status"] == "PROCESSED" and answer["source"] == "by-name"


def test_no_secret_reaches_redis_or_the_log(
    producer: Celery, worker: WorkerProcess, emulator: EmulatorProcess, clean: redis.Redis, redis_url: str
) -> None:
    # Given a known API key (the worker's) and a known per-run secret, on jobs that end and one still in flight
    run_secret = "SENTINEL-RUN-SECRET-4b1d"
    jobs = [
        submit(producer, workflow=workflow, secrets={"erp_token": run_secret})
        for workflow in ("workflow_processed", "workflow_failed", "workflow_long")
    ]
    for job in jobs[:2]:
        job.get(timeout=20)
    wait_for(lambda: jobs[2].state == "RUNNING")
    # Then neither string appears in any Redis key or value, nor in the worker's log
    dump = dump_redis(redis.Redis.from_url(redis_url))
    assert "extendq:job:" in dump
    for needle in (API_KEY, run_secret):
        assert needle not in dump
        assert needle not in worker.log_text()


def dump_redis(client: redis.Redis) -> str:
    """Every key and value in the database, as text."""
    readers: dict[bytes, Callable[[bytes], Any]] = {
        b"string": client.get,
        b"hash": client.hgetall,
        b"list": lambda key: client.lrange(key, 0, -1),
        b"set": client.smembers,
        b"zset": lambda key: client.zrange(key, 0, -1, withscores=True),
        b"stream": client.xrange,
    }
    parts = []
    for key in client.scan_iter(count=1000):
        reader = readers.get(client.type(key))
        parts.append(f"{key!r} {reader(key) if reader else None!r}")
    return "\n".join(parts)


def most_at_once(runs: list[dict[str, Any]]) -> int:
    """The most runs that were going on Extend at one moment (from their createdAt and their last update)."""
    edges = sorted(edge for run in runs for edge in ((api_time(run["createdAt"]), 1), (api_time(run["updatedAt"]), -1)))
    going = most = 0
    for _, step in edges:
        going += step
        most = max(most, going)
    return most
