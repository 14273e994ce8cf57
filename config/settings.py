"""Settings: the one typed, frozen configuration object, read from `EXTENDQ_*` environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from extendq.config.regions import Region
from extendq.config.sentinel_url import SentinelUrl, is_sentinel, parse_sentinel_url
from extendq.config.tenants import load_tenants
from extendq.config.tls_files import check_tls_files
from extendq.errors import ConfigError

API_VERSION = "2026-02-09"


class Settings(BaseSettings):
    """Everything a producer, worker or receiver process needs to know, validated once at startup."""

    model_config = SettingsConfigDict(env_prefix="EXTENDQ_", frozen=True, extra="ignore", case_sensitive=False)

    # Redis: broker, result backend and job records; separate URLs are optional. Left out of the repr: a URL may hold
    # a password.
    redis_url: str = Field(default="redis://127.0.0.1:6379/0", repr=False)
    broker_url: str | None = Field(default=None, repr=False)
    result_backend_url: str | None = Field(default=None, repr=False)
    key_prefix: str = "extendq:"
    # A starting worker waits this long for its Redis to answer, then refuses to start (Redis starting with it).
    redis_wait_s: float = Field(default=30.0, ge=0)
    # TLS for `rediss://` URLs (config/redis_connection.py): a CA bundle, a client certificate and key for a server
    # that requires one, and how the server is checked (required: certificate and host name; optional: certificate
    # only; none: nothing).
    redis_tls_ca_file: str | None = None
    redis_tls_cert_file: str | None = None
    redis_tls_key_file: str | None = None
    redis_tls_verify: str = Field(default="required", pattern="^(required|optional|none)$")
    # Passwords kept out of URLs (never logged): Redis's, used where a URL carries none (a redis+sentinel:// URL's
    # primary and replicas too), and the Sentinels' own (`requirepass` in sentinel.conf).
    redis_password: SecretStr | None = None
    redis_sentinel_password: SecretStr | None = None
    # Before a run is created, the job's record must reach a replica when the primary has any (Redis WAIT for one
    # replica, up to this long; else the create waits for a later step). 0: never wait.
    redis_wait_replica_ms: int = Field(default=500, ge=0)

    # Extend: the SDK's own EXTEND_API_KEY is honoured.
    api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("EXTENDQ_API_KEY", "EXTEND_API_KEY", "api_key")
    )
    base_url: str | None = None
    region: Region = Region.US
    api_version: str = API_VERSION
    workspace_id: str | None = None
    request_timeout_s: float = Field(default=30.0, gt=0)

    # Check schedule: the SDK's create_and_poll defaults.
    fast_poll_interval_s: float = Field(default=1.0, gt=0)
    fast_poll_duration_s: float = Field(default=30.0, ge=0)
    poll_backoff: float = Field(default=1.15, ge=1)
    poll_max_interval_s: float = Field(default=30.0, gt=0)
    poll_jitter: float = Field(default=0.25, ge=0, lt=1)

    # Retries of transient failures (connection errors, timeouts, 408, 429, 5xx).
    retry_budget: int = Field(default=10, ge=0)
    retry_backoff_s: float = Field(default=1.0, gt=0)
    retry_backoff_max_s: float = Field(default=120.0, gt=0)

    # One rate limit shared by every worker (a plan preset, or numbers that override it).
    rate_limit_plan: str | None = Field(default=None, pattern="^(payg|scale|enterprise)$")
    rate_limit_requests_per_second: float | None = Field(default=None, gt=0)
    rate_limit_runs_per_minute: float | None = Field(default=None, gt=0)
    # How runs per minute are held: `log`, a log of the pool's creates on Redis time (a create goes as soon as no
    # 60.6 s window would hold more than the limit: Extend's own sliding window, with 1 % headroom); `gcra`, one
    # create every 60.6 s / limit, the older pacing (no bursts; a slot a late step misses is lost).
    rate_limit_runs_window: str = Field(default="log", pattern="^(log|gcra)$")

    # List sweeps replace per-run checks when many runs are in flight.
    sweep: str = Field(default="auto", pattern="^(auto|on|off)$")
    sweep_interval_s: float = Field(default=2.0, gt=0)
    # While at least 10 runs end a second, sweeps come this often instead (each list still replaces 5 checks).
    sweep_busy_interval_s: float = Field(default=0.5, gt=0)
    sweep_min_in_flight: int = Field(default=20, ge=0)
    sweep_check_interval_s: float = Field(default=300.0, gt=0)
    # At most this many safety-net checks a second while sweeping (default: a tenth of the requests/s limit,
    # or 20 without one): with 100k runs in flight, checks every 300 s would be 333 requests a second.
    sweep_safety_checks_per_s: float | None = Field(default=None, gt=0)

    # Webhooks: with them on, checks only catch missed deliveries (first after a minute, backing off).
    webhooks_enabled: bool = False
    webhook_secrets: str | None = Field(default=None, repr=False)
    webhook_check_interval_s: float = Field(default=60.0, gt=0)
    webhook_check_max_interval_s: float = Field(default=600.0, gt=0)
    # A sweep that finds a run ended leaves it this long to its webhook before checking it.
    webhook_grace_s: float = Field(default=15.0, ge=0)
    # With webhooks on, list sweeps only catch missed deliveries, whose runs wait out the grace anyway: sweeping
    # more often than that costs CPU (listing each run several times) and finds nothing sooner.
    webhook_sweep_interval_s: float = Field(default=15.0, gt=0)
    webhook_max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    # Above 0: the SDK reads 0 as "no timestamp check", which would let a replay of any age verify.
    webhook_max_age_s: int = Field(default=300, gt=0)
    # The receiver publishes the result of a terminal event that carries its run itself (no hop through a task).
    webhook_apply: bool = True
    webhook_dedupe_ttl_s: int = Field(default=3 * 24 * 3600, gt=0)

    result_ttl_s: int = Field(default=7 * 24 * 3600, gt=0)
    default_deadline_s: float | None = Field(default=None, gt=0)
    secrets_key: SecretStr | None = None
    files_root: str | None = None

    # Dispatcher of due checks, running inside every worker.
    dispatch_interval_s: float = Field(default=0.05, gt=0)
    dispatch_batch: int = Field(default=500, gt=0)
    claim_lease_s: float = Field(default=120.0, gt=0)
    # How soon a step (or a message) held by a worker that died is handed to another: a worker renews what it
    # holds every third of this, and what nobody renews comes due again when it ends (never later than the
    # claim lease: the shorter of the two is used).
    step_lease_s: float = Field(default=10.0, ge=0.5)
    # After a create whose answer was lost (timeout, 5xx, dropped connection), how long the run may still appear
    # on Extend: the job posts again only once a lookup made after this long found no run. Above the timeout.
    landing_window_s: float = Field(default=120.0, gt=0)
    # How long a step holds its job's lock (None: three request timeouts). A step that outlives it writes nothing.
    job_lock_s: float | None = Field(default=None, gt=0)
    visibility_timeout_s: int = Field(default=900, gt=0)

    log_format: str = Field(default="text", pattern="^(text|json)$")
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _check_key_prefix(self) -> Settings:
        if not self.key_prefix or any(ch.isspace() for ch in self.key_prefix):
            raise ValueError("key_prefix must be a non-empty string without spaces")
        return self

    @model_validator(mode="after")
    def _check_landing_window(self) -> Settings:
        if self.landing_window_s <= self.request_timeout_s:
            raise ValueError("EXTENDQ_LANDING_WINDOW_S must exceed EXTENDQ_REQUEST_TIMEOUT_S")
        return self

    @model_validator(mode="after")
    def _check_redis_tls(self) -> Settings:
        files = {"CA": self.redis_tls_ca_file, "CERT": self.redis_tls_cert_file, "KEY": self.redis_tls_key_file}
        given = [name for name, path in files.items() if path]
        if given and not any(url.startswith("rediss://") for url in (self.redis_url, self.broker, self.result_backend)):
            raise ValueError(f"EXTENDQ_REDIS_TLS_{given[0]}_FILE is set but no Redis URL is a rediss:// (TLS) URL")
        check_tls_files(self.redis_tls_ca_file, self.redis_tls_cert_file, self.redis_tls_key_file)
        return self

    @model_validator(mode="after")
    def _check_sentinel_urls(self) -> Settings:
        self.sentinel_urls()
        return self

    def sentinel_urls(self) -> dict[str, SentinelUrl]:
        """The Redis URLs given as `redis+sentinel://`, parsed, by their variable (ValueError naming a bad one)."""
        urls = {
            "EXTENDQ_REDIS_URL": self.redis_url,
            "EXTENDQ_BROKER_URL": self.broker_url or "",
            "EXTENDQ_RESULT_BACKEND_URL": self.result_backend_url or "",
        }
        parsed: dict[str, SentinelUrl] = {}
        for variable, url in urls.items():
            if is_sentinel(url):
                try:
                    parsed[variable] = parse_sentinel_url(url)
                except ValueError as exc:
                    raise ValueError(f"{variable}: {exc}") from None
        return parsed

    @property
    def step_lease(self) -> float:
        """The step lease in use: `step_lease_s`, or the claim lease when that is shorter."""
        return min(self.step_lease_s, self.claim_lease_s)

    @property
    def extend_base_url(self) -> str:
        return (self.base_url or self.region.base_url).rstrip("/")

    @property
    def signing_secrets(self) -> list[str]:
        """Webhook signing secrets (several during a rotation), from the comma-separated setting."""
        return [part.strip() for part in (self.webhook_secrets or "").split(",") if part.strip()]

    @property
    def broker(self) -> str:
        return self.broker_url or self.redis_url

    @property
    def result_backend(self) -> str:
        return self.result_backend_url or self.redis_url

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Build settings from a mapping shaped like `os.environ`; a bad value raises `ConfigError` naming it."""
        values = _values_from(environ)
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise ConfigError(_describe(exc)) from None

    # ---- Dashboard (`extendq dashboard`): its actions (cancel, retry) need a token or a user and password; with
    # neither it is read-only. The session cookie and CSRF tokens are signed with a key derived from these.
    dashboard_token: SecretStr | None = None
    dashboard_user: str | None = None
    dashboard_password: SecretStr | None = None

    # ---- Scheduled work: beat, reconciliation, review follow-up, folder ingestion, usage report ----------
    # The periodic jobs are config/beat.py's defaults, changed or extended by name (JSON, or a YAML file).
    beat_schedule: str | None = None
    beat_file: str | None = None
    # Several beats may run; one holds a Redis lock and fires, a standby takes over this long after it died.
    beat_lock_timeout_s: int = Field(default=60, ge=2)
    beat_max_loop_interval_s: float = Field(default=5.0, gt=0)
    # Reconciliation drives jobs whose next step is missing, or late (or past their deadline) by this much.
    reconcile_grace_s: float = Field(default=120.0, ge=0)
    reconcile_batch: int = Field(default=1000, gt=0)
    # Jobs that asked `needs_review: "watch"`: how often their NEEDS_REVIEW run is looked at again.
    review_interval_s: float = Field(default=300.0, gt=0)
    # Folder ingestion: each new file in the folder (on storage the workers share) becomes one job.
    ingest_dir: str | None = None
    ingest_workflow: str | None = None
    ingest_settle_s: float = Field(default=10.0, ge=0)
    ingest_batch: int = Field(default=500, gt=0)
    usage_retention_days: int = Field(default=400, gt=0)
    # Recovery after Redis lost its data (worker/recover.py): each worker's main process notices a restart that
    # lost the data and the pool adopts the runs created within this window (`extendq recover` does it by hand).
    recover_on_restart: bool = True
    recover_since_s: float = Field(default=24 * 3600.0, gt=0)

    @field_validator("dashboard_token", "dashboard_user", "dashboard_password", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # Compose passes `${EXTENDQ_DASHBOARD_TOKEN:-}` as an empty string when .env leaves it out: no credential.
        return None if value == "" else value

    @model_validator(mode="after")
    def _check_dashboard(self) -> Settings:
        if (self.dashboard_user is None) != (self.dashboard_password is None):
            raise ValueError("EXTENDQ_DASHBOARD_USER and EXTENDQ_DASHBOARD_PASSWORD go together")
        # The login form answers anyone who reaches it: a short secret would be guessed.
        if self.dashboard_token is not None and len(self.dashboard_token.get_secret_value()) < 16:
            raise ValueError("EXTENDQ_DASHBOARD_TOKEN must be at least 16 characters (try: openssl rand -hex 24)")
        if self.dashboard_password is not None and len(self.dashboard_password.get_secret_value()) < 12:
            raise ValueError("EXTENDQ_DASHBOARD_PASSWORD must be at least 12 characters")
        return self

    @model_validator(mode="after")
    def _check_scheduled_work(self) -> Settings:
        if self.ingest_dir and not self.ingest_workflow:
            raise ValueError("EXTENDQ_INGEST_WORKFLOW is required with EXTENDQ_INGEST_DIR")
        if self.beat_lock_timeout_s <= self.beat_max_loop_interval_s:
            raise ValueError("EXTENDQ_BEAT_LOCK_TIMEOUT_S must exceed EXTENDQ_BEAT_MAX_LOOP_INTERVAL_S")
        return self

    # ---- Producer fit: several Extend accounts (tenants) and callbacks --------------------------------
    # Tenants (config/tenants.py): name -> api_key, base_url or region, workspace_id, rate limits; JSON here,
    # or a YAML/JSON secrets file (read first; the variable wins per name). Workers need them; producers
    # only the names (EXTENDQ_TENANT_NAMES, comma-separated, or the same tenants configuration).
    tenants: SecretStr | None = None
    tenants_file: str | None = None
    tenant_names: str | None = None
    # The callback relay (in every worker's main process): how long one read of the outbox waits, and after
    # how long an entry a dead relay took is sent by another.
    callback_block_s: float = Field(default=1.0, gt=0)
    callback_claim_idle_s: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _check_tenants(self) -> Settings:
        if self.tenants is not None or self.tenants_file:
            load_tenants(self)
        return self

    # ---- Observability: Prometheus metrics (README "Operations"); logs use EXTENDQ_LOG_FORMAT above -------
    # Each worker serves its metrics on this port from its main process (unset: no endpoint, no sample files).
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    metrics_host: str = "0.0.0.0"
    # The webhook receiver serves GET /metrics on its own port.
    webhook_metrics: bool = True
    # Each worker's main process records its heartbeat in Redis (`extendq info`) and looks for extendq task
    # messages in queues no extendq worker consumes (Celery's default `celery`) this often.
    pool_watch_interval_s: float = Field(default=15.0, gt=0)


def _values_from(environ: Mapping[str, str]) -> dict[str, Any]:
    fields = {name.upper() for name in Settings.model_fields}
    values: dict[str, Any] = {}
    for key, value in environ.items():
        upper = key.upper()
        if upper.startswith("EXTENDQ_") and upper[len("EXTENDQ_") :] in fields:
            values[upper[len("EXTENDQ_") :].lower()] = value
    if "api_key" not in values and environ.get("EXTEND_API_KEY"):
        values["api_key"] = environ["EXTEND_API_KEY"]
    return values


def _describe(exc: ValidationError) -> str:
    # A check of several values (a model validator) has no location: its message names the variables itself.
    problems = [
        f"EXTENDQ_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
        if err["loc"]
        else str(err["msg"]).removeprefix("Value error, ")
        for err in exc.errors()
    ]
    return "invalid settings: " + "; ".join(problems)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once from the environment."""
    return Settings.from_env(os.environ)
