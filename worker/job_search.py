"""Jobs found by filters, a page at a time, from the indexes (the dashboard's Jobs page): never a scan of keys.

In flight, jobs come newest first from the in-flight index (a tenant's own when one is asked for); finished ones
from the finished index of the most selective facet asked for (outcome, then workflow, then tenant: see
`Keys.finished_by`), else from the whole finished index. Every index is scored by time, so a time range is a
range of the index. What no index holds (a state, the metadata text, a second facet) is checked on the job
records of each page's candidates: a page reads at most `max_examined` of them, so a rare match costs several
pages, each as quick as the first, and says where the next one starts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from extendq.errors import InvalidJobRequest
from extendq.worker.models import JobState
from extendq.worker.records import summary
from extendq.worker.store import RedisJobStore

View = Literal["in_flight", "finished"]
VIEWS: tuple[View, ...] = ("in_flight", "finished")
IN_FLIGHT_STATES = (JobState.QUEUED.value, JobState.SUBMITTING.value, JobState.RUNNING.value)
FINISHED_STATES = (JobState.SUCCESS.value, JobState.FAILURE.value)
OUTCOMES = ("PROCESSED", "FAILED", "FAILURE", "CANCELLED", "NEEDS_REVIEW", "REJECTED")
DEFAULT_TENANT = "default"  # how the filter names the default account (its jobs carry no tenant)
_BATCH = 100


@dataclass(frozen=True)
class JobFilter:
    """What the Jobs page asks for; empty fields match everything."""

    view: View = "in_flight"
    state: str = ""
    outcome: str = ""
    workflow: str = ""
    tenant: str = ""
    since: float | None = None  # unix s: enqueued (in flight) or finished at or after
    until: float | None = None
    text: str = ""  # found in the metadata, or the job or run id, without case

    def __post_init__(self) -> None:
        if self.view not in VIEWS:
            raise InvalidJobRequest(f"view must be one of {', '.join(VIEWS)}, not {self.view!r}")
        states = IN_FLIGHT_STATES if self.view == "in_flight" else FINISHED_STATES
        if self.state and self.state not in states:
            raise InvalidJobRequest(f"a job {self.view.replace('_', ' ')} is {', '.join(states)}, not {self.state!r}")
        if self.outcome and (self.view != "finished" or self.outcome not in OUTCOMES):
            raise InvalidJobRequest(f"outcome is one of {', '.join(OUTCOMES)}, for finished jobs only")

    def matches(self, row: dict[str, Any]) -> bool:
        """Whether a job's row passes every filter (the index's own range aside)."""
        return (
            (not self.state or row["state"] == self.state)
            and (not self.outcome or row["outcome"] == self.outcome)
            and (not self.workflow or row["workflow_id"] == self.workflow)
            and (not self.tenant or (row["tenant"] or DEFAULT_TENANT) == self.tenant)
            and (not self.text or self.text.casefold() in row["searched"])
        )


@dataclass(frozen=True)
class Cursor:
    """Where a page starts: at the index score `score` (inclusive), after `skip` entries of that very score."""

    score: float
    skip: int = 0

    def text(self) -> str:
        return f"{self.score!r}:{self.skip}"

    @classmethod
    def parse(cls, value: str) -> Cursor:
        score, _, skip = value.partition(":")
        try:
            return cls(float(score), int(skip or 0))
        except ValueError:
            raise InvalidJobRequest(f"not a page cursor: {value!r}") from None


@dataclass
class JobPage:
    """One page of jobs, newest first; `next` starts the following page (None: this was the last)."""

    rows: list[dict[str, Any]]
    next: Cursor | None
    examined: int
    index_size: int
    source: str = ""
    complete: bool = field(default=True)  # False: the read budget ran out before the page filled


def search(
    store: RedisJobStore,
    wanted: JobFilter,
    *,
    cursor: Cursor | None = None,
    page_size: int = 50,
    max_examined: int = 2000,
) -> JobPage:
    """A page of the jobs `wanted` names, starting at `cursor` (the newest when None)."""
    key = _index(store, wanted)
    client = store.client
    rows: list[dict[str, Any]] = []
    examined, last = 0, cursor
    for batch in _candidates(store, key, wanted, cursor, budget=max_examined):
        for job_id, score, fields in batch:
            examined += 1
            last = Cursor(score, last.skip + 1 if last is not None and last.score == score else 1)
            row = _row(job_id, score, fields, wanted.view)
            if row is not None and wanted.matches(row):
                rows.append(row)
            if len(rows) == page_size:
                break
        if len(rows) == page_size:
            break
    more = last is not None and _has_more(store, key, wanted, last)
    return JobPage(
        rows=rows,
        next=last if more else None,
        examined=examined,
        index_size=int(client.zcard(key)),
        source=key.removeprefix(store.keys.prefix),
        complete=len(rows) == page_size or not more,
    )


def _index(store: RedisJobStore, wanted: JobFilter) -> str:
    keys = store.keys
    if wanted.view == "in_flight":
        if wanted.tenant and wanted.tenant != DEFAULT_TENANT:
            return keys.tenant_in_flight(wanted.tenant)
        return keys.in_flight
    if wanted.outcome:
        return keys.finished_by("outcome", wanted.outcome)
    if wanted.workflow:
        return keys.finished_by("workflow", wanted.workflow)
    if wanted.tenant:
        return keys.finished_by("tenant", "" if wanted.tenant == DEFAULT_TENANT else wanted.tenant)
    return keys.finished


def _candidates(
    store: RedisJobStore, key: str, wanted: JobFilter, cursor: Cursor | None, *, budget: int
) -> Iterator[list[tuple[str, float, dict[Any, Any]]]]:
    """Index entries from the cursor on, newest first, with their job hashes, a batch at a time."""
    top = cursor.score if cursor is not None else wanted.until if wanted.until is not None else "+inf"
    offset = cursor.skip if cursor is not None else 0
    bottom = wanted.since if wanted.since is not None else "-inf"
    read = 0
    while read < budget:
        count = min(_BATCH, budget - read)
        entries: list[Any] = store.client.zrevrangebyscore(
            key, top, bottom, start=offset + read, num=count, withscores=True
        )
        if not entries:
            return
        hashes = store.raw_records([str(job_id) for job_id, _ in entries])
        read += len(entries)
        yield [(str(job_id), float(score), fields) for (job_id, score), fields in zip(entries, hashes, strict=True)]
        if len(entries) < count:
            return


def _has_more(store: RedisJobStore, key: str, wanted: JobFilter, last: Cursor) -> bool:
    bottom = wanted.since if wanted.since is not None else "-inf"
    return bool(store.client.zrevrangebyscore(key, last.score, bottom, start=last.skip, num=1))


def _row(job_id: str, score: float, fields: dict[Any, Any], view: View) -> dict[str, Any] | None:
    """The row of a job, or None when its record is gone or it moved out of the view (finished meanwhile)."""
    row = summary(job_id, fields)
    if row is None or (row["finished_at"] is None) != (view == "in_flight"):
        return None
    metadata = row["metadata"]
    shown = json.dumps(metadata, sort_keys=True, ensure_ascii=False) if metadata else ""
    return {
        **row,
        "enqueued_at": row["enqueued_at"] or score,
        "metadata": shown,
        "searched": f"{job_id} {row['run_id'] or ''} {shown}".casefold(),
    }


def with_view(wanted: JobFilter, view: View) -> JobFilter:
    """The same filters on the other view, minus those that view cannot take."""
    keep_state = wanted.state in (IN_FLIGHT_STATES if view == "in_flight" else FINISHED_STATES)
    return replace(
        wanted,
        view=view,
        state=wanted.state if keep_state else "",
        outcome=wanted.outcome if view == "finished" else "",
    )
