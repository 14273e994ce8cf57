"""Finished jobs: found by finish time (`extendq list`), and replayed as new jobs (`extendq retry`).

The finish script adds every finished job to the sorted set `Keys.finished` (score: when it finished) and
trims entries older than the result TTL, so the index holds exactly the jobs whose records can be read.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

from extendq.errors import InvalidJobRequest
from extendq.worker.models import JobRequest, job_outcome
from extendq.worker.records import summary
from extendq.worker.store import RedisJobStore

# A job "failed" when it got no terminal run (FAILURE) or its run ended FAILED: `--status failed` finds both.
FAILED = "failed"
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# What `extendq list` shows of each job (`records.summary` reads more).
_LISTED = (
    "job_id",
    "state",
    "outcome",
    "run_id",
    "run_status",
    "error",
    "workflow_id",
    "tenant",
    "replay_of",
    "finished_at",
)


def parse_age(value: str) -> float:
    """Seconds from `"90"`, `"90s"`, `"30m"`, `"1h"` or `"2d"`; `InvalidJobRequest` otherwise."""
    match = _AGE.match(value)
    if match is None:
        raise InvalidJobRequest(f"--since takes seconds or a number with s/m/h/d (like 1h), not {value!r}")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def outcome(state: str, run_status: str | None) -> str:
    """How a finished job ended in one word: its run's status, or FAILURE when it got no terminal run."""
    return job_outcome(state, run_status)


def finished_jobs(
    store: RedisJobStore,
    *,
    since: float,
    statuses: Collection[str] = (),
    limit: int = 1000,
    tenants: Collection[str] = (),
) -> list[dict[str, Any]]:
    """Jobs that finished at or after `since` (unix s), newest first, whose outcome or state is one of `statuses`
    and, when `tenants` are given, that ran on one of those tenants' accounts.

    `statuses` are matched without case against the outcome (PROCESSED, FAILED, REJECTED, CANCELLED,
    NEEDS_REVIEW, FAILURE) and the job state (SUCCESS, FAILURE); `failed` matches FAILURE and FAILED.
    """
    wanted = {status.upper() for status in statuses}
    if FAILED.upper() in wanted:
        wanted |= {"FAILURE"}
    rows: list[dict[str, Any]] = []
    start = 0
    while len(rows) < limit:
        page = _page(store, since, start, max(limit, 100))
        if not page:
            break
        start += len(page)
        rows += [row for row in page if row is not None and _wanted(row, wanted) and _of(row, tenants)]
    return rows[:limit]


def replay_request(store: RedisJobStore, job_id: str, *, job_key: str | None = None) -> JobRequest:
    """The request that runs a finished job again as a new job: the same request, linked by `replay_of`.

    The new job gets `job_key` (none by default: a job key names one job, and the first still owns its own).
    Per-run secrets are dropped when a job finishes: a replay runs without them unless given again.
    Raises `InvalidJobRequest` for a job that is unknown (or expired), still in flight, or ended PROCESSED.
    """
    record = store.load(job_id)
    if record is None:
        raise InvalidJobRequest(f"unknown job {job_id} (or its record expired)")
    if not record.finished:
        raise InvalidJobRequest(f"job {job_id} is still in flight: cancel it first, or wait for its end")
    if outcome(record.state.value, record.run_status) == "PROCESSED":
        raise InvalidJobRequest(f"job {job_id} ended PROCESSED: nothing to replay")
    wire = record.request.wire()
    wire.pop("job_key", None)
    return JobRequest.parse({**wire, "replay_of": job_id, **({"job_key": job_key} if job_key else {})})


def _page(store: RedisJobStore, since: float, start: int, count: int) -> list[dict[str, Any] | None]:
    entries: list[Any] = store.client.zrevrangebyscore(
        store.keys.finished, "+inf", since, start=start, num=count, withscores=True
    )
    job_ids = [str(job_id) for job_id, _ in entries]
    return [_row(job_id, fields) for job_id, fields in zip(job_ids, store.raw_records(job_ids), strict=True)]


def _row(job_id: str, fields: dict[Any, Any]) -> dict[str, Any] | None:
    row = summary(job_id, fields)
    if row is None or row["finished_at"] is None:
        return None  # expired since it was indexed
    return {name: row[name] for name in _LISTED}


def _of(row: dict[str, Any], tenants: Collection[str]) -> bool:
    return not tenants or row["tenant"] in tenants


def _wanted(row: dict[str, Any], wanted: set[str]) -> bool:
    return not wanted or str(row["outcome"]).upper() in wanted or str(row["state"]).upper() in wanted
