"""Connections to Redis: every component's client is made here, with the TLS options from settings.

A `rediss://` URL connects over TLS. `EXTENDQ_REDIS_TLS_*` say how: the CA bundle the server's certificate is
checked against, the client certificate and key for a server that requires one, and how strictly the server is
checked (`required`: certificate and host name; `optional`: certificate only; `none`: nothing). The same options
go to redis-py (job store, rate limiter, callback relay, webhook receiver, CLI), kombu (`broker_use_ssl`), Celery's
result backend (`redis_backend_use_ssl`) and celery-redbeat (`redbeat_redis_use_ssl`). A `redis://` URL gets none.
"""

from __future__ import annotations

from typing import Any

import redis

from extendq.config.settings import Settings

__all__ = ["is_tls", "redis_client", "tls_description", "tls_options", "tls_options_for"]

_TLS_SCHEMES = ("rediss://",)


def is_tls(url: str) -> bool:
    """Whether `url` connects over TLS."""
    return url.startswith(_TLS_SCHEMES)


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


def redis_client(settings: Settings, url: str | None = None, **kwargs: Any) -> redis.Redis:
    """A redis-py client of `url` (default `EXTENDQ_REDIS_URL`) with the settings' TLS options; lazy, no connection
    yet. `kwargs` go to the client (`decode_responses`, timeouts...)."""
    target = url or settings.redis_url
    return redis.Redis.from_url(target, **tls_options_for(settings, target), **kwargs)


def tls_description(settings: Settings) -> str:
    """How TLS connections check the server, in a few words (no path in it)."""
    words = f"tls verify {settings.redis_tls_verify}"
    if settings.redis_tls_ca_file:
        words += ", own CA"
    if settings.redis_tls_cert_file:
        words += ", client certificate"
    return words
