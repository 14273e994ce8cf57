"""What every task shares: the job runner built once per process (after fork) and how results are published."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from celery import Celery, states
from celery.backends.base import Backend, BaseKeyValueStoreBackend
from celery.backends.redis import RedisBackend
from celery.exceptions import SoftTimeLimitExceeded

from extendq.config.celery_redis import celery_url
from extendq.config.settings import Settings, get_settings
from extendq.config.tenants import Tenant, load_tenants
from extendq.errors import ExtendqError
from extendq.tasks.celery import ExtendqApp, get_app
from extendq.tasks.producer import secrets_key_of
from extendq.worker.batch import BatchRunner
from extendq.worker.extend import ApiConfig, ExtendApi, build_api
from extendq.worker.jobs import JobRunner
from extendq.worker.models import JobState
from extendq.worker.offline import NoApi
from extendq.worker.preflight import api_key_of
from extendq.worker.ratelimit import PLANS, Limits, RateLimiter, RunsWindow
from extendq.worker.records import EncodedResult
from extendq.worker.replication import ReplicaWait
from extendq.worker.schedule import CheckSchedule, RetryPolicy
from extendq.worker.store import RedisJobStore, open_store
from extendq.worker.sweep import SweepConfig, Sweeper
from extendq.worker.tenants import TenantAccounts
from extendq.worker.unforeseen import Redactor, known_secrets

_runner: JobRunner | None = None
# A progress result, written (and published) unless the stored result is terminal already.
_PROGRESS = """
local current = redis.call('GET', KEYS[1])
if current then
  local ok, meta = pcall(cjson.decode, current)
  if ok and type(meta) == 'table' and (meta.status == 'SUCCESS' or meta.status == 'FAILURE') then return 0 end
end
if tonumber(ARGV[2]) > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[1])
end
redis.call('PUBLISH', KEYS[1], ARGV[1])
return 1
"""


class BackendPublisher:
    """Publishes job outcomes to Celery's result backend under the job id, so `AsyncResult(job_id)` reads them."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    def progress(self, job_id: str, state: JobState, info: dict[str, Any]) -> None:
        # Never over a terminal result: a step's progress may reach the backend after another step finished the
        # job (results in a Redis of their own are not written in the job store's atomic steps).
        backend = self._backend
        if not isinstance(backend, RedisBackend):
            backend.store_result(job_id, info, state.value)
            return
        encoded = self.encoded(job_id, info, state.value)
        backend.client.eval(_PROGRESS, 1, encoded.key, encoded.value, encoded.ttl_s)

    def success(self, job_id: str, run: dict[str, Any]) -> None:
        self._write(job_id, run, states.SUCCESS)

    def encoded(self, job_id: str, result: Any, state: str) -> EncodedResult:
        """The result as the Redis backend stores it (key, value, expiry), for the job store to write itself."""
        backend = self._backend
        assert isinstance(backend, RedisBackend)
        key = backend.get_key_for_task(job_id)
        return EncodedResult(
            key=key.decode() if isinstance(key, bytes) else str(key),
            value=self._meta(job_id, result, state),
            ttl_s=int(getattr(backend, "expires", None) or 0),
        )

    def writes_to(self, redis_url: str) -> bool:
        """Whether results go to the Redis database at `redis_url` (then the job store can write them)."""
        return isinstance(self._backend, RedisBackend) and getattr(self._backend, "url", None) == celery_url(redis_url)

    def _write(self, job_id: str, result: Any, state: str) -> None:
        # What `store_result` writes, without first reading the stored result back (Celery's guard against a
        # late update overwriting a success): a job's result is only written by the step holding its lock,
        # and only until its record says finished.
        backend = self._backend
        if not isinstance(backend, BaseKeyValueStoreBackend):
            backend.store_result(job_id, result, state)
            return
        backend._set_with_state(  # type: ignore[attr-defined]
            backend.get_key_for_task(job_id), self._meta(job_id, result, state), state
        )

    def _meta(self, job_id: str, result: Any, state: str) -> str:
        backend = self._backend
        meta = backend._get_result_meta(  # type: ignore[attr-defined]
            result=backend.encode_result(result, state), state=state, traceback=None, request=None
        )
        meta["task_id"] = job_id
        encoded = backend.encode(meta)
        return encoded.decode() if isinstance(encoded, bytes) else str(encoded)

    def failure(self, job_id: str, error: ExtendqError) -> None:
        self._backend.store_result(job_id, error, states.FAILURE)

    def copy(self, source_id: str, target_id: str) -> bool:
        meta = self._backend.get_task_meta(source_id)
        if meta.get("status") not in states.READY_STATES:
            return False
        self._backend.store_result(target_id, meta.get("result"), meta["status"])
        return True


store_for = open_store


def safety_checks_per_s(settings: Settings) -> float:
    """How many safety-net checks a second the pool may make while sweeping (`EXTENDQ_SWEEP_SAFETY_CHECKS_PER_S`)."""
    if settings.sweep_safety_checks_per_s is not None:
        return settings.sweep_safety_checks_per_s
    rps = (
        settings.rate_limit_requests_per_second
        or PLANS.get(settings.rate_limit_plan or "", Limits()).requests_per_second
    )
    return 0.1 * rps if rps else 20.0


def build_runner(settings: Settings, app: Celery) -> JobRunner:
    """Everything a job needs, wired from settings; `ConfigError` without an API key (but against the emulator)."""
    config = ApiConfig(
        base_url=settings.extend_base_url,
        api_key=api_key_of(settings, keyless=isinstance(app, ExtendqApp) and app.keyless_emulator),
        api_version=settings.api_version,
        timeout_s=settings.request_timeout_s,
        workspace_id=settings.workspace_id,
    )
    store = store_for(settings)
    publisher = BackendPublisher(app.backend)
    runner = JobRunner(
        api=build_api(config),
        store=store,
        limiter=limiter_for(settings, store),
        sweep_check_interval_s=None if settings.sweep == "off" else settings.sweep_check_interval_s,
        sweep_min_in_flight=0 if settings.sweep == "on" else settings.sweep_min_in_flight,
        sweep_safety_checks_per_s=safety_checks_per_s(settings),
        publisher=publisher,
        encode_result=publisher.encoded if publisher.writes_to(settings.redis_url) else None,
        checks=check_schedule(settings),
        retry=RetryPolicy(
            budget=settings.retry_budget, backoff_s=settings.retry_backoff_s, backoff_max_s=settings.retry_backoff_max_s
        ),
        secrets_key=secrets_key_of(settings),
        files_root=Path(settings.files_root) if settings.files_root else None,
        default_deadline_s=settings.default_deadline_s,
        lease_s=settings.claim_lease_s,
        step_lease_s=settings.step_lease,
        lock_ttl_s=job_lock_s(settings),
        overrun_errors=(SoftTimeLimitExceeded,),
        landing_window_s=settings.landing_window_s,
        redact=Redactor(known_secrets(settings)),
        replica_wait=ReplicaWait(
            client=store.client, fence_key=store.keys.replica_fence, timeout_ms=settings.redis_wait_replica_ms
        ),
    )
    batches = BatchRunner(runner=runner)
    runner.batch_checker, runner.batch_finder = batches.check_member, batches.find_member
    runner.tenants = tenant_accounts(settings, store)
    return runner


def job_lock_s(settings: Settings) -> float:
    """How long a step may hold a job's lock: `EXTENDQ_JOB_LOCK_S`, else three request timeouts."""
    return settings.job_lock_s if settings.job_lock_s is not None else settings.request_timeout_s * 3


def receiver_runner(settings: Settings, app: Celery, store: RedisJobStore) -> JobRunner:
    """The webhook receiver's runner: it finishes jobs from their terminal events as a worker's step would (same
    lock, same finishing script, same result), makes no Extend call, and hands its jobs' metrics to the workers.
    """
    publisher = BackendPublisher(app.backend)
    return JobRunner(
        api=NoApi(),
        store=store,
        publisher=publisher,
        encode_result=publisher.encoded if publisher.writes_to(settings.redis_url) else None,
        lock_ttl_s=job_lock_s(settings),
        redact=Redactor(known_secrets(settings)),
        hand_over_metrics=True,
    )


def limiter_for(settings: Settings, store: RedisJobStore, *, scope: str = "default") -> RateLimiter:
    """The pool's shared limiter: the plan's limits, overridden by explicit numbers (none: pauses on 429 only)."""
    plan = PLANS.get(settings.rate_limit_plan or "", Limits())
    limits = Limits(
        requests_per_second=settings.rate_limit_requests_per_second or plan.requests_per_second,
        runs_per_minute=settings.rate_limit_runs_per_minute or plan.runs_per_minute,
        runs_window=RunsWindow(settings.rate_limit_runs_window),
    )
    return RateLimiter(store.client, keys=store.keys, limits=limits, scope=scope)


def tenant_accounts(settings: Settings, store: RedisJobStore) -> TenantAccounts | None:
    """The configured tenants' APIs and limiters, each built on first use (None: one account only)."""
    tenants = load_tenants(settings)
    if not tenants:
        return None

    def build(name: str) -> ExtendApi:
        tenant = tenants[name]
        return build_api(
            ApiConfig(
                base_url=tenant.base_url_or(settings.extend_base_url),
                api_key=tenant.api_key.get_secret_value(),
                api_version=settings.api_version,
                timeout_s=settings.request_timeout_s,
                workspace_id=tenant.workspace_id,
                tenant=name,
            )
        )

    def limiter(name: str) -> RateLimiter:
        return limiter_for(tenant_limits(settings, tenants[name]), store, scope=f"tenant:{name}")

    safety = {name: safety_checks_per_s(tenant_limits(settings, tenant)) for name, tenant in tenants.items()}
    return TenantAccounts(tenants, build_api=build, build_limiter=limiter, safety_checks_per_s=safety)


def tenant_limits(settings: Settings, tenant: Tenant) -> Settings:
    """The settings a tenant's limits are read from: its own plan and numbers when it gives any (it is another
    account), else the pool's."""
    own = tenant.model_dump(include=_LIMIT_FIELDS)
    return settings.model_copy(update=own) if any(value is not None for value in own.values()) else settings


_LIMIT_FIELDS = {"rate_limit_plan", "rate_limit_requests_per_second", "rate_limit_runs_per_minute"}


def sweepers_for(
    settings: Settings, *, sleep: Callable[[float], bool], adopt: Callable[[list[str], str | None], None]
) -> list[Sweeper]:
    """The list sweepers of this worker process, one per account: the default one, then each tenant's (only one
    process sweeps an account at a time across the pool).

    `sleep` waits for a page's token and answers True when the worker is stopping; `adopt` hands the runs of
    jobs a sweep found without a record to the workers (`tasks.bulk.send_adoptions`).
    """
    runner = get_runner()
    config = sweep_config(settings)
    tenants = runner.tenants.names if runner.tenants is not None else frozenset()
    accounts: list[str | None] = [None, *sorted(tenants)]
    return [
        Sweeper(
            api=runner.api_of(tenant),
            store=runner.store,
            client=runner.store.client,
            config=config,
            limiter=runner.limiter_of(tenant),
            adopt=adopt,
            sleep=sleep,
            tenant=tenant,
            tenants=tenants,
        )
        for tenant in accounts
    ]


def sweep_config(settings: Settings) -> SweepConfig:
    """When and how every account sweeps."""
    return SweepConfig(
        mode=settings.sweep,
        interval_s=settings.webhook_sweep_interval_s if settings.webhooks_enabled else settings.sweep_interval_s,
        min_in_flight=settings.sweep_min_in_flight,
        webhook_grace_s=settings.webhook_grace_s if settings.webhooks_enabled else 0.0,
        hand_back_within_s=settings.webhook_check_interval_s if settings.webhooks_enabled else 1.0,
        busy_interval_s=None
        if settings.webhooks_enabled
        else min(settings.sweep_busy_interval_s, settings.sweep_interval_s),
    )


def check_schedule(settings: Settings) -> CheckSchedule:
    """The check cadence from settings; with webhooks on, checks only catch missed deliveries."""
    if settings.webhooks_enabled:
        return CheckSchedule(
            fast_interval_s=settings.webhook_check_interval_s,
            fast_duration_s=0,
            backoff=settings.poll_backoff,
            max_interval_s=settings.webhook_check_max_interval_s,
            jitter=settings.poll_jitter,
        )
    return CheckSchedule(
        fast_interval_s=settings.fast_poll_interval_s,
        fast_duration_s=settings.fast_poll_duration_s,
        backoff=settings.poll_backoff,
        max_interval_s=settings.poll_max_interval_s,
        jitter=settings.poll_jitter,
    )


def get_runner() -> JobRunner:
    """This process's runner, built on first use (after Celery's prefork fork)."""
    global _runner
    if _runner is None:
        _runner = build_runner(get_settings(), get_app())
    return _runner


def set_runner(runner: JobRunner | None) -> None:
    """Replace this process's runner (tests)."""
    global _runner
    _runner = runner
