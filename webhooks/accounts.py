"""Which secrets verify a delivery: those of the Extend account that owns its run (the pool's, or a tenant's own),
or every configured account's when the run is unknown here.

The run and job an event names are read from its body before the signature is checked, only to choose the secrets:
an event naming one tenant's run verifies with that tenant's secrets alone, so another account's secret never
passes for it. Without tenant secrets configured, the pool's `EXTENDQ_WEBHOOK_SECRETS` verify every event.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis

from extendq.config.settings import Settings
from extendq.config.tenants import load_tenants
from extendq.webhooks.verify import Refusal
from extendq.worker.events import metadata_job, run_id_of
from extendq.worker.store import RedisJobStore


@dataclass(frozen=True)
class SigningSecrets:
    """The webhook signing secrets of every account: the pool's, and those tenants that have their own."""

    pool: tuple[str, ...]
    tenants: Mapping[str, tuple[str, ...]]

    @classmethod
    def from_settings(cls, settings: Settings) -> SigningSecrets:
        """The pool's secrets (`EXTENDQ_WEBHOOK_SECRETS`) and each tenant's `webhook_secrets`."""
        own = {name: tuple(tenant.signing_secrets()) for name, tenant in load_tenants(settings).items()}
        return cls(pool=tuple(settings.signing_secrets), tenants={name: found for name, found in own.items() if found})

    def every(self) -> list[str]:
        """Every configured secret, each once."""
        return list(dict.fromkeys([*self.pool, *(secret for found in self.tenants.values() for secret in found)]))

    def of(self, tenant: str | None) -> list[str]:
        """The secrets of one account: a tenant's own, or (a tenant with none, or the default account) the pool's."""
        return list(self.tenants.get(tenant, self.pool) if tenant is not None else self.pool)

    def for_delivery(self, body: bytes, store: RedisJobStore) -> list[str]:
        """The secrets that may sign this delivery; `Refusal` (401) when its run's account has none."""
        if not self.tenants:
            return list(self.pool)
        found, tenant = _owner_account(body, store)
        if not found:
            return self.every()
        secrets = self.of(tenant)
        if not secrets and self.every():
            raise Refusal(401, "no webhook signing secret is configured for the run's account")
        return secrets


def _owner_account(body: bytes, store: RedisJobStore) -> tuple[bool, str | None]:
    """(True, the tenant or None) for the account of the job owning the run the body names; (False, None) when
    the run and job are unknown here (or the body names none)."""
    payload = _payload(body)
    if payload is None:
        return False, None
    run_id = run_id_of(payload)
    try:
        job_id = (store.owners([run_id])[0] if run_id else None) or metadata_job(payload)
        record = store.load(job_id) if job_id else None
    except redis.RedisError as exc:  # Extend delivers it again later
        raise Refusal(503, f"cannot look up the run's account: {type(exc).__name__}") from exc
    return (False, None) if record is None else (True, record.request.tenant)


def _payload(body: bytes) -> dict[str, Any] | None:
    try:
        event = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    payload = event.get("payload") if isinstance(event, dict) else None
    return payload if isinstance(payload, dict) else None
