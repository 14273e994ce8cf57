"""Wire-format helpers shared by the emulator: ids, RFC 3339 timestamps, compact JSON."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

API_VERSION = "2026-02-09"
JSON_TYPE = "application/json"
DASHBOARD = "https://dashboard.extend.ai"


def new_id(prefix: str, nbytes: int = 15) -> str:
    """A fresh opaque id such as `workflow_run_xKm9pNv3qWsY_jL2tR5Dh`."""
    return f"{prefix}{secrets.token_urlsafe(nbytes)}"


def iso(at: float) -> str:
    """Format a unix time as an RFC 3339 UTC string with milliseconds, like Extend does."""
    millis = int(at * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(millis // 1000)) + f".{millis % 1000:03d}Z"


def iso_or_none(at: float | None) -> str | None:
    """`iso(at)`, or None for a time that has not happened."""
    return None if at is None else iso(at)


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON, the form every response and webhook body uses."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
