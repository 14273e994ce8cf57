"""`extendq info` on a real Redis with no worker process: a worker entry, jobs and messages put in place, then the
command's JSON (its keys, its counts) and its human lines (80 columns at most)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import redis
from celery import Celery
from typer.testing import CliRunner

from extendq.cli.main import Exit, app
from extendq.config.settings import Settings
from extendq.tasks.base import limiter_for
from extendq.tasks.producer import build_request
from extendq.worker.keys import queue_lists
from extendq.worker.store import open_store
from tests.support.pool_state import record_pool

KEYS = ["at", "workers", "queues", "misrouted", "jobs", "due", "rate_limit", "sweeps", "webhooks"]


@pytest.fixture
def env(module_redis_url: str, module_redis: redis.Redis) -> Iterator[dict[str, str]]:
    """A pool on the module's database with a PAYG rate limit; Celery's default queue emptied around the test."""
    module_redis.delete(*queue_lists("celery"))
    yield {
        "EXTENDQ_REDIS_URL": module_redis_url,
        "EXTEND_API_KEY": "sk_test",
        "EXTENDQ_BASE_URL": "http://127.0.0.1:9",
        "EXTENDQ_RATE_LIMIT_PLAN": "payg",
    }
    module_redis.delete(*queue_lists("celery"))


@pytest.fixture
def pool(env: dict[str, str], module_redis_url: str) -> dict[str, str]:
    """A worker entry, two jobs in flight (one overdue), a 429 pause, and a task sent by name to `celery`."""
    record_pool(Settings.from_env(env), worker_name="celery@box")
    backend = Celery("backend", broker=module_redis_url, set_as_current=False)
    backend.send_task("extendq.run_workflow", kwargs={"workflow": "workflow_invoice", "file": {"text": "x"}})
    backend.send_task("billing.tasks.invoice_read", args=["job", {}])
    backend.close()
    return env


def test_info_json_reports_the_pool(pool: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["info", "--json"], env=pool)
    assert result.exit_code == Exit.OK, result.output
    report = json.loads(result.stdout)
    assert list(report) == KEYS
    # The worker as it recorded itself
    (worker,) = report["workers"]
    assert (worker["name"], worker["pid"], worker["concurrency"]) == ("celery@box", 4242, 8)
    assert worker["queues"] == ["extendq", "extendq.checks"]
    # Queue depths and who reads them; the message sent without a queue is reported with its task
    assert report["queues"] == {
        "extendq": {"messages": 0, "consumers": 1},
        "extendq.checks": {"messages": 0, "consumers": 1},
        "celery": {"messages": 2, "consumers": 0},
    }
    assert report["misrouted"] == [
        {
            "queue": "celery",
            "messages": 1,
            "complete": True,
            "length": 2,
            "sampled": 2,
            "tasks": {"extendq.run_workflow": 1},
        }
    ]
    # Jobs in flight by state, the oldest, the due checks (one overdue by about a minute)
    jobs, due = report["jobs"], report["due"]
    assert (jobs["in_flight"], jobs["states_read"], jobs["by_state"]) == (2, 2, {"RUNNING": 1, "SUBMITTING": 1})
    assert jobs["oldest"]["job_id"] == "job-old" and 90 < jobs["oldest"]["age_s"] < 600
    assert (due["entries"], due["due_now"]) == (2, 1) and 50 < due["dispatch_lag_s"] < 600
    # The PAYG budget and the 429 pause
    limit = report["rate_limit"]["default"]
    assert {name: bucket["limit"] for name, bucket in limit["buckets"].items()} == {
        "requests": "10/s",
        "runs": "80/min",
    }
    assert limit["pauses_last_hour"] == 1
    assert report["sweeps"] == {"mode": "auto", "min_in_flight": 20, "active": False}
    assert report["webhooks"] == {"enabled": False}


def test_info_lines_fit_80_columns_and_name_the_wrong_queue_and_the_fix(pool: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["info"], env=pool)
    assert result.exit_code == Exit.OK, result.output
    lines = result.stdout.splitlines()
    assert lines and all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    text = result.stdout
    assert "celery@box pid 4242, concurrency 8" in text
    assert "WRONG QUEUE      celery: 1 extendq task message(s) (extendq.run_workflow x1)" in text
    assert 'queue="extendq"' in text and "extendq.submit(...)" in text
    assert "Jobs in flight   2: RUNNING 1, SUBMITTING 1" in text
    assert "Oldest in flight job-old" in text
    assert "requests 10/s" in text and "429 pauses in the last hour: 1" in text


def test_info_says_when_redis_is_unreachable() -> None:
    result = CliRunner().invoke(app, ["info"], env={"EXTENDQ_REDIS_URL": "redis://127.0.0.1:1/0"})
    assert result.exit_code == Exit.REDIS_UNREACHABLE
    assert result.stderr.startswith("Error: Redis unreachable at redis://127.0.0.1:1/0")


def test_info_for_one_tenant_shows_its_budget_pauses_and_jobs(env: dict[str, str], module_redis: redis.Redis) -> None:
    # Given two tenants (acme at 4 requests/s, globex on the pool's plan), a job of acme's in flight and a 429
    # pause of acme's
    tenants = {"acme": {"api_key": "sk_a", "rate_limit_requests_per_second": 4}, "globex": {"api_key": "sk_g"}}
    env = {**env, "EXTENDQ_TENANTS": json.dumps(tenants)}
    settings = Settings.from_env(env)
    store = open_store(settings)
    store.create("job-acme", build_request(workflow="w", file={"text": "x"}, tenant="acme"), now=time.time(),
                 lease_s=60, secrets=None)  # fmt: skip
    limiter_for(settings, store, scope="tenant:acme").pause(0.01)
    # When the pool is shown, and then acme's view of it
    pool = json.loads(CliRunner().invoke(app, ["info", "--json"], env=env).stdout)
    result = CliRunner().invoke(app, ["info", "--tenant", "acme", "--json"], env=env)
    # Then the pool shows every account's limit; acme's view its own limit, pause and job
    assert list(pool["rate_limit"]) == ["default", "tenant:acme", "tenant:globex"]
    assert result.exit_code == Exit.OK, result.output
    report = json.loads(result.stdout)
    assert list(report["rate_limit"]) == ["tenant:acme"]
    assert report["rate_limit"]["tenant:acme"]["buckets"]["requests"]["limit"] == "4/s"
    assert report["rate_limit"]["tenant:acme"]["pauses_last_hour"] == 1
    assert report["tenant"] == {"name": "acme", "in_flight": 1}
    lines = CliRunner().invoke(app, ["info", "--tenant", "acme"], env=env).stdout
    assert "  tenant acme    1 in flight" in lines and "Rate limit       tenant:acme: requests 4/s" in lines
    # ... and a tenant nobody configured is refused
    refused = CliRunner().invoke(app, ["info", "--tenant", "initech"], env=env)
    assert refused.exit_code == Exit.BAD_INPUT and "unknown tenant 'initech'" in refused.output
    module_redis.flushdb()
