"""The pool's overview as its settings wire it: what `extendq info` prints and the dashboard shows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from celery import Celery

from extendq.config.settings import Settings
from extendq.errors import InvalidJobRequest
from extendq.tasks.base import limiter_for, tenant_accounts
from extendq.tasks.observe import task_names
from extendq.worker.misrouted import broker_client
from extendq.worker.overview import Overview
from extendq.worker.ratelimit import RateLimiter
from extendq.worker.store import RedisJobStore

__all__ = ["gather", "limiters_of"]


def gather(
    settings: Settings,
    app: Celery,
    store: RedisJobStore,
    *,
    tenant: str | None = None,
    limiters: Mapping[str, RateLimiter] | None = None,
) -> dict[str, Any]:
    """The overview of the pool `settings` name (see `worker.overview.Overview.read`); with `tenant`, that tenant's
    rate limit, sweeps and jobs in flight (`InvalidJobRequest` for a tenant the settings do not configure).
    `limiters`: those `limiters_of` builds, for a caller that reads the overview again and again."""
    limiters = limiters if limiters is not None else limiters_of(settings, store)
    if tenant is not None:
        accounts = tenant_accounts(settings, store)
        if accounts is None or tenant not in accounts.names:
            known = ", ".join(sorted(accounts.names if accounts else ())) or "none"
            raise InvalidJobRequest(f"unknown tenant {tenant!r}: the configured tenants are {known}")
        limiters = {scope: limiter for scope, limiter in limiters.items() if scope == f"tenant:{tenant}"}
    broker = broker_client(settings)
    try:
        return Overview(
            store=store,
            broker=broker,
            limiters=limiters,
            task_names=task_names(app),
            modes=_modes(settings),
            tenant=tenant,
        ).read()
    finally:
        if broker is not None:
            broker.close()


def limiters_of(settings: Settings, store: RedisJobStore) -> dict[str, RateLimiter]:
    """The pool's rate limiters by scope: `default`, then `tenant:<name>` for each tenant with limits."""
    limiters = {"default": limiter_for(settings, store)}
    accounts = tenant_accounts(settings, store)
    for name in sorted(accounts.names if accounts else ()):
        if (limiter := accounts.limiter(name) if accounts else None) is not None:
            limiters[f"tenant:{name}"] = limiter
    return limiters


def _modes(settings: Settings) -> dict[str, dict[str, Any]]:
    return {
        "sweeps": {"mode": settings.sweep, "min_in_flight": settings.sweep_min_in_flight},
        "webhooks": {"enabled": settings.webhooks_enabled},
    }
