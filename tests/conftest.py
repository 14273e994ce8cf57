"""Shared fixtures: a real Redis on its own database for this test run, and settings built from a dict."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import redis

from extendq.cli.redis_server import RedisUnavailable, ensure_redis
from extendq.config.settings import Settings
from tests.support.worker import claim_database, release_database

_OWNER = f"pytest-{os.getpid()}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def redis_server_url() -> Iterator[str]:
    """A Redis server: the one at EXTENDQ_TEST_REDIS_URL (default local 6379), or a private one started here."""
    wanted = os.environ.get("EXTENDQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        url, private = ensure_redis(wanted)
    except RedisUnavailable as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(exc))
    yield url.rsplit("/", 1)[0]
    if private is not None:
        private.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server_url: str) -> Iterator[str]:
    """A Redis URL on a database number this test run has to itself."""
    db = claim_database(f"{redis_server_url}/0", owner=_OWNER)
    yield f"{redis_server_url}/{db}"
    release_database(f"{redis_server_url}/0", db)


@pytest.fixture(scope="module")
def module_redis_url(redis_server_url: str) -> Iterator[str]:
    """A Redis database of the module's own, for tests that must see the broker's queues untouched by workers."""
    db = claim_database(f"{redis_server_url}/0", owner=f"{_OWNER}-module-{uuid.uuid4().hex[:6]}")
    yield f"{redis_server_url}/{db}"
    release_database(f"{redis_server_url}/0", db)


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client on the test database, with extendq's and the result backend's keys cleared before and after."""
    yield from _cleaned_client(redis_url)


@pytest.fixture
def module_redis(module_redis_url: str) -> Iterator[redis.Redis]:
    """A client on the module's own database, cleared like `redis_client`'s."""
    yield from _cleaned_client(module_redis_url)


def _cleaned_client(url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(url, decode_responses=True)
    clean_keys(client)
    yield client
    clean_keys(client)
    client.close()


def clean_keys(client: redis.Redis, prefixes: tuple[str, ...] = ("extendq", "celery-task-meta-")) -> None:
    """Delete job data but keep the broker's bindings (a running worker needs them)."""
    for prefix in prefixes:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)


@pytest.fixture
def settings(redis_url: str) -> Settings:
    """Settings for a test, built from a dict as a process would build them from its environment."""
    return Settings.from_env(
        {
            "EXTENDQ_REDIS_URL": redis_url,
            "EXTENDQ_BASE_URL": "http://127.0.0.1:9",
            "EXTEND_API_KEY": "test-key",
        }
    )


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """Async tests (`pytest.mark.anyio`) run on asyncio, as the Extend SDK's async client and extendq's do; trio is
    installed only as a dependency of the browser tests' driver."""
    return "asyncio"
