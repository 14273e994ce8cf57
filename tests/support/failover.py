"""What the failover test and bench look at: jobs' results on whichever primary is current, runs per job on the
emulator, a write barrier on the replica, beat's firings from its log."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import redis

from extendq.worker.models import JOB_ID_KEY
from tests.support.emulator import EmulatorProcess

_CHUNK = 500


def results(client: redis.Redis, job_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The stored Celery result of each job that has one (`status`, `result`), read through `client`."""
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(job_ids), _CHUNK):
        chunk = job_ids[start : start + _CHUNK]
        for job_id, raw in zip(chunk, client.mget([f"celery-task-meta-{j}" for j in chunk]), strict=True):
            if raw is not None:
                found[job_id] = json.loads(raw)
    return found


def finished(client: redis.Redis, job_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Those results that are terminal (SUCCESS or FAILURE); a Redis error while a primary is replaced reads as none."""
    try:
        return {j: r for j, r in results(client, job_ids).items() if r.get("status") in ("SUCCESS", "FAILURE")}
    except redis.RedisError:
        return {}


def runs_per_job(emulator: EmulatorProcess) -> Counter[str]:
    """How many Extend runs the emulator holds for each job id (from the runs' metadata)."""
    return Counter(str((run.get("metadata") or {}).get(JOB_ID_KEY)) for run in emulator.runs())


def replicated(client: redis.Redis, *, timeout_ms: int = 10_000) -> bool:
    """Whether every write made so far (by any client) is on a replica: a write, then WAIT on its connection."""
    pipe = client.pipeline(transaction=False)
    pipe.incr("test:replicated-fence")
    pipe.wait(1, timeout_ms)
    return int(pipe.execute()[1]) >= 1


def firings(beat_log: str, task: str) -> list[float]:
    """When beat sent `task`, from its log lines (`Scheduler: Sending due task NAME (TASK)`), in order."""
    stamps = [line[:23] for line in beat_log.splitlines() if "Sending due task" in line and f"({task})" in line]
    return [datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp() for stamp in stamps]


def wait_until(condition: Callable[[], Any], *, timeout_s: float, what: str, interval_s: float = 0.2) -> Any:
    """Poll `condition` until it is truthy (its value) or fail after `timeout_s` naming `what`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s:g} s")
        time.sleep(interval_s)


def lines_with(text: str, needle: str, ids: Iterable[str]) -> set[str]:
    """Those of `ids` named on a line of `text` that holds `needle`."""
    wanted = set(ids)
    return {part for line in text.splitlines() if needle in line for part in line.split() if part in wanted}
