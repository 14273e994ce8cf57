"""Profiles: the named behaviours of the emulator (workflows, durations, outcome mix, limits, faults).

A profile is plain JSON/YAML. `load_profile` accepts a built-in name (`default`, `fast`, `payg`) or a
file path; a file may start from a built-in with `base: <name>` and override top-level keys (its
`workflows` are merged by id). See docs/emulator.md for every key.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from extendq.emulator.statuses import check_unknown_status

Outcome = Literal["PROCESSED", "FAILED", "NEEDS_REVIEW", "REJECTED", "CANCELLED"]
Span = tuple[float, float]
ERROR_STATUSES = (408, 429, 500, 502, 503, 504)  # what faults may answer instead of handling a request
MAX_WAIT_S = 600.0  # longest injected wait (delay, slow answer, late commit): past the SDK's 300 s timeout
ROUTE_KEYS = (  # the Extend surface's routes, as faults name them (emulator.app serves exactly these)
    "POST /files/upload",
    "GET /files",
    "GET /files/{id}",
    "DELETE /files/{id}",
    "POST /workflow_runs",
    "GET /workflow_runs",
    "POST /workflow_runs/batch",
    "GET /workflow_runs/{id}",
    "POST /workflow_runs/{id}",
    "DELETE /workflow_runs/{id}",
    "POST /workflow_runs/{id}/cancel",
)
CREATE_ROUTES = ("POST /workflow_runs", "POST /workflow_runs/batch")  # where runs are created
DEFAULT_REVIEWER = "reviewer@example.com"


class ProfileError(ValueError):
    """A profile that cannot be loaded or does not validate."""


def _check_span(value: Span) -> Span:
    low, high = value
    if not 0 <= low <= high:
        raise ValueError("must be [min, max] with 0 <= min <= max")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CreateError(_Model):
    """The error every create of a refusing workflow gets (a revoked workflow, an account out of credits)."""

    status: Literal[400, 402, 403, 404, 422]
    code: str = Field(min_length=1)
    message: str = Field(min_length=1)


class WorkflowSpec(_Model):
    """One known workflow: how long its runs take and how they end (or the error that refuses them)."""

    name: str
    version: str = "1"
    duration_s: Span
    queue_s: Span = (0.0, 0.0)
    outcomes: dict[Outcome, float] | Literal["content"]
    review_threshold: float = 10000.0
    failure_reason: str = "FAILED_TO_PROCESS_FILE"
    failure_message: str = "The file could not be processed."
    reviewer: str = DEFAULT_REVIEWER
    rejection_note: str = "Rejected in review"
    create_error: CreateError | None = None

    @model_validator(mode="before")
    @classmethod
    def _timeline_optional_when_refusing(cls, data: Any) -> Any:
        # A workflow that refuses every create never runs: timeline and outcomes may be left out.
        if isinstance(data, dict) and data.get("create_error") is not None:
            return {"duration_s": (0.0, 0.0), "outcomes": {"PROCESSED": 1}, **data}
        return data

    @field_validator("duration_s", "queue_s")
    @classmethod
    def _spans(cls, value: Span) -> Span:
        return _check_span(value)

    @field_validator("outcomes")
    @classmethod
    def _weights(cls, value: dict[Outcome, float] | str) -> dict[Outcome, float] | str:
        if isinstance(value, dict) and (any(w < 0 for w in value.values()) or sum(value.values()) <= 0):
            raise ValueError("weights must be >= 0 with a positive sum")
        return value


class RateLimit(_Model):
    """Plan limits: requests per second over the whole Extend surface, runs per minute on create."""

    requests_per_second: int | None = Field(default=None, ge=1)
    runs_per_minute: int | None = Field(default=None, ge=1)


def check_route(route: str) -> str:
    """`route` when it names a route of the Extend surface, e.g. `GET /workflow_runs/{id}`.

    Raises:
        ValueError: otherwise, listing the routes.
    """
    if route not in ROUTE_KEYS:
        raise ValueError(f"{route!r} is not a route of the Extend surface: one of {', '.join(ROUTE_KEYS)}")
    return route


def _check_error_status(status: int) -> int:
    if status not in ERROR_STATUSES:
        raise ValueError(f"must be one of {', '.join(map(str, ERROR_STATUSES))}")
    return status


class Outage(_Model):
    """One route answering `status` without handling its requests, for `for_s` seconds from when it is set."""

    route: str
    status: int = 503
    for_s: float = Field(ge=0)

    @field_validator("route")
    @classmethod
    def _route(cls, value: str) -> str:
        return check_route(value)

    @field_validator("status")
    @classmethod
    def _status(cls, value: int) -> int:
        return _check_error_status(value)


class UnknownStatus(_Model):
    """Runs that end with a status the SDK does not know, instead of their drawn outcome."""

    rate: float = Field(ge=0, le=1)
    status: str = "ARCHIVED"
    workflows: tuple[str, ...] | None = None  # only runs of these workflows (all when None)

    @field_validator("status")
    @classmethod
    def _status(cls, value: str) -> str:
        return check_unknown_status(value)


class Faults(_Model):
    """Injected failures on the Extend surface (never on /_emulator/)."""

    error_rate: float = Field(default=0.0, ge=0, le=1)
    error_statuses: tuple[int, ...] = (500, 502, 503, 408)
    rate_limited_rate: float = Field(default=0.0, ge=0, le=1)
    retry_after_s: int = Field(default=1, ge=1, strict=True)
    latency_s: Span = (0.0, 0.0)
    drop_rate: float = Field(default=0.0, ge=0, le=1)
    lose_rate: float = Field(default=0.0, ge=0, le=1)
    routes: tuple[str, ...] | None = None
    late_commit_rate: float = Field(default=0.0, ge=0, le=1)
    late_commit_s: float = Field(default=3.0, ge=0, le=MAX_WAIT_S)
    slow_routes: dict[str, float] = Field(default_factory=dict)
    slow_rate: float = Field(default=1.0, ge=0, le=1)
    outages: tuple[Outage, ...] = ()
    unknown_status: UnknownStatus | None = None

    @field_validator("latency_s")
    @classmethod
    def _spans(cls, value: Span) -> Span:
        return _check_span(value)

    @field_validator("routes")
    @classmethod
    def _routes(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for route in value or ():
            check_route(route)
        return value

    @field_validator("slow_routes")
    @classmethod
    def _slow_routes(cls, value: dict[str, float]) -> dict[str, float]:
        for route, seconds in value.items():
            check_route(route)
            if not 0 < seconds <= MAX_WAIT_S:
                raise ValueError(f"{route}: seconds must be within (0, {MAX_WAIT_S:g}]")
        return value

    @field_validator("error_statuses")
    @classmethod
    def _statuses(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(s not in ERROR_STATUSES for s in value):
            raise ValueError(f"must be a non-empty list of {', '.join(map(str, ERROR_STATUSES))}")
        return value

    @model_validator(mode="after")
    def _shares(self) -> Faults:
        # One draw decides between a 429, an error and handling the request, so both rates hold exactly.
        if self.error_rate + self.rate_limited_rate > 1:
            raise ValueError("error_rate + rate_limited_rate must not exceed 1")
        return self


class WebhookPolicy(_Model):
    """How events are delivered: signed-URL threshold and re-delivery schedule."""

    url_threshold_bytes: int | None = Field(default=None, ge=0)
    max_attempts: int = Field(default=5, ge=1, le=20)
    backoff_s: float = Field(default=1.0, ge=0)
    timeout_s: float = Field(default=10.0, gt=0)
    signed_url_ttl_s: float = Field(default=3600.0, gt=0)


class Profile(_Model):
    """A whole profile, validated."""

    name: str = "custom"
    seed: int | None = None
    workflows: dict[str, WorkflowSpec]
    rate_limit: RateLimit | None = None
    faults: Faults = Faults()
    batch_runs_per_second: float = Field(default=20.0, gt=0)
    cancel_s: float = Field(default=0.2, ge=0)
    webhooks: WebhookPolicy = WebhookPolicy()

    def to_dict(self) -> dict[str, Any]:
        """The profile as plain JSON, the same shape a profile file has."""
        return self.model_dump(mode="json")


def _content(name: str, duration_s: Span) -> dict[str, Any]:
    return {"name": name, "duration_s": list(duration_s), "queue_s": [0.1, 0.5], "outcomes": "content"}


def _fixed(name: str, outcomes: dict[str, float]) -> dict[str, Any]:
    return {"name": name, "duration_s": [1, 3], "queue_s": [0.1, 0.5], "outcomes": outcomes}


def _refusing(name: str, status: int, code: str, message: str) -> dict[str, Any]:
    return {**_fixed(name, {"PROCESSED": 1}), "create_error": {"status": status, "code": code, "message": message}}


_DEFAULT: dict[str, Any] = {
    "name": "default",
    "seed": None,
    "workflows": {
        "workflow_invoice": _content("Invoice Processing", (1, 4)),
        "workflow_receipt": _content("Receipt Processing", (1, 3)),
        "workflow_mixed": _fixed("Mixed Outcomes", {"PROCESSED": 0.7, "FAILED": 0.2, "NEEDS_REVIEW": 0.1}),
        "workflow_processed": _fixed("Always Processed", {"PROCESSED": 1}),
        "workflow_failed": _fixed("Always Failed", {"FAILED": 1}),
        "workflow_review": _fixed("Always Needs Review", {"NEEDS_REVIEW": 1}),
        "workflow_rejected": _fixed("Always Rejected", {"REJECTED": 1}),
        "workflow_cancelled": _fixed("Always Cancelled", {"CANCELLED": 1}),
        "workflow_revoked": _refusing("Revoked Workflow", 403, "FORBIDDEN", "This workflow has been revoked"),
        "workflow_invalid": _refusing("Invalid Workflow", 400, "INVALID_REQUEST", "Workflow configuration is invalid"),
    },
    "rate_limit": None,
    "batch_runs_per_second": 20,
    "cancel_s": 0.2,
}


def _fast() -> dict[str, Any]:
    fast = copy.deepcopy(_DEFAULT)
    fast.update(name="fast", seed=1, batch_runs_per_second=1000, cancel_s=0.1)
    fast["webhooks"] = {"backoff_s": 0.05, "timeout_s": 2}
    for spec in fast["workflows"].values():
        spec.update(duration_s=[0.1, 0.3], queue_s=[0.0, 0.05])
    return fast


def _payg() -> dict[str, Any]:
    payg = copy.deepcopy(_DEFAULT)
    payg.update(name="payg", rate_limit={"requests_per_second": 10, "runs_per_minute": 80})
    return payg


BUILTIN: dict[str, dict[str, Any]] = {"default": _DEFAULT, "fast": _fast(), "payg": _payg()}


def parse_profile(data: Any) -> Profile:
    """Validate a profile given as a mapping (from JSON/YAML or the admin API).

    Raises:
        ProfileError: with the offending key paths.
    """
    if not isinstance(data, dict):
        raise ProfileError("a profile must be a mapping")
    data = _with_base(data)
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        raise ProfileError(f"invalid profile: {_problems(exc)}") from exc


def parse_outage(data: Any) -> Outage:
    """Validate one outage window (`{"route", "status"?, "for_s"}`), as the admin API receives it.

    Raises:
        ProfileError: with the offending keys.
    """
    try:
        return Outage.model_validate(data)
    except ValidationError as exc:
        raise ProfileError(f"invalid outage: {_problems(exc)}") from exc


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())


def _with_base(data: dict[str, Any]) -> dict[str, Any]:
    if "base" not in data:
        return data
    base_name = data["base"]
    if base_name not in BUILTIN:
        raise ProfileError(f"base: unknown built-in profile {base_name!r} (known: {', '.join(BUILTIN)})")
    merged = copy.deepcopy(BUILTIN[base_name])
    overrides = {k: v for k, v in data.items() if k != "base"}
    workflows = {**merged["workflows"], **(overrides.pop("workflows", None) or {})}
    merged.update(overrides, workflows=workflows)
    return merged


def load_profile(name_or_path: str | Path) -> Profile:
    """A built-in profile by name, or a YAML/JSON profile file by path.

    Raises:
        ProfileError: unknown name, unreadable file or invalid content.
    """
    if isinstance(name_or_path, str) and name_or_path in BUILTIN:
        return parse_profile(copy.deepcopy(BUILTIN[name_or_path]))
    path = Path(name_or_path)
    if not path.is_file():
        raise ProfileError(f"{name_or_path!s} is neither a built-in profile ({', '.join(BUILTIN)}) nor a file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ProfileError(f"cannot read profile {path}: {exc}") from exc
    if isinstance(data, dict):
        data.setdefault("name", path.stem)
    return parse_profile(data)
