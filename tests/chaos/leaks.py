"""Looking for secrets: every place a string shows up, raw or base64-encoded, in Redis, logs and results.

scan = LeakScan({"API key": "sk_..."})
scan.redis(client)            # every key name, and every value of every type (broker envelopes decoded)
scan.log("worker.log", text)  # line by line
scan.text("result of job 1", json.dumps(meta))
assert scan.hits == [], scan.hits
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from tests.chaos.snapshot import snapshot

# Runs of base64 (standard or URL-safe) long enough to hold a message body or a token; decoded and searched too.
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]{16,}={0,2}")


def encodings(secret: str) -> list[str]:
    """The forms `secret` would take in text: itself, JSON-escaped, and base64 (standard and URL-safe).

    Base64 of a longer text holds the secret in one of three shapes, by where it starts modulo 3 bytes; each
    shape is the part of the encoding that depends on the secret's bytes alone.
    """
    raw = secret.encode()
    forms = {secret, json.dumps(secret)[1:-1]}
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw).decode()
        first, end = -(-8 * shift // 6), 8 * (shift + len(raw)) // 6
        stable = encoded[first:end]
        forms |= {stable, stable.translate(str.maketrans("+/", "-_"))}
    return sorted(forms)


def decoded(text: str, depth: int = 2) -> Iterator[str]:
    """The text of every base64 run in `text`, and of the runs inside those (to `depth` levels)."""
    if depth == 0:
        return
    for run in _BASE64_RUN.findall(text):
        padded = run.rstrip("=") + "=" * (-len(run.rstrip("=")) % 4)
        try:
            data = base64.b64decode(padded.translate(str.maketrans("-_", "+/")), validate=True)
        except (binascii.Error, ValueError):
            continue
        inner = data.decode(errors="replace")
        yield inner
        yield from decoded(inner, depth - 1)


@dataclass(frozen=True)
class Hit:
    """One sentinel found: where, which one, and in which form."""

    where: str
    secret: str
    form: str


@dataclass
class LeakScan:
    """Counts what it read (keys, values by type, log lines, results) and every sentinel it found in it."""

    secrets: Mapping[str, str]
    read: Counter[str] = field(default_factory=Counter)
    hits: list[Hit] = field(default_factory=list)

    def text(self, where: str, text: str, *, kind: str = "texts") -> None:
        """Search one piece of text, and the base64 inside it."""
        self.read[kind] += 1
        for piece in (text, *decoded(text)):
            for name, secret in self.secrets.items():
                self.hits += [Hit(where, name, form) for form in encodings(secret) if form in piece]

    def log(self, name: str, text: str) -> None:
        """Search a log, line by line."""
        for number, line in enumerate(text.splitlines(), 1):
            self.text(f"{name}:{number}", line, kind=f"log lines ({name})")

    def redis(self, client: redis.Redis) -> None:
        """Search every key name and every value (each field, item, member or stream entry) of the database."""
        for key, (kind, value) in snapshot(client).items():
            self.text(f"redis key {key!r}", key, kind="redis keys")
            for index, item in enumerate(_items(kind, value)):
                self.text(f"redis {kind} {key!r} [{index}]", item, kind=f"redis {kind} values")

    def summary(self) -> str:
        """What was read, one `what: count` per line, then the totals and the hits."""
        lines = [f"  {what}: {count}" for what, count in sorted(self.read.items())]
        totals = Counter[str]()
        for what, count in self.read.items():
            totals[_TOTALS.get(what.split(" (")[0].split(" ")[-1], what)] += count
        lines.append("  total: " + ", ".join(f"{count} {what}" for what, count in totals.items()))
        return "\n".join([*lines, f"  hits: {len(self.hits)}"])


_TOTALS = {"keys": "Redis keys", "values": "Redis values", "lines": "log lines"}


def plant(client: redis.Redis, canary: str) -> list[str]:
    """The canary in a key's name and in a value of every type (raw, base64, in a broker envelope); the keys."""
    body = base64.b64encode(json.dumps([[], {"token": canary}, {}]).encode()).decode()
    client.set(f"canary:{canary}", "x")
    client.set("canary:string", f"prefix {canary}")
    client.hset("canary:hash", "field", canary)
    client.rpush("canary:list", json.dumps({"body": body, "headers": {}}))
    client.sadd("canary:set", base64.urlsafe_b64encode(f"x{canary}".encode()).decode())
    client.zadd("canary:zset", {canary: 1})
    client.xadd("canary:stream", {"secret": canary})
    return [f"canary:{canary}", *(f"canary:{kind}" for kind in ("string", "hash", "list", "set", "zset", "stream"))]


def _items(kind: str, value: Any) -> list[str]:
    """A value as the strings it is made of: a hash's fields and values, a stream entry's id and fields."""
    if kind == "string":
        return [str(value)]
    if kind == "hash":
        return [f"{name}={item}" for name, item in value.items()]
    if kind in ("list", "set"):
        return [str(item) for item in value]
    if kind == "zset":
        return [f"{member} {score}" for member, score in value]
    if kind == "stream":
        return [f"{entry_id} {fields}" for entry_id, fields in value]
    return [repr(value)]
