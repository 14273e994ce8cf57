"""How Celery reaches Redis: the broker (kombu), the result backend and beat's lock (celery-redbeat), from settings.

Each takes a URL of its own form. A `redis://` or `rediss://` URL goes to all three as it is, with the settings' TLS
options and password. A `redis+sentinel://` URL becomes what each speaks: kombu's and Celery's `sentinel://` URLs
(one per Sentinel, joined by `;`) with the service name in their transport options, and redbeat's `sentinels`
option. Passwords go in options, never in a URL: Celery and kombu print their URLs at startup (masked, but still).
"""

from __future__ import annotations

from typing import Any

from extendq.config.redis_connection import (
    SENTINEL_TIMEOUT_S,
    is_redis_url,
    redis_password,
    sentinel_kwargs,
    tls_options_for,
)
from extendq.config.sentinel_url import SentinelUrl, is_sentinel, parse_sentinel_url
from extendq.config.settings import Settings

__all__ = ["broker_sentinel_options", "celery_redis_config", "celery_url", "is_celery_redis_url"]

# The schemes of a Redis broker or result backend as Celery and kombu take them (a Sentinel one as `sentinel://`).
_CELERY_REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "sentinel://")
# Sending a message through a failover: the Sentinels name the new primary a few seconds after the old one died, so a
# send is tried for about 15 s (Celery's default gives up after about a second).
_FAILOVER_PUBLISH_RETRIES = {"max_retries": 20, "interval_start": 0, "interval_step": 0.25, "interval_max": 1}


def celery_url(url: str) -> str:
    """`url` as kombu and Celery's result backend take it: a `redis+sentinel://` URL as `sentinel://` URLs, no
    password in them; any other URL as it is."""
    if not is_sentinel(url):
        return url
    parsed = parse_sentinel_url(url)
    return ";".join(f"sentinel://{_host(host)}:{port}/{parsed.db}" for host, port in parsed.sentinels)


def is_celery_redis_url(url: str) -> bool:
    """Whether a URL in the form Celery and kombu take (`celery_url`) names a Redis, directly or through Sentinels."""
    return url.startswith(_CELERY_REDIS_SCHEMES)


def broker_sentinel_options(settings: Settings) -> dict[str, Any]:
    """kombu's transport options for a Sentinel broker (the service name, how to reach the Sentinels); {} else."""
    return _transport_options(settings, settings.broker)


def celery_redis_config(settings: Settings) -> dict[str, Any]:
    """The Celery settings that say where and how the broker, the result backend and redbeat reach Redis."""
    broker, backend = settings.broker, settings.result_backend
    return {
        "broker_url": celery_url(broker),
        "broker_password": redis_password(settings, broker) if is_redis_url(broker) else None,
        "broker_use_ssl": tls_options_for(settings, broker) or None,
        "result_backend": celery_url(backend),
        "redis_password": redis_password(settings, backend) if is_redis_url(backend) else None,
        "redis_backend_use_ssl": tls_options_for(settings, backend) or None,
        "result_backend_transport_options": _transport_options(settings, backend),
        **_redbeat(settings),
        **({"task_publish_retry_policy": _FAILOVER_PUBLISH_RETRIES} if is_sentinel(broker) else {}),
    }


def _redbeat(settings: Settings) -> dict[str, Any]:
    """celery-redbeat's connection: `redis-sentinel://` and its `sentinels` option for a Sentinel URL."""
    url = settings.redis_url
    password = redis_password(settings, url)
    options: dict[str, Any] = {"password": password} if password else {}
    if is_sentinel(url):
        parsed = parse_sentinel_url(url)
        options |= {
            "sentinels": list(parsed.sentinels),
            "service_name": parsed.service_name,
            "db": parsed.db,
            "sentinel_kwargs": sentinel_kwargs(settings),
            "socket_timeout": SENTINEL_TIMEOUT_S * 5,
        }
        url = "redis-sentinel://" + celery_url(url).replace("sentinel://", "")  # redbeat reads only the scheme
    return {
        "redbeat_redis_url": url,
        "redbeat_redis_options": options,
        "redbeat_redis_use_ssl": tls_options_for(settings, url) or None,
    }


def _transport_options(settings: Settings, url: str) -> dict[str, Any]:
    if not is_sentinel(url):
        return {}
    parsed: SentinelUrl = parse_sentinel_url(url)
    return {"master_name": parsed.service_name, "sentinel_kwargs": sentinel_kwargs(settings)}


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
