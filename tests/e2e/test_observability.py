"""Seeing it work: a real worker's metrics agree with what Extend saw, its JSON log has one line per job state
change and no secret, and the SSE example streams a job to its end. A stack on a Redis database of its own.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from celery import Celery
from prometheus_client.parser import text_string_to_metric_families

from examples.fastapi_sse import create_app as create_sse_app
from extendq.config.settings import Settings
from extendq.tasks.celery import create_app as create_celery
from extendq.tasks.producer import build_request, enqueue, job_id_for
from tests.conftest import clean_keys
from tests.e2e.conftest import API_KEY, PROFILE, SECRETS_KEY
from tests.e2e.test_pipeline import wait_for
from tests.support.asgi import free_port, served
from tests.support.emulator import EmulatorProcess
from tests.support.worker import WorkerProcess, claim_database, release_database

pytestmark = pytest.mark.e2e
RUN_SECRET = "SENTINEL-RUN-SECRET-0b5e77"
TAG = "team-observability"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class Stack:
    """A worker with its metrics endpoint and JSON logs, and a producer, on a Redis database of their own."""

    def __init__(
        self,
        settings: Settings,
        worker: WorkerProcess,
        emulator: EmulatorProcess,
        metrics_url: str,
        env: dict[str, str],
    ) -> None:
        self.settings = settings
        self.settings_env = env
        self.worker = worker
        self.emulator = emulator
        self.metrics_url = metrics_url
        self.producer: Celery = create_celery(settings)
        self.redis = redis.Redis.from_url(settings.redis_url, decode_responses=True)

    def submit(self, workflow: str, **request: Any) -> Any:
        request.setdefault("file", {"text": "Invoice #: 77\nTotal: 12.00"})
        return enqueue(self.producer, build_request(workflow=workflow, secrets_key=SECRETS_KEY, **request))

    def scrape(self) -> Samples:
        """Every sample of the worker's endpoint, by name and labels."""
        text = httpx.get(self.metrics_url, timeout=5).raise_for_status().text
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }


@pytest.fixture(scope="module")
def stack(
    redis_server_url: str, emulator: EmulatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    db = claim_database(f"{redis_server_url}/0", owner=f"observability-{time.time()}")
    port = free_port()
    env = {
        "EXTENDQ_REDIS_URL": f"{redis_server_url}/{db}",
        "EXTENDQ_BASE_URL": emulator.url,
        "EXTEND_API_KEY": API_KEY,
        "EXTENDQ_SECRETS_KEY": SECRETS_KEY,
        "EXTENDQ_METRICS_PORT": str(port),
        "EXTENDQ_METRICS_HOST": "127.0.0.1",
        "EXTENDQ_LOG_FORMAT": "json",
    }
    home = tmp_path_factory.mktemp("observability")
    env["PROMETHEUS_MULTIPROC_DIR"] = str(home / "samples")
    with WorkerProcess(env, log_path=home / "worker.log", concurrency=2) as worker:
        url = f"http://127.0.0.1:{port}/metrics"
        wait_for(lambda: _answers(url), timeout_s=10)
        yield Stack(Settings.from_env(env), worker, emulator, url, env)
    release_database(f"{redis_server_url}/0", db)
    # The worker removed its sample directory when it stopped
    assert list((home / "samples").iterdir()) == []


@pytest.fixture
def observed(stack: Stack) -> Stack:
    stack.emulator.set_profile(PROFILE)
    stack.emulator.reset()
    clean_keys(stack.redis)
    return stack


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def delta(after: Samples, before: Samples, name: str, **labels: str) -> float:
    """How much the samples named `name` whose labels include `labels` grew (summed)."""

    def total(samples: Samples) -> float:
        return sum(v for (n, ls), v in samples.items() if n == name and labels.items() <= dict(ls).items())

    return total(after) - total(before)


def ended(after: Samples, before: Samples) -> float:
    """Jobs finished or failed between two scrapes."""
    return delta(after, before, "extendq_jobs_finished_total") + delta(after, before, "extendq_jobs_failed_total")


def by_label(after: Samples, before: Samples, name: str, *keys: str) -> dict[tuple[str, ...], float]:
    """The growth of `name` grouped by the values of `keys`, without the groups that did not grow."""
    grown: Counter[tuple[str, ...]] = Counter()
    for (n, ls), value in after.items():
        if n == name:
            grown[tuple(dict(ls)[key] for key in keys)] += value - before.get((n, ls), 0.0)
    return {group: value for group, value in grown.items() if value}


def test_metrics_match_what_extend_saw(observed: Stack) -> None:
    # Given a mix of outcomes: processed (with a usage tag), failed, in review, slow, and an unknown workflow
    before = observed.scrape()
    workflows = ["workflow_processed"] * 3 + ["workflow_failed"] * 2 + ["workflow_review", "workflow_slow"]
    jobs = [observed.submit(w, metadata={"extend:usage_tags": [TAG]}) for w in workflows]
    jobs.append(observed.submit("workflow_missing"))
    # While they run, the pool's gauges show jobs in flight
    during = wait_for(lambda: (s := observed.scrape())[("extendq_jobs_in_flight", ())] > 0 and s)
    assert during[("extendq_oldest_job_in_flight_seconds", ())] >= 0 and during[("extendq_redis_up", ())] == 1
    results = [job.get(timeout=20, propagate=False) for job in jobs]
    # (a job is counted just after its result is out)
    after = wait_for(lambda: (s := observed.scrape()) and ended(s, before) == len(jobs) and s, timeout_s=5)
    runs = [result for result in results if isinstance(result, dict)]
    assert len(runs) == len(workflows) and isinstance(results[-1], Exception)

    # Then Extend requests by endpoint and status are exactly what the emulator received
    requests = by_label(after, before, "extendq_extend_requests_total", "endpoint", "status")
    seen = observed.emulator.stats()["requests"]
    assert requests == {(route, status): n for route, counts in seen.items() for status, n in counts.items()}
    # And finished jobs by status are the results; the unknown workflow failed as rejected
    finished = by_label(after, before, "extendq_jobs_finished_total", "status")
    assert finished == {(status,): n for status, n in Counter(run["status"] for run in runs).items()}
    assert by_label(after, before, "extendq_jobs_failed_total", "workflow", "kind") == {
        ("workflow_missing", "rejected"): 1
    }
    assert delta(after, before, "extendq_jobs_enqueued_total") == len(jobs)
    assert delta(after, before, "extendq_jobs_submitted_total") == len(runs)
    # And every check was one GET of a run; every job's duration and checks were observed once
    gets = sum(seen.get("GET /workflow_runs/{id}", {}).values())
    assert delta(after, before, "extendq_job_checks_sum") == gets
    assert delta(after, before, "extendq_job_checks_count") == len(jobs)
    assert delta(after, before, "extendq_job_duration_seconds_count") == len(jobs)
    assert delta(after, before, "extendq_time_to_result_seconds_count") == len(runs)
    # And credits add up per tag; nothing is left in flight
    credits = sum(float((run.get("usage") or {}).get("credits") or 0) for run in runs)
    assert credits > 0
    assert delta(after, before, "extendq_credits_used_by_tag_total", tag=TAG) == pytest.approx(credits)
    assert delta(after, before, "extendq_credits_used_total") == pytest.approx(credits)
    assert after[("extendq_jobs_in_flight", ())] == 0 and after[("extendq_oldest_job_in_flight_seconds", ())] == 0
    assert (("queue", "extendq"),) in {labels for name, labels in after if name == "extendq_queue_length"}
    # And the counts came from the pool's processes, through their sample files (one directory per worker)
    (samples,) = Path(observed.settings_env["PROMETHEUS_MULTIPROC_DIR"]).iterdir()
    assert len(list(samples.glob("counter_*.db"))) >= 2


def test_json_log_has_one_line_per_transition_and_no_secret(observed: Stack) -> None:
    # Given jobs with a per-run secret, on a worker whose API key is a sentinel
    jobs = [
        observed.submit(workflow, secrets={"erp_token": RUN_SECRET})
        for workflow in ("workflow_processed", "workflow_failed", "workflow_slow", "workflow_missing")
    ]
    for job in jobs:
        job.get(timeout=20, propagate=False)
    # When the worker's log is read, once it has every job's last line (written just after the result)
    ended = {(job.id, event) for job in jobs for event in ("finished", "failed")}
    lines = wait_for(lambda: (ls := json_lines(observed.worker)) and len(ended & terminal(ls)) == len(jobs) and ls)
    text = observed.worker.log_text()
    # Then each job has one line per state change, with its fields as keys
    for job in jobs:
        mine = [line for line in lines if line.get("job_id") == job.id and "event" in line]
        events = [line["event"] for line in mine]
        running = [f["status"] for _, f in observed.redis.xrange("extendq:events") if f["job_id"] == job.id]
        if job.state == "FAILURE":
            assert events == ["enqueued", "failed"] and mine[-1]["error"] == "rejected"
            continue
        assert events == ["enqueued", "submitted"] + ["progress"] * (len(running) - 2) + ["finished"]
        assert [line["status"] for line in mine[1:]] == running
        run = job.result
        for line in mine:
            assert line["workflow_id"] == run["workflow"]["id"] and line["elapsed_s"] >= 0
            assert line["level"] == "INFO" and line["logger"] == "extendq.jobs"
        assert {line["run_id"] for line in mine[1:]} == {run["id"]}
        assert [line["state"] for line in mine] == ["QUEUED"] + ["RUNNING"] * (len(mine) - 2) + ["SUCCESS"]
    # And neither the API key, the run secret nor the secrets key appears anywhere in it
    for secret in (API_KEY, RUN_SECRET, SECRETS_KEY):
        assert secret not in text


def test_sse_example_streams_a_job_to_its_terminal_event(observed: Stack) -> None:
    settings = observed.settings
    app = create_sse_app(settings.redis_url, key_prefix=settings.key_prefix, block_ms=500)
    with served(app) as base, ThreadPoolExecutor(1) as pool:
        # Given a client following a job (known by its key) from before it is enqueued
        key = f"sse-{time.time()}"
        following = threading.Event()
        events_read = pool.submit(read_sse, f"{base}/jobs/{job_id_for(key)}/events", waiting=following)
        assert following.wait(10)
        # When the job runs, two to three seconds
        job = observed.submit("workflow_slow", job_key=key)
        run = job.get(timeout=10)
        # Then the client got the job's progress, and the stream ended with the terminal event
        events = events_read.result(timeout=10)
        assert [kind for kind, _ in events[:-1]] and {kind for kind, _ in events[:-1]} == {"running"}
        kind, data = events[-1]
        assert kind == "success" and data["job_id"] == job.id and data["run_id"] == run["id"]
        assert data["status"] == "PROCESSED" and float(data["to_result_s"]) >= 0
        # And a client that comes after the end gets the terminal event at once (rebuilt from the result, it cannot
        # tell how long the result took)
        late = read_sse(f"{base}/jobs/{job.id}/events")
        assert late == [("success", {name: value for name, value in data.items() if name != "to_result_s"})]


def json_lines(worker: WorkerProcess) -> list[dict[str, Any]]:
    """The worker's log records (JSON lines; Celery's banner is not one)."""
    return [json.loads(line) for line in worker.log_text().splitlines() if line.startswith("{")]


def terminal(lines: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(line["job_id"], line["event"]) for line in lines if line.get("event") in ("finished", "failed")}


def read_sse(
    url: str, *, waiting: threading.Event | None = None, timeout_s: float = 15.0
) -> list[tuple[str, dict[str, Any]]]:
    """The events of one server-sent-events stream, read until the server ends it; `waiting` is set once the
    server says it waits for the job's next event."""
    events: list[tuple[str, dict[str, Any]]] = []
    kind, data = "message", ""
    with httpx.stream("GET", url, timeout=timeout_s) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line == ": waiting" and waiting is not None:
                waiting.set()
            elif line.startswith("event: "):
                kind = line[len("event: ") :]
            elif line.startswith("data: "):
                data = line[len("data: ") :]
            elif line == "" and data:
                events.append((kind, json.loads(data)))
                kind, data = "message", ""
    return events
