"""Tenants: several Extend accounts served by one pool, read from `EXTENDQ_TENANTS` (JSON) or a secrets file.

```yaml
# EXTENDQ_TENANTS_FILE=/run/secrets/extendq-tenants.yaml (JSON works too); EXTENDQ_TENANTS (JSON) wins per name
acme:
  api_key: sk_live_...           # a secret: never logged, never in a task message
  region: eu                     # or base_url; neither: the pool's EXTENDQ_BASE_URL / EXTENDQ_REGION
  workspace_id: ws_...           # organisation keys
  rate_limit_plan: scale         # or rate_limit_requests_per_second / rate_limit_runs_per_minute
  webhook_secrets: [wss_...]     # the account's webhook signing secret(s) (several during a rotation)
globex:
  api_key: sk_live_...
```

A job names its tenant; only workers hold the keys. Producers need the names alone, to refuse an unknown
tenant before anything is queued: `EXTENDQ_TENANT_NAMES` (comma-separated), or the names of the tenants
above when the producer is given the same configuration.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Protocol

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from extendq.config.regions import Region


class TenantSettings(Protocol):
    """The settings tenants are read from (`Settings` has them; the protocol keeps this module below it)."""

    @property
    def tenants(self) -> SecretStr | None: ...
    @property
    def tenants_file(self) -> str | None: ...
    @property
    def tenant_names(self) -> str | None: ...


TENANT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class Tenant(BaseModel):
    """One Extend account: its key, where it lives, and its own rate limits (the pool's when unset)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=TENANT_PATTERN)]
    api_key: SecretStr
    base_url: str | None = None
    region: Region | None = None
    workspace_id: str | None = None
    rate_limit_plan: Annotated[str, Field(pattern="^(payg|scale|enterprise)$")] | None = None
    rate_limit_requests_per_second: Annotated[float, Field(gt=0)] | None = None
    rate_limit_runs_per_minute: Annotated[float, Field(gt=0)] | None = None
    # Secrets that sign this account's webhooks; none: the pool's EXTENDQ_WEBHOOK_SECRETS verify its events.
    webhook_secrets: tuple[SecretStr, ...] = ()

    @field_validator("webhook_secrets", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        # One string works too, comma-separated as EXTENDQ_WEBHOOK_SECRETS is.
        return [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value

    def signing_secrets(self) -> list[str]:
        """The account's own webhook signing secrets (empty: it has none of its own)."""
        return [secret.get_secret_value() for secret in self.webhook_secrets]

    def base_url_or(self, default: str) -> str:
        """The tenant's API base URL: its own, its region's, or `default` (the pool's)."""
        if self.base_url:
            return self.base_url.rstrip("/")
        return self.region.base_url if self.region is not None else default


def load_tenants(settings: TenantSettings) -> dict[str, Tenant]:
    """Every configured tenant by name (the file first, then `EXTENDQ_TENANTS`); ValueError naming the problem."""
    raw: dict[str, Any] = {}
    if settings.tenants_file:
        raw.update(_mapping(_read_file(settings.tenants_file), "EXTENDQ_TENANTS_FILE"))
    if settings.tenants is not None:
        raw.update(_mapping(_parse_json(settings.tenants.get_secret_value()), "EXTENDQ_TENANTS"))
    return {name: _tenant(name, spec) for name, spec in raw.items()}


@lru_cache(maxsize=8)
def known_tenants(settings: TenantSettings) -> frozenset[str]:
    """The tenant names a producer may name: `EXTENDQ_TENANT_NAMES` plus those of the configured tenants."""
    names = {part.strip() for part in (settings.tenant_names or "").split(",") if part.strip()}
    return frozenset(names | set(load_tenants(settings)))


def _read_file(path: str) -> Any:
    try:
        text = Path(path).expanduser().read_text()
    except OSError as exc:
        raise ValueError(f"EXTENDQ_TENANTS_FILE {path!r} cannot be read: {exc.strerror or exc}") from None
    try:
        return yaml.safe_load(text)  # YAML is a superset of JSON: either file works
    except yaml.YAMLError as exc:
        raise ValueError(f"EXTENDQ_TENANTS_FILE {path!r} is not YAML or JSON: {type(exc).__name__}") from None


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        # The position only: the text holds API keys.
        raise ValueError(f"EXTENDQ_TENANTS is not JSON (line {exc.lineno}, column {exc.colno})") from None


def _mapping(value: Any, source: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{source} must map tenant names to their settings")
    return value


def _tenant(name: str, spec: Any) -> Tenant:
    if not isinstance(spec, dict):
        raise ValueError(f"tenant {name!r}: its settings must be a mapping with at least api_key")
    try:
        return Tenant.model_validate({**spec, "name": name})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'tenant'}: {err['msg']}"
            for err in exc.errors(include_url=False, include_input=False)
        )
        raise ValueError(f"tenant {name!r}: {problems}") from None
