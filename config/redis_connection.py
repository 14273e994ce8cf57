"""Connections to Redis: every component's redis-py client is made here, from settings.

Three kinds of URL:

- `redis://`: plain TCP (or `unix://`, a socket).
- `rediss://`: TLS. `EXTENDQ_REDIS_TLS_*` say how: the CA bundle the server's certificate is checked against, the
  client certificate and key for a server that requires one, and how strictly the server is checked (`required`:
  certificate and host name; `optional`: certificate only; `none`: nothing). The same options go to redis-py (job
  store, rate limiter, callback relay, webhook receiver, CLI), kombu (`broker_use_ssl`), Celery's result backend
  (`redis_backend_use_ssl`) and celery-redbeat (`redbeat_redis_use_ssl`); see config/celery_redis.py.
- `redis+sentinel://`: the primary that Redis Sentinels name (config/sentinel_url.py). A client asks the
  Sentinels for the primary's address each time it connects, so after a failover (a connection error, or a READONLY
  answer from a demoted primary) its next connection goes to the new primary.

Passwords stay out of URLs when you like: `EXTENDQ_REDIS_PASSWORD` is Redis's password wherever a URL carries none,
`EXTENDQ_REDIS_SENTINEL_PASSWORD` the Sentinels' own. Neither is ever logged or shown.
"""

from __future__ import annotations

from typing import Any

import redis
from redis import asyncio as aioredis
from redis.asyncio import sentinel as async_sentinel
from redis.sentinel import Sentinel

from extendq.config.sentinel_url import SentinelUrl, is_sentinel, parse_sentinel_url
from extendq.config.settings import Settings

__all__ = [
    "SENTINEL_TIMEOUT_S",
    "async_redis_client",
    "is_redis_url",
    "is_tls",
    "redis_client",
    "redis_password",
    "sentinel_kwargs",
    "tls_description",
    "tls_options",
    "tls_options_for",
]

_TLS_SCHEMES = ("rediss://",)
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
# A Sentinel that does not answer within this long is passed over for the next one.
SENTINEL_TIMEOUT_S = 2.0


def is_tls(url: str) -> bool:
    """Whether `url` connects over TLS."""
    return url.startswith(_TLS_SCHEMES)


def is_redis_url(url: str) -> bool:
    """Whether `url` names a Redis (directly, or through Sentinels), rather than another broker or backend."""
    return url.startswith(_REDIS_SCHEMES) or is_sentinel(url)


def tls_options(settings: Settings) -> dict[str, Any]:
    """redis-py's `ssl_*` keyword arguments from settings (kombu, Celery and redbeat take the same dict)."""
    options: dict[str, Any] = {
        "ssl_cert_reqs": settings.redis_tls_verify,
        "ssl_check_hostname": settings.redis_tls_verify == "required",
    }
    if settings.redis_tls_ca_file:
        options["ssl_ca_certs"] = settings.redis_tls_ca_file
    if settings.redis_tls_cert_file:
        options["ssl_certfile"] = settings.redis_tls_cert_file
        options["ssl_keyfile"] = settings.redis_tls_key_file
    return options


def tls_options_for(settings: Settings, url: str) -> dict[str, Any]:
    """The TLS options for a client of `url`: none unless it is a `rediss://` URL."""
    return tls_options(settings) if is_tls(url) else {}


def redis_password(settings: Settings, url: str) -> str | None:
    """Redis's password for a client of `url`: a `redis+sentinel://` URL's own, else `EXTENDQ_REDIS_PASSWORD`.

    A `redis://` URL's own password is read by redis-py itself, and wins over the setting.
    """
    own = parse_sentinel_url(url).password if is_sentinel(url) else None
    return own or (settings.redis_password.get_secret_value() if settings.redis_password else None)


def sentinel_kwargs(settings: Settings) -> dict[str, Any]:
    """How a client talks to the Sentinels themselves: their password, and short timeouts."""
    options: dict[str, Any] = {"socket_timeout": SENTINEL_TIMEOUT_S, "socket_connect_timeout": SENTINEL_TIMEOUT_S}
    if settings.redis_sentinel_password is not None:
        options["password"] = settings.redis_sentinel_password.get_secret_value()
    return options


def redis_client(settings: Settings, url: str | None = None, **kwargs: Any) -> redis.Redis:
    """A redis-py client of `url` (default `EXTENDQ_REDIS_URL`) with the settings' password and TLS options; lazy,
    no connection yet. `kwargs` go to the client (`decode_responses`, timeouts...)."""
    target = url or settings.redis_url
    password = redis_password(settings, target)
    if is_sentinel(target):
        parsed = parse_sentinel_url(target)
        manager = _sentinel(settings, parsed, password)
        client: redis.Redis = manager.master_for(parsed.service_name, redis_class=_SentinelRedis, **kwargs)
        return client
    extra = {"password": password} if password else {}
    return redis.Redis.from_url(target, **tls_options_for(settings, target), **extra, **kwargs)


class _SentinelRedis(redis.Redis):
    """A client of the Sentinels' primary that closes its connections to the Sentinels with its own."""

    def close(self) -> None:
        super().close()
        pool: Any = self.connection_pool  # a SentinelConnectionPool
        pool.sentinel_manager.close()


class _AsyncSentinelRedis(aioredis.Redis):
    """An asyncio client of the Sentinels' primary that closes its connections to the Sentinels with its own."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        pool: Any = self.connection_pool  # a SentinelConnectionPool
        await pool.sentinel_manager.aclose()


def _sentinel(settings: Settings, parsed: SentinelUrl, password: str | None) -> Sentinel:
    return Sentinel(list(parsed.sentinels), sentinel_kwargs=sentinel_kwargs(settings), password=password, db=parsed.db)


class _BlockingSentinelPool(async_sentinel.SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """The primary's connections, at most `max_connections`, a caller waiting for a free one beyond them."""


def async_redis_client(
    settings: Settings, url: str, *, max_connections: int | None = None, **kwargs: Any
) -> aioredis.Redis:
    """A redis.asyncio client of `url` with the settings' password and TLS options; lazy, no connection yet. With
    `max_connections`, a caller beyond them waits for a free connection."""
    password = redis_password(settings, url)
    blocking = {"max_connections": max_connections, "timeout": None} if max_connections else {}
    if is_sentinel(url):
        parsed = parse_sentinel_url(url)
        manager = async_sentinel.Sentinel(
            list(parsed.sentinels), sentinel_kwargs=sentinel_kwargs(settings), password=password, db=parsed.db
        )
        pool_class = _BlockingSentinelPool if blocking else async_sentinel.SentinelConnectionPool
        client: aioredis.Redis = manager.master_for(
            parsed.service_name,
            redis_class=_AsyncSentinelRedis,
            connection_pool_class=pool_class,
            **blocking,
            **kwargs,
        )
        return client
    options = {**tls_options_for(settings, url), **({"password": password} if password else {}), **kwargs}
    if not blocking:
        plain: aioredis.Redis = aioredis.Redis.from_url(url, **options)
        return plain
    pool = aioredis.BlockingConnectionPool.from_url(url, **blocking, **options)
    return aioredis.Redis.from_pool(pool)  # owns the pool: closing the client closes its connections


def tls_description(settings: Settings) -> str:
    """How TLS connections check the server, in a few words (no path in it)."""
    words = f"tls verify {settings.redis_tls_verify}"
    if settings.redis_tls_ca_file:
        words += ", own CA"
    if settings.redis_tls_cert_file:
        words += ", client certificate"
    return words
