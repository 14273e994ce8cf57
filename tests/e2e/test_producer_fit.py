"""Fitting the producer's code, end to end: callbacks to its own tasks, asyncio, tenants, typed results, replays.

The stack has a Redis database of its own, a worker with two tenants configured (each an emulator of its
own, accepting only that tenant's key) and a short callback takeover time, and the producer's own Celery
worker (`tests/support/callback_app.py`) that records each callback it receives.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest
import redis
from celery import Celery
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from typer.testing import CliRunner

from extendq.cli.main import Exit
from extendq.cli.main import app as cli_app
from extendq.tasks import callback_id, extraction, result_async, submit_async, typed_run
from extendq.tasks.producer import build_request, enqueue
from extendq.worker.callbacks import GROUP, Callback
from tests.conftest import clean_keys
from tests.e2e.conftest import API_KEY, PROFILE
from tests.e2e.test_pool import max_per_window
from tests.support.accounts import Accounts, accounts_env
from tests.support.asgi import served
from tests.support.callback_app import CALLS, QUEUE
from tests.support.emulator import EmulatorProcess
from tests.support.worker import WorkerProcess, claim_database, release_database

pytestmark = pytest.mark.e2e

KEY_A, KEY_B = "sk_test_TENANT_A_4c1e", "sk_test_TENANT_B_9d7f"
LIMIT_A, LIMIT_B = 4, 10
REFUSED = {"status": 400, "code": "INVALID_REQUEST", "message": "Workflow configuration is invalid"}
FIT_PROFILE: dict[str, Any] = {
    **PROFILE,
    "workflows": {
        **PROFILE["workflows"],
        "workflow_invoice": {"name": "Invoices", "duration_s": [0.3, 0.6], "outcomes": {"PROCESSED": 1}},
        "workflow_flaky": {"name": "Refuses while broken", "create_error": REFUSED},
    },
}


class Stack(Accounts):
    """The worker, the producer's callback worker, three accounts' emulators and a producer, on one database."""

    def submit(self, **request: Any) -> Any:
        request.setdefault("workflow", "workflow_processed")
        request.setdefault("file", {"text": "Invoice #: 9\nTotal: 99.00"})
        return enqueue(self.producer, build_request(**request))

    def callbacks(self) -> list[dict[str, Any]]:
        return [json.loads(raw) for raw in self.redis.lrange(CALLS, 0, -1)]

    def wait_for_callbacks(self, count: int, timeout_s: float = 20.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while len(calls := self.callbacks()) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(calls) >= count, calls
        time.sleep(0.5)  # a duplicate would come now
        return self.callbacks()

    def cli(self, *args: str) -> Any:
        return CliRunner().invoke(cli_app, list(args), env={**self.env, "COLUMNS": "200"})


@pytest.fixture(scope="module")
def stack(redis_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    db = claim_database(f"{redis_server_url}/0", owner=f"producer-fit-{time.time()}")
    logs = tmp_path_factory.mktemp("producer-fit")
    with ExitStack() as started:
        emulators = {
            "default": started.enter_context(EmulatorProcess(profile=FIT_PROFILE, api_keys=(API_KEY,))),
            "a": started.enter_context(
                EmulatorProcess(profile=_limited(LIMIT_A), api_keys=(KEY_A,))  # tenant a's account only
            ),
            "b": started.enter_context(EmulatorProcess(profile=_limited(LIMIT_B), api_keys=(KEY_B,))),
        }
        tenants = {
            "a": {"api_key": KEY_A, "base_url": emulators["a"].url, "rate_limit_requests_per_second": LIMIT_A},
            "b": {"api_key": KEY_B, "base_url": emulators["b"].url, "rate_limit_requests_per_second": LIMIT_B},
        }
        env = accounts_env(
            f"{redis_server_url}/{db}", emulators, tenants, EXTENDQ_SWEEP="off", EXTENDQ_CALLBACK_CLAIM_IDLE_S="1"
        )
        started.enter_context(WorkerProcess(env, log_path=logs / "worker.log", concurrency=4))
        callback_worker = WorkerProcess(
            env, log_path=logs / "callbacks.log", app="tests.support.callback_app", queues=QUEUE, concurrency=1
        )
        started.enter_context(callback_worker)
        yield Stack(env, emulators)
    release_database(f"{redis_server_url}/0", db)


def _limited(requests_per_second: int) -> dict[str, Any]:
    return {**FIT_PROFILE, "rate_limit": {"requests_per_second": requests_per_second}}


@pytest.fixture
def fit(stack: Stack) -> Stack:
    for name, emulator in stack.emulators.items():
        emulator.set_profile(FIT_PROFILE if name == "default" else _limited(LIMIT_A if name == "a" else LIMIT_B))
        emulator.reset()
    clean_keys(stack.redis, ("extendq", "celery-task-meta-", "fit:"))
    return stack


# ---- callbacks -------------------------------------------------------------------------------------------


def test_callbacks_reach_the_producers_own_tasks_once_per_job(fit: Stack) -> None:
    # Given jobs asking for callbacks: five that end PROCESSED, one whose create is refused
    callbacks = {"on_success": "fit.record_success", "on_failure": "fit.record_failure", "callback_queue": QUEUE}
    ok = [fit.submit(**callbacks) for _ in range(5)]
    refused = fit.submit(workflow="workflow_flaky", **callbacks)
    # When they finish
    calls = fit.wait_for_callbacks(6)
    # Then each job's task ran once, with the run or the error, under the callback's fixed task id
    assert Counter(call["job_id"] for call in calls) == Counter([job.id for job in ok] + [refused.id])
    for call in calls:
        if call["job_id"] == refused.id:
            assert call["task"] == "fit.record_failure" and call["payload"]["error"] == "rejected"
            assert call["task_id"] == callback_id(refused.id, "failure")
        else:
            assert call["task"] == "fit.record_success" and call["payload"]["status"] == "PROCESSED"
            assert call["task_id"] == callback_id(call["job_id"], "success")
    assert fit.redis.xlen("extendq:outbox") == 0


def test_a_failing_callback_is_retried_by_celery_and_the_run_is_not_made_again(fit: Stack) -> None:
    job = fit.submit(on_success="fit.flaky", callback_queue=QUEUE)
    calls = fit.wait_for_callbacks(2)
    assert [(call["job_id"], call["retries"]) for call in calls] == [(job.id, 0), (job.id, 1)]
    assert fit.emulators["default"].stats()["requests"]["POST /workflow_runs"] == {"200": 1}


def test_a_callback_a_dead_worker_took_is_sent_by_another(fit: Stack) -> None:
    # Given a callback taken from the outbox by a relay that died before sending it
    callback = Callback(
        id=callback_id("job-orphan", "success"), task="fit.record_success", queue=QUEUE, job_id="job-orphan",
        kind="success", args=["job-orphan", {"status": "PROCESSED", "id": "workflow_run_x"}],
    )  # fmt: skip
    try:
        fit.redis.xgroup_create("extendq:outbox", GROUP, id="0", mkstream=True)
    except redis.ResponseError:
        pass  # the worker's relay made it already
    fit.redis.xadd("extendq:outbox", {"callback": callback.encode()})
    assert fit.redis.xreadgroup(GROUP, "dead-relay", {"extendq:outbox": ">"}, count=10)
    # When the worker's relay finds it idle past EXTENDQ_CALLBACK_CLAIM_IDLE_S (1 s)
    [call] = fit.wait_for_callbacks(1, timeout_s=10)
    # Then it is sent, under its own id, and done
    assert (call["job_id"], call["task_id"]) == ("job-orphan", callback.id)
    assert fit.redis.xlen("extendq:outbox") == 0


# ---- asyncio -----------------------------------------------------------------------------------------------


def _async_app(producer: Celery, log: list[str]) -> Starlette:
    """An app whose endpoint submits jobs and awaits their runs; `log` gets, in the loop's own order, a line per
    health check answered and one as the endpoint's jobs are all submitted (`submitted`) and all in (`done`)."""

    async def health(_: Request) -> Response:
        log.append("health")
        return PlainTextResponse("ok")

    async def invoices(request: Request) -> Response:
        count = int(request.query_params["count"])
        texts = [f"ACME Corp\nInvoice #: A-{i}\nTotal: ${i}.00" for i in range(count)]
        ids = await asyncio.gather(
            *(submit_async(app=producer, workflow="workflow_invoice", file={"text": text}) for text in texts)
        )
        log.append("submitted")
        runs = await asyncio.gather(*(result_async(job_id, app=producer, timeout=60) for job_id in ids))
        log.append("done")
        return JSONResponse({"job_ids": ids, "statuses": [run["status"] for run in runs]})

    return Starlette(routes=[Route("/health", health), Route("/invoices", invoices, methods=["POST"])])


def test_an_async_endpoint_awaiting_100_jobs_keeps_answering_health_checks(fit: Stack) -> None:
    # Given an async app served by uvicorn, and its endpoint that submits 100 jobs and awaits all their runs
    log: list[str] = []
    with served(_async_app(fit.producer, log)) as url, httpx.Client(base_url=url, timeout=120) as client:
        answer: dict[str, Any] = {}
        batch = threading.Thread(target=lambda: answer.update(client.post("/invoices?count=100").json()))
        # When the health route is called, one call after the other, for as long as the endpoint has not answered
        batch.start()
        with httpx.Client(base_url=url, timeout=30) as prober:
            health = [prober.get("/health").text for _ in iter(batch.is_alive, False)]
        batch.join()
    # Then every run came back, and every health check was answered
    assert answer["statuses"] == ["PROCESSED"] * 100 and len(set(answer["job_ids"])) == 100
    assert health == ["ok"] * len(health) and log.count("health") == len(health)
    # ... while the loop was awaiting the runs: between the last submit and the last run, not held behind them
    assert log.count("submitted") == log.count("done") == 1
    awaiting = log[log.index("submitted") : log.index("done")]
    assert awaiting.count("health") >= 5, f"{awaiting.count('health')} of {len(health)} health checks answered"


# ---- tenants ----------------------------------------------------------------------------------------------


def test_each_tenant_runs_on_its_own_account_within_its_own_limit(fit: Stack) -> None:
    # Given two tenants (a at 4 requests/s, b at 10) and the default account, in one pool
    jobs = {
        name: [fit.submit(tenant=tenant, file={"text": f"{name} {i}"}) for i in range(10)]
        for name, tenant in (("a", "a"), ("b", "b"))
    }
    jobs["default"] = [fit.submit() for _ in range(2)]
    # When every job finishes
    for name, started in jobs.items():
        assert {job.get(timeout=60)["status"] for job in started} == {"PROCESSED"}, name
    # Then each account holds exactly its own tenant's runs, saw only its own key (no 401), no 429 ...
    for name, emulator in fit.emulators.items():
        owners = sorted(run["metadata"]["extendq:job_id"] for run in emulator.runs())
        assert owners == sorted(job.id for job in jobs[name]), name
        assert set(Counter(entry["status"] for entry in emulator.requests())) == {200}, name
    # ... and each stayed under its own limit, b well above a's
    busiest = {name: max_per_window([e["at"] for e in fit.emulators[name].requests()]) for name in ("a", "b")}
    assert busiest["a"] <= LIMIT_A and LIMIT_A < busiest["b"] <= LIMIT_B, busiest


def test_a_tenant_unknown_to_the_producer_is_refused_before_queueing(fit: Stack) -> None:
    from extendq.errors import InvalidJobRequest
    from extendq.tasks import submit

    with pytest.raises(InvalidJobRequest, match="unknown tenant 'c'"):
        submit(app=fit.producer, workflow="workflow_processed", file={"text": "x"}, tenant="c")
    # A by-name producer's message naming one reaches the worker, which fails it without any call
    job = fit.producer.send_task(
        "extendq.run_workflow", kwargs={"workflow": "workflow_processed", "file": {"text": "x"}, "tenant": "c"}
    )
    with pytest.raises(InvalidJobRequest, match="unknown tenant 'c'"):
        job.get(timeout=15)
    assert all(emulator.stats()["requests_total"] == 0 for emulator in fit.emulators.values())


# ---- typed results -------------------------------------------------------------------------------------------


class Invoice(BaseModel):
    invoice_number: str
    vendor: str
    total: float


def test_a_jobs_run_reads_as_the_sdk_model_and_its_extraction_as_the_producers(fit: Stack) -> None:
    job = fit.submit(workflow="workflow_invoice", file={"text": "Globex Ltd\nInvoice #: G-77\nTotal: $42.50"})
    run = typed_run(job.id, app=fit.producer, timeout=30)
    assert run.id and run.status == "PROCESSED" and run.metadata["extendq:job_id"] == job.id
    assert extraction(job, Invoice) == Invoice(invoice_number="G-77", vendor="Globex Ltd", total=42.5)


# ---- replays --------------------------------------------------------------------------------------------------


def test_a_failed_job_replayed_from_the_cli_ends_processed_once_the_fault_is_gone(fit: Stack) -> None:
    # Given a job that failed because Extend refused its workflow
    failed = fit.submit(workflow="workflow_flaky", metadata={"order": 7})
    with pytest.raises(Exception, match="Workflow configuration is invalid"):
        failed.get(timeout=15)
    listed = fit.cli("list", "--status", "failed", "--since", "1h", "--json")
    assert listed.exit_code == Exit.OK, listed.output
    assert [(row["job_id"], row["state"], row["run_status"], row["error"]) for row in json.loads(listed.stdout)] == [
        (failed.id, "FAILURE", None, "rejected")
    ]
    # When the workflow is fixed and the job is retried
    fixed = {**FIT_PROFILE["workflows"]["workflow_invoice"], "name": "Fixed"}
    fit.emulators["default"].set_profile(
        {**FIT_PROFILE, "workflows": {**FIT_PROFILE["workflows"], "workflow_flaky": fixed}}
    )
    retried = fit.cli("retry", failed.id, "--json")
    assert retried.exit_code == Exit.OK, retried.output
    [replay] = json.loads(retried.stdout)
    # Then the new job ends PROCESSED with the same request, linked to the first, which stays as it was
    run = fit.producer.AsyncResult(replay["job_id"]).get(timeout=30)
    assert replay["replay_of"] == failed.id and replay["job_id"] != failed.id
    assert run["status"] == "PROCESSED" and run["metadata"]["order"] == 7
    status = fit.cli("status", replay["job_id"], "--json")
    assert status.exit_code == Exit.OK, status.output
    assert json.loads(status.stdout)[0]["replay_of"] == failed.id
    assert "replay of" in fit.cli("status", replay["job_id"]).stdout
    assert fit.producer.AsyncResult(failed.id).state == "FAILURE"
    again = fit.cli("retry", replay["job_id"])
    assert again.exit_code == Exit.BAD_INPUT and "ended PROCESSED" in again.stderr


def test_retry_refuses_unknown_jobs_and_a_key_for_several(fit: Stack) -> None:
    unknown = fit.cli("retry", "no-such-job")
    assert unknown.exit_code == Exit.BAD_INPUT and "unknown" in unknown.stderr
    several = fit.cli("retry", "a", "b", "--job-key", "k")
    assert several.exit_code == Exit.BAD_INPUT and "--job-key names one job" in several.stderr
