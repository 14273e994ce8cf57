"""Whether the broker still holds a job's message: a job sent by name, or in a batch, has no record until then.

Only a Redis broker can be searched. kombu's Redis transport keeps each queue's waiting messages in lists
(one per priority step) and the messages workers took but have not acknowledged in the hash `unacked`;
a job id is in a message's headers (a task of its own) or in its base64 body (a member of a batch).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import redis
from celery import Celery

from extendq.config.celery_redis import is_celery_redis_url
from extendq.config.redis_connection import redis_client
from extendq.config.settings import Settings
from extendq.worker.keys import CHECKS_QUEUE, QUEUE

__all__ = ["waiting_in_broker"]

# kombu's Redis transport keeps each priority step of a queue in a list of its own (priority 0 is the plain name).
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")
_PAGE = 500


def waiting_in_broker(app: Celery, job_id: str) -> bool:
    """True when a message for `job_id` waits in extendq's queues or is held by a worker unacknowledged.

    With a broker other than Redis nothing can be searched: the answer is True (the job may be waiting).
    """
    url = str(app.conf.broker_url or "")
    if not is_celery_redis_url(url):
        return True
    client = _broker_client(app, url)
    try:
        unacked = str((app.conf.broker_transport_options or {}).get("unacked_key", "unacked"))
        return _in_queues(client, job_id.encode()) or _in_unacked(client, unacked, job_id.encode())
    finally:
        client.close()


def _broker_client(app: Celery, url: str) -> redis.Redis:
    """A client of the broker's Redis: from the settings of an extendq app (TLS, password, Sentinels), else from the
    app's own URL and TLS options."""
    settings = getattr(app, "settings", None)
    if isinstance(settings, Settings):
        return redis_client(settings, settings.broker)
    return redis.Redis.from_url(url, **(app.conf.broker_use_ssl or {}))


def _in_queues(client: redis.Redis, needle: bytes) -> bool:
    for key in (queue + suffix for queue in (CHECKS_QUEUE, QUEUE) for suffix in _PRIORITY_SUFFIXES):
        length = int(client.llen(key))
        for start in range(0, length, _PAGE):
            page: list[Any] = client.lrange(key, start, start + _PAGE - 1)
            if any(_names(raw, needle) for raw in page):
                return True
    return False


def _in_unacked(client: redis.Redis, key: str, needle: bytes) -> bool:
    # Each entry is [message, exchange, routing key].
    return any(_names(raw, needle) for _, raw in client.hscan_iter(key, count=_PAGE))


def _names(raw: bytes, needle: bytes) -> bool:
    """Whether a stored message names the job: in its headers, or (a batch) in its body."""
    if needle in raw:
        return True
    try:
        message = json.loads(raw)
        if isinstance(message, list):
            message = message[0]
        return needle in base64.b64decode(message.get("body") or "")
    except (ValueError, TypeError, AttributeError, IndexError, binascii.Error):
        return False
