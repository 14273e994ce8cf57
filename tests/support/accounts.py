"""A pool on several Extend accounts for end-to-end tests: the default account's emulator and one per tenant, the
environment their worker and producer share, and what each account's emulator saw."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from typing import Any

import redis
from celery import Celery

from extendq.config.settings import Settings
from extendq.tasks.celery import create_app
from tests.e2e.conftest import API_KEY
from tests.support.emulator import EmulatorProcess


def accounts_env(
    redis_url: str, emulators: Mapping[str, EmulatorProcess], tenants: Mapping[str, Any], **extra: str
) -> dict[str, str]:
    """The pool's environment: its Redis, the default account (`emulators["default"]`), the tenants, quick retries
    and a short landing window and claim lease; `extra` adds or overrides variables."""
    return {
        "EXTENDQ_REDIS_URL": redis_url,
        "EXTENDQ_BASE_URL": emulators["default"].url,
        "EXTEND_API_KEY": API_KEY,
        "EXTENDQ_TENANTS": json.dumps(tenants),
        "EXTENDQ_RETRY_BACKOFF_S": "0.2",
        "EXTENDQ_RETRY_BACKOFF_MAX_S": "2",
        "EXTENDQ_REQUEST_TIMEOUT_S": "5",
        "EXTENDQ_LANDING_WINDOW_S": "8",
        "EXTENDQ_CLAIM_LEASE_S": "10",
        **extra,
    }


class Accounts:
    """The producer, the Redis database and the emulators (`default` and each tenant's) of the pool."""

    def __init__(self, env: dict[str, str], emulators: dict[str, EmulatorProcess]) -> None:
        self.env = env
        self.settings = Settings.from_env(env)
        self.producer: Celery = create_app(self.settings)
        self.redis = redis.Redis.from_url(self.settings.redis_url, decode_responses=True)
        self.emulators = emulators

    def requests(self, name: str) -> Counter[tuple[str, int]]:
        """The account's requests by route and status."""
        return Counter((f"{r['method']} {r['route']}", int(r["status"])) for r in self.emulators[name].requests())

    def job_ids(self, name: str) -> Counter[str]:
        """The job ids in the metadata of the account's runs (each run once)."""
        return Counter(run["metadata"].get("extendq:job_id") for run in self.emulators[name].runs())
