"""Per-tenant Extend APIs and rate limiters for one worker process, built on first use and then kept.

A job names a tenant (`JobRequest.tenant`); `JobRunner.api_for(record)` and `limiter_for(record)` pick the
tenant's API (its key, base URL and workspace) and its own rate-limit budget from here. Keys stay in the
worker's configuration: they never travel in a task message or land in Redis.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Mapping

from extendq.errors import InvalidJobRequest
from extendq.worker.extend import ExtendApi
from extendq.worker.ratelimit import RateLimiter


class TenantAccounts:
    """The configured tenants of this process: their APIs and limiters, each built once, when first needed."""

    def __init__(
        self,
        names: Collection[str],
        *,
        build_api: Callable[[str], ExtendApi],
        build_limiter: Callable[[str], RateLimiter | None],
        safety_checks_per_s: Mapping[str, float] | None = None,
    ) -> None:
        self._names = frozenset(names)
        self._safety = dict(safety_checks_per_s or {})
        self._build_api = build_api
        self._build_limiter = build_limiter
        self._apis: dict[str, ExtendApi] = {}
        self._limiters: dict[str, RateLimiter | None] = {}
        self._lock = threading.Lock()  # webhook and step tasks may share a process's runner across threads

    @property
    def names(self) -> frozenset[str]:
        return self._names

    def api(self, tenant: str) -> ExtendApi:
        """The tenant's Extend API; `InvalidJobRequest` for a tenant this worker does not know."""
        self._known(tenant)
        with self._lock:
            if tenant not in self._apis:
                self._apis[tenant] = self._build_api(tenant)
            return self._apis[tenant]

    def limiter(self, tenant: str) -> RateLimiter | None:
        """The tenant's own shared rate limiter (its scope is the tenant's name)."""
        self._known(tenant)
        with self._lock:
            if tenant not in self._limiters:
                self._limiters[tenant] = self._build_limiter(tenant)
            return self._limiters[tenant]

    def safety_checks_per_s(self, tenant: str) -> float | None:
        """How many safety-net checks a second the tenant's jobs may make while its sweeps run (None: no bound)."""
        return self._safety.get(tenant)

    def close(self) -> None:
        """Close every API built so far."""
        with self._lock:
            apis, self._apis = list(self._apis.values()), {}
        for api in apis:
            api.close()

    def _known(self, tenant: str) -> None:
        if tenant not in self._names:
            known = ", ".join(sorted(self._names)) or "none"
            raise InvalidJobRequest(f"unknown tenant {tenant!r}: this worker's tenants are {known}")
