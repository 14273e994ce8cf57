"""Every key and value of a Redis database, to show that something changed nothing, or holds no secret."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import redis


def snapshot(client: redis.Redis) -> dict[str, tuple[str, Any]]:
    """Each key's type and value (streams as their entries), read with a `decode_responses` client."""
    return {key: (kind := client.type(key), _value(client, key, kind)) for key in client.scan_iter(count=1000)}


def _value(client: redis.Redis, key: str, kind: str) -> Any:
    if kind == "string":
        return client.get(key)
    if kind == "hash":
        return client.hgetall(key)
    if kind == "list":
        return client.lrange(key, 0, -1)
    if kind == "set":
        return sorted(client.smembers(key))
    if kind == "zset":
        return client.zrange(key, 0, -1, withscores=True)
    if kind == "stream":
        return client.xrange(key)
    return None


def changed_keys(before: dict[str, tuple[str, Any]], after: dict[str, tuple[str, Any]]) -> list[str]:
    """Keys added, removed or with another value."""
    return sorted(key for key in before.keys() | after.keys() if before.get(key) != after.get(key))


def as_text(client: redis.Redis) -> str:
    """The whole database as text, with the base64 message bodies kombu keeps in its envelopes decoded."""
    text = json.dumps(snapshot(client), default=str)
    bodies = re.findall(r'"?body[\\":\s]+([A-Za-z0-9+/=]{8,})', text)
    return "\n".join([text, *(base64.b64decode(body).decode(errors="replace") for body in bodies)])
