"""A worker's start, with real processes: it refuses a configuration it cannot run with before it takes any message,
says in one line what it will do, and a job hit by an error nobody foresaw still ends with a record and a result.

These tests use a Redis database of their own: the session worker of the other end-to-end tests would take the
jobs queued here for a worker that refuses to start.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from celery import Celery
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from typer.testing import CliRunner

from extendq.cli.main import app as cli_app
from extendq.config.settings import Settings
from extendq.errors import Internal
from extendq.tasks.celery import create_app
from extendq.tasks.producer import build_request, enqueue
from extendq.worker.keys import QUEUE, Keys
from extendq.worker.models import JobState
from extendq.worker.store import open_store
from tests.conftest import clean_keys
from tests.e2e.conftest import API_KEY, PROFILE
from tests.support.asgi import free_port, served
from tests.support.emulator import EmulatorProcess
from tests.support.worker import WorkerProcess, empty_database

# Each test starts worker processes (some two): on a loaded machine that takes longer than the default 60 s.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

# A refused worker is given this long to exit: far above what it needs, for a loaded machine.
EXIT_DEADLINE_S = 120
KEYS = Keys()


@pytest.fixture
def env(worker_env: dict[str, str], module_redis_url: str) -> Iterator[dict[str, str]]:
    """The good workers' environment, on this module's Redis database (emptied before and after each test)."""
    client = redis.Redis.from_url(module_redis_url)
    empty_database(client)
    yield {**worker_env, "EXTENDQ_REDIS_URL": module_redis_url}
    empty_database(client)
    client.close()


@pytest.fixture
def producer(env: dict[str, str]) -> Celery:
    return create_app(Settings.from_env(env))


@pytest.fixture
def db(env: dict[str, str]) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(env["EXTENDQ_REDIS_URL"], decode_responses=True)
    yield client
    client.close()


def run_refused(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Start `celery -A extendq.tasks worker` with exactly `env` for extendq's settings; wait for it to exit."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("EXTENDQ_", "EXTEND_"))}
    args = WorkerProcess(env, log_path=tmp_path / "refused.log").args
    return subprocess.run(
        args, env={**inherited, **env}, capture_output=True, text=True, timeout=EXIT_DEADLINE_S, check=False
    )


def extendq_lines(output: str) -> list[str]:
    """The lines extendq printed (Celery may add its own warnings, e.g. about running as root)."""
    return [line for line in output.splitlines() if line.startswith("extendq")]


def test_a_worker_without_an_api_key_takes_no_job_and_a_good_worker_then_runs_it(
    env: dict[str, str], producer: Celery, db: redis.Redis, tmp_path: Path
) -> None:
    # Given a job queued while no worker runs
    job = enqueue(producer, build_request(workflow="workflow_processed", file={"text": "Total: 1.00"}))
    assert db.llen(QUEUE) == 1
    # When a worker starts with no API key, against Extend's own base URL
    keyless = {k: v for k, v in env.items() if k not in ("EXTEND_API_KEY", "EXTENDQ_BASE_URL")}
    refused = run_refused(keyless, tmp_path)
    # Then it exits non-zero with one line naming EXTEND_API_KEY, and no traceback or banner
    output = refused.stdout + refused.stderr
    assert refused.returncode == 2, output
    lines = extendq_lines(output)
    assert len(lines) == 1 and lines[0].startswith("extendq worker: EXTEND_API_KEY is not set"), output
    assert "Traceback" not in output and "ready." not in output and "celery@" not in output
    # And the job is still queued, with no record and no result
    assert db.llen(QUEUE) == 1
    assert not db.exists(KEYS.job(job.id))
    assert job.state == "PENDING"
    # When a worker with a key starts, it runs the job
    with WorkerProcess(env, log_path=tmp_path / "good.log", concurrency=1):
        run = job.get(timeout=90)
    assert run["status"] == "PROCESSED"
    record = open_store(Settings.from_env(env)).load(job.id)
    assert record is not None and record.finished and record.state is JobState.SUCCESS


def test_a_worker_without_a_key_runs_jobs_on_an_emulator(env: dict[str, str], producer: Celery, tmp_path: Path) -> None:
    # Given an emulator that takes any key, and a worker with no key pointed at it
    with EmulatorProcess(profile=PROFILE) as open_emulator:
        worker = WorkerProcess({**env, "EXTENDQ_BASE_URL": open_emulator.url}, log_path=tmp_path / "worker.log")
        for variable in ("EXTEND_API_KEY", "EXTENDQ_API_KEY"):
            worker.env.pop(variable, None)
        with worker:
            # When a job is queued
            run = enqueue(producer, build_request(workflow="workflow_processed", file={"text": "Total: 1.00"})).get(
                timeout=90
            )
        # Then the worker ran it, and its start line said it has no key of its own
        assert run["status"] == "PROCESSED"
        assert "no key (the emulator's stand-in)" in worker.log_text()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("EXTENDQ_POLL_BACKOFF", "0.5"),
        ("EXTENDQ_SECRETS_KEY", "not-a-fernet-key"),
        ("EXTENDQ_REDIS_TLS_VERIFY", "maybe"),
        ("EXTENDQ_REDIS_TLS_CERT_FILE", "/etc/hostname"),
    ],
)
def test_a_bad_setting_stops_the_worker_with_one_line_naming_it(
    env: dict[str, str], producer: Celery, db: redis.Redis, tmp_path: Path, variable: str, value: str
) -> None:
    # Given a job queued
    enqueue(producer, build_request(workflow="workflow_processed", file={"text": "Total: 1.00"}))
    # When a worker starts with a bad value of one setting
    refused = run_refused({**env, variable: value}, tmp_path)
    # Then it exits with status 2 and one line naming the variable, and the job stays queued
    output = refused.stdout + refused.stderr
    assert refused.returncode == 2, output
    lines = extendq_lines(output)
    assert len(lines) == 1 and variable in lines[0], output
    assert "Traceback" not in output and "ready." not in output
    assert db.llen(QUEUE) == 1


def test_a_worker_whose_sentinels_do_not_answer_gives_up_naming_them(env: dict[str, str], tmp_path: Path) -> None:
    # Given a Redis Sentinel URL with a password, where no Sentinel listens, and a wait of 1 s
    ports = (free_port(), free_port())
    url = f"redis+sentinel://:pw-never-shown@127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}/mymaster/0"
    # When a worker starts on it
    refused = run_refused({**env, "EXTENDQ_REDIS_URL": url, "EXTENDQ_REDIS_WAIT_S": "1"}, tmp_path)
    # Then it exits with status 3 and one line naming the variable, the service and the Sentinels, never the password
    output = refused.stdout + refused.stderr
    assert refused.returncode == 3, output
    lines = extendq_lines(output)
    expected = f"no Redis answered at Sentinel 'mymaster' at 127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}/0 within 1 s"
    assert lines == [f"extendq worker: EXTENDQ_REDIS_URL: {expected}"], output
    assert "pw-never-shown" not in output and "Traceback" not in output


def test_a_worker_whose_redis_does_not_answer_gives_up_after_its_wait(env: dict[str, str], tmp_path: Path) -> None:
    # Given a Redis URL (with a password) where nothing listens, and a wait of 1 s
    url = f"redis://:pw-never-shown@127.0.0.1:{free_port()}/4"
    # When a worker starts
    refused = run_refused({**env, "EXTENDQ_REDIS_URL": url, "EXTENDQ_REDIS_WAIT_S": "1"}, tmp_path)
    # Then it exits with status 3 and one line naming the variable and the address, never the password
    output = refused.stdout + refused.stderr
    assert refused.returncode == 3, output
    lines = extendq_lines(output)
    assert len(lines) == 1 and lines[0].startswith("extendq worker: EXTENDQ_REDIS_URL: no Redis answered at 127.0.0.1:")
    assert "pw-never-shown" not in output and "Traceback" not in output


def test_the_start_line_says_what_the_worker_will_do(
    env: dict[str, str], emulator: EmulatorProcess, tmp_path: Path
) -> None:
    # Given a worker on the emulator, under the PAYG plan's limits, consuming both queues
    settings = {**env, "EXTENDQ_RATE_LIMIT_PLAN": "payg", "EXTENDQ_BASE_URL": f"{emulator.url}/some/path"}
    with WorkerProcess(settings, log_path=tmp_path / "worker.log", concurrency=1) as worker:
        log = worker.log_text()
    # Then one line, logged before the worker is ready, says what it will do
    lines = [line for line in log.splitlines() if "extendq worker starting:" in line]
    assert len(lines) == 1, log
    line = lines[0]
    assert log.index(line) < log.index("ready.")
    host = emulator.url.removeprefix("http://")
    database = env["EXTENDQ_REDIS_URL"].rsplit("/", 1)[1]
    assert f"Extend http://{host}, API version 2026-02-09, key set;" in line
    assert (
        "rate limit plan payg: 10 requests/s, 80 runs/min; webhooks off; sweeps auto (from 20 jobs in flight);" in line
    )
    assert re.search(rf"; Redis 127\.0\.0\.1:\d+/{database}; queues extendq\.checks, extendq$", line), line
    # And never the path of the base URL or the key
    assert "/some/path" not in line and API_KEY not in log


# ---- an error nobody foresaw ---------------------------------------------------------------------------------


def unreadable_run_answers(upstream: str) -> Starlette:
    """A gateway in front of the emulator that answers every read of a run with an HTML page (status 200)."""
    clients: list[httpx.AsyncClient] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with httpx.AsyncClient(base_url=upstream) as client:
            clients.append(client)
            yield

    async def forward(request: Request) -> Response:
        if request.method == "GET" and re.fullmatch(r"/workflow_runs/[^/]+", request.url.path):
            return HTMLResponse("<html><body>Back soon</body></html>")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        body = await request.body()
        answer = await clients[0].request(
            request.method, request.url.path, params=request.query_params, headers=headers, content=body
        )
        dropped = ("content-length", "content-encoding", "transfer-encoding", "connection")
        kept = {k: v for k, v in answer.headers.items() if k.lower() not in dropped}
        return Response(answer.content, status_code=answer.status_code, headers=kept)

    methods = ["GET", "POST", "PUT", "DELETE"]
    return Starlette(routes=[Route("/{path:path}", forward, methods=methods)], lifespan=lifespan)


def cli_json(env: dict[str, str], *args: str) -> Any:
    result = CliRunner().invoke(cli_app, [*args, "--json"], env={**env, "COLUMNS": "200"})
    return result.exit_code, json.loads(result.stdout)


def test_a_job_hit_by_an_unforeseen_error_ends_failure_with_a_record_and_a_result(
    env: dict[str, str], emulator: EmulatorProcess, producer: Celery, db: redis.Redis, tmp_path: Path
) -> None:
    emulator.set_profile(PROFILE)
    emulator.reset()
    with served(unreadable_run_answers(emulator.url)) as gateway:
        # Given a worker whose Extend answers a run's read with a page the worker cannot read
        with WorkerProcess({**env, "EXTENDQ_BASE_URL": gateway}, log_path=tmp_path / "worker.log", concurrency=1):
            # When a job is submitted and its run checked
            job = enqueue(producer, build_request(workflow="workflow_slow", file={"text": "Total: 1.00"}))
            # Then the job fails with Internal, naming the error's type, with its run
            with pytest.raises(Internal) as raised:
                job.get(timeout=90)
    error = raised.value
    assert error.error_type == "JSONDecodeError" and error.run_id is not None
    assert str(error).startswith("unforeseen error in a step: JSONDecodeError: ")
    assert API_KEY not in str(error)
    assert job.state == "FAILURE"
    # And the job's record is finished, as a FAILURE of kind "internal"
    record = open_store(Settings.from_env(env)).load(job.id)
    assert record is not None and record.finished and record.finished_at is not None
    assert record.state is JobState.FAILURE and record.error == "internal"
    # And the events stream ends the job once, with the same
    events = [fields for _, fields in db.xrange(KEYS.events) if fields["job_id"] == job.id]
    assert [(e["state"], e["error"]) for e in events if e["state"] == "FAILURE"] == [("FAILURE", "internal")]
    assert events[-1]["state"] == "FAILURE"
    # And `extendq status`, `result` and `list` show the failure
    code, status = cli_json(env, "status", job.id)
    assert status[0]["state"] == "FAILURE" and status[0]["error"] == "internal", status
    code, result = cli_json(env, "result", job.id, "--timeout", "5")
    assert code != 0 and result["error"] == "internal" and "JSONDecodeError" in result["message"]
    code, listed = cli_json(env, "list", "--status", "FAILURE")
    assert [(row["job_id"], row["error"]) for row in listed] == [(job.id, "internal")]
    clean_keys(db)
