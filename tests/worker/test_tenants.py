"""Tenants: configuration from JSON or a secrets file, one API and one rate-limit budget per tenant."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from extendq.config.settings import Settings
from extendq.config.tenants import known_tenants, load_tenants
from extendq.errors import ConfigError, InvalidJobRequest
from extendq.tasks.base import build_runner
from extendq.tasks.bulk import enqueue_many, submit_many
from extendq.tasks.producer import build_request
from extendq.worker.batch import BatchJob, BatchRunner, members_from
from extendq.worker.jobs import JobRunner
from extendq.worker.keys import Keys
from extendq.worker.models import JobRequest
from extendq.worker.ratelimit import RateLimiter
from extendq.worker.store import RedisJobStore
from extendq.worker.tenants import TenantAccounts
from tests.support.fakes import FakeApi, Results

ACME = {"api_key": "sk_acme_secret", "region": "eu", "workspace_id": "ws_1", "rate_limit_requests_per_second": 5}


def test_tenants_come_from_a_yaml_file_and_the_variable_wins_per_name(tmp_path: Path) -> None:
    secrets = tmp_path / "tenants.yaml"
    secrets.write_text("acme:\n  api_key: sk_from_file\nglobex:\n  api_key: sk_globex\n  base_url: http://x:1/\n")
    settings = Settings.from_env({"EXTENDQ_TENANTS_FILE": str(secrets), "EXTENDQ_TENANTS": json.dumps({"acme": ACME})})
    tenants = load_tenants(settings)
    assert sorted(tenants) == ["acme", "globex"]
    assert tenants["acme"].api_key.get_secret_value() == "sk_acme_secret"
    assert tenants["acme"].base_url_or("http://pool") == "https://api.eu1.extend.ai"
    assert tenants["globex"].base_url_or("http://pool") == "http://x:1"
    assert "sk_acme_secret" not in repr(settings) and "sk_acme_secret" not in repr(tenants)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"EXTENDQ_TENANTS": '{"acme": {"api_key": "sk_leak"'}, "EXTENDQ_TENANTS is not JSON"),
        ({"EXTENDQ_TENANTS": '{"acme": {"apikey": "sk_leak"}}'}, "tenant 'acme': api_key: Field required"),
        ({"EXTENDQ_TENANTS": '{"bad name": {"api_key": "sk_leak"}}'}, "tenant 'bad name': name"),
        ({"EXTENDQ_TENANTS": '["sk_leak"]'}, "EXTENDQ_TENANTS must map tenant names"),
        ({"EXTENDQ_TENANTS_FILE": "/nonexistent/tenants.yaml"}, "EXTENDQ_TENANTS_FILE '/nonexistent/tenants.yaml'"),
    ],
)
def test_a_bad_tenants_configuration_fails_at_startup_without_showing_a_key(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        Settings.from_env(environ)
    assert "sk_leak" not in str(caught.value)


def test_producers_know_tenant_names_without_keys() -> None:
    producer = Settings.from_env({"EXTENDQ_TENANT_NAMES": "acme, globex"})
    assert known_tenants(producer) == {"acme", "globex"}
    assert (
        build_request(workflow="w", file={"id": "f"}, tenant="acme", tenants=known_tenants(producer)).tenant == "acme"
    )
    with pytest.raises(InvalidJobRequest, match="unknown tenant 'initech': the known tenants are acme, globex"):
        build_request(workflow="w", file={"id": "f"}, tenant="initech", tenants=known_tenants(producer))
    with pytest.raises(InvalidJobRequest, match="EXTENDQ_TENANT_NAMES"):
        build_request(workflow="w", file={"id": "f"}, tenant="acme", tenants=frozenset())


def test_a_batch_is_for_one_known_account(redis_client: redis.Redis, settings: Settings) -> None:
    # A tenant's job may watch reviews and go in a batch; a batch is for one account, and a known tenant
    assert JobRequest.parse({"workflow": "w", "file": {"id": "f"}, "tenant": "acme", "needs_review": "watch"})
    acme = JobRequest.parse({"workflow": "w", "file": {"id": "f"}, "tenant": "acme"})
    default = JobRequest.parse({"workflow": "w", "file": {"id": "f"}})
    with pytest.raises(InvalidJobRequest, match="the same tenant"):
        enqueue_many(Celery(broker="memory://"), [acme, default])
    members = members_from([{"job_id": "j", "request": acme.wire()}], tenants={"acme"})
    assert [member.request.tenant for member in members] == ["acme"]
    with pytest.raises(InvalidJobRequest, match="unknown tenant 'acme'"):
        members_from([{"job_id": "j", "request": acme.wire()}], tenants={"globex"})
    with pytest.raises(InvalidJobRequest, match="one account"):
        members_from([{"job_id": "j", "request": acme.wire()}, {"job_id": "k", "request": default.wire()}])


class _Limiters:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.built: list[str] = []

    def __call__(self, name: str) -> RateLimiter | None:
        self.built.append(name)
        from extendq.worker.ratelimit import Limits

        return RateLimiter(self.client, keys=Keys("extendq:"), limits=Limits(requests_per_second=1000), scope=name)


@pytest.fixture
def pool(redis_client: redis.Redis) -> tuple[JobRunner, dict[str, FakeApi], _Limiters]:
    apis = {"default": FakeApi(name="default"), "acme": FakeApi(name="acme"), "globex": FakeApi(name="globex")}
    limiters = _Limiters(redis_client)
    store = RedisJobStore(redis_client, keys=Keys("extendq:"), result_ttl_s=3600)
    runner = JobRunner(api=apis["default"], store=store, publisher=Results())
    runner.tenants = TenantAccounts(["acme", "globex"], build_api=apis.__getitem__, build_limiter=limiters)
    return runner, apis, limiters


def test_each_job_runs_on_its_tenants_account_and_budget(
    pool: tuple[JobRunner, dict[str, FakeApi], _Limiters], redis_client: redis.Redis
) -> None:
    # Given one worker serving the default account and two tenants
    runner, apis, limiters = pool
    # When a job of each is submitted and checked
    for job_id, tenant in (("j-default", None), ("j-acme", "acme"), ("j-globex", "globex"), ("j-acme-2", "acme")):
        extra = {"tenant": tenant} if tenant else {}
        runner.start(job_id, JobRequest.parse({"workflow": "w", "file": {"text": "x"}, **extra}))
        runner.advance(job_id)
    # Then every call went to the job's own account, and each tenant's limiter was built once, in its scope
    assert {name: len(api.runs) for name, api in apis.items()} == {"default": 1, "acme": 2, "globex": 1}
    assert all(run["metadata"]["extendq:job_id"].startswith("j-acme") for run in apis["acme"].runs.values())
    assert limiters.built == ["acme", "globex"]
    assert set(redis_client.keys("extendq:limit:*")) == {
        f"extendq:limit:{tenant}:{name}" for tenant in ("acme", "globex") for name in ("requests", "granted")
    }


def test_a_job_naming_a_tenant_this_worker_does_not_know_fails_with_no_call(
    pool: tuple[JobRunner, dict[str, FakeApi], _Limiters],
) -> None:
    runner, apis, _ = pool
    runner.start("j-x", JobRequest.parse({"workflow": "w", "file": {"text": "x"}, "tenant": "initech"}))
    error = runner.publisher.published["j-x"]  # type: ignore[attr-defined]
    assert isinstance(error, InvalidJobRequest) and "unknown tenant 'initech'" in str(error)
    assert all(not api.calls for api in apis.values())
    runner.tenants = None
    runner.start("j-y", JobRequest.parse({"workflow": "w", "file": {"text": "x"}, "tenant": "acme"}))
    assert "no tenants configured" in str(runner.publisher.published["j-y"])  # type: ignore[attr-defined]


def test_a_jobs_checks_stretch_only_while_its_own_accounts_sweeps_run(
    pool: tuple[JobRunner, dict[str, FakeApi], _Limiters],
) -> None:
    # Given the default account's list sweeps running, and acme's not
    runner, _, _ = pool
    runner.sweep_check_interval_s, runner.sweep_min_in_flight = 300.0, 1000
    keys = runner.store.keys
    runner.store.client.set(keys.sweep("active"), "1")
    for job_id, extra in (("j-default", {}), ("j-acme", {"tenant": "acme"})):
        runner.start(job_id, JobRequest.parse({"workflow": "w", "file": {"text": "x"}, **extra}))
    # Then the default job's next check is stretched to the safety net, the tenant's is not
    now = runner.clock()
    assert (runner.store.due_at("j-default") or 0) - now > 200
    assert (runner.store.due_at("j-acme") or 0) - now < 5
    assert runner.store.stretched() == ["j-default"] and runner.store.stretched(tenant="acme") == []
    # When acme's sweeps start too, its next job's check stretches, noted in acme's own set
    runner.store.client.set(keys.sweep("active", "acme"), "1")
    runner.start("j-acme-2", JobRequest.parse({"workflow": "w", "file": {"text": "x"}, "tenant": "acme"}))
    assert (runner.store.due_at("j-acme-2") or 0) - now > 200
    assert runner.store.stretched(tenant="acme") == ["j-acme-2"]


def test_each_account_counts_its_own_jobs_in_flight(pool: tuple[JobRunner, dict[str, FakeApi], _Limiters]) -> None:
    # Given two default jobs, three of acme's and one of globex's in flight (no rate limits: no step waits)
    runner, apis, _ = pool
    runner.tenants = TenantAccounts(["acme", "globex"], build_api=apis.__getitem__, build_limiter=lambda name: None)
    for index, tenant in enumerate([None, None, "acme", "acme", "acme", "globex"]):
        extra = {"tenant": tenant} if tenant else {}
        runner.start(f"j-{index}", JobRequest.parse({"workflow": "w", "file": {"text": "x"}, **extra}))
    tenants = {"acme", "globex"}
    counts = [runner.store.in_flight_of(name, tenants=tenants) for name in (None, "acme", "globex")]
    assert counts == [2, 3, 1]
    # When one of acme's jobs finishes (its run ends at its first check)
    runner.advance("j-2")
    # Then acme counts one fewer, and the others are as they were
    counts = [runner.store.in_flight_of(name, tenants=tenants) for name in (None, "acme", "globex")]
    assert counts == [2, 2, 1]


def test_a_tenants_batch_goes_to_its_own_batch_endpoint(pool: tuple[JobRunner, dict[str, FakeApi], _Limiters]) -> None:
    runner, apis, limiters = pool
    request = JobRequest.parse({"workflow": "w", "file": {"url": "https://x/a.pdf"}, "tenant": "acme"})
    members = [BatchJob(job_id=f"j-{i}", request=request) for i in range(3)]
    assert BatchRunner(runner=runner).start("batch-1", members) == "batch_acme_1"
    assert [len(api.batches) for api in apis.values()] == [0, 1, 0]
    assert len(apis["acme"].batches[0]["inputs"]) == 3
    assert limiters.built == ["acme"]  # its token came from acme's budget
    assert runner.store.in_flight_of("acme") == 3


def test_the_worker_wires_tenant_apis_and_limits_from_settings(settings: Settings, redis_client: redis.Redis) -> None:
    tenants: dict[str, Any] = {"acme": ACME, "globex": {"api_key": "sk_g", "base_url": "http://127.0.0.1:9"}}
    configured = Settings.from_env(
        {
            "EXTENDQ_REDIS_URL": settings.redis_url,
            "EXTEND_API_KEY": "sk_default",
            "EXTENDQ_RATE_LIMIT_PLAN": "payg",
            "EXTENDQ_TENANTS": json.dumps(tenants),
        }
    )
    runner = build_runner(configured, Celery(broker="memory://"))
    assert runner.tenants is not None and runner.tenants.names == {"acme", "globex"}
    acme, globex = runner.tenants.limiter("acme"), runner.tenants.limiter("globex")
    assert acme is not None and globex is not None and runner.limiter is not None
    assert (acme.limits.requests_per_second, acme.limits.runs_per_minute) == (5, None)  # its own numbers only
    assert globex.limits == runner.limiter.limits  # none of its own: the pool's plan, in a budget of its own
    api = runner.tenants.api("acme")
    assert runner.tenants.api("acme") is api  # built once
    client = api._client._client_wrapper  # type: ignore[attr-defined]
    assert client.get_base_url() == "https://api.eu1.extend.ai"
    assert client.get_headers()["Authorization"] == "Bearer sk_acme_secret"
    assert client.get_headers()["x-extend-workspace-id"] == "ws_1"
    runner.tenants.close()
    runner.api.close()


def test_a_batch_naming_an_unknown_tenant_is_refused_before_queueing() -> None:
    broker = Celery(broker="memory://")
    with pytest.raises(InvalidJobRequest, match="unknown tenant 'initech'"):
        submit_many(workflow="w", files=[{"id": "f1"}, {"id": "f2"}], tenant="initech", app=broker)
