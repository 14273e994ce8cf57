"""What the benchmarks share: a Redis database of their own, the served emulator, worker processes, CPU time."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from extendq.cli.redis_server import ensure_redis
from tests.support.emulator import EmulatorProcess
from tests.support.worker import claim_database, release_database

API_KEY = "bench-key"


@contextmanager
def redis_database() -> Iterator[str]:
    """A Redis URL on an empty database of its own (a private server when none answers)."""
    url, private = ensure_redis(os.environ.get("EXTENDQ_REDIS_URL", "redis://127.0.0.1:6379/0"))
    base = url.rsplit("/", 1)[0]
    db = claim_database(f"{base}/0", owner=f"bench-{uuid.uuid4().hex[:8]}")
    try:
        yield f"{base}/{db}"
    finally:
        release_database(f"{base}/0", db)
        if private is not None:
            private.stop()


@contextmanager
def emulator(profile: dict[str, Any]) -> Iterator[EmulatorProcess]:
    """The emulator, served by uvicorn in its own process, with `profile`."""
    with EmulatorProcess(profile=profile) as served:
        yield served


def worker_env(redis_url: str, emulator_url: str, **extra: str) -> dict[str, str]:
    """The environment a benchmark worker runs with."""
    return {"EXTENDQ_REDIS_URL": redis_url, "EXTENDQ_BASE_URL": emulator_url, "EXTEND_API_KEY": API_KEY, **extra}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its live children (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for each in [pid, *_children(pid)]:
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def rss_bytes(pid: int) -> int:
    """Resident memory of a process and its live children."""
    total = 0
    for each in [pid, *_children(pid)]:
        try:
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except FileNotFoundError:
            continue
    return total


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    return [int(child) for child in text.split()]


class Stopwatch:
    """Wall-clock seconds since creation."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started
