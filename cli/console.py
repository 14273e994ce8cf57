"""Following jobs on a terminal: live progress while they run, then one table of outcomes with totals.

Shared by `extendq demo` and `extendq submit --wait`. Jobs are read through the producer's Celery
app (`AsyncResult`) and the job store, both handed in; nothing here opens a connection itself.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from extendq.cli.states import FINISHED, RUN_STATUS_STYLES, STATE_STYLES, job_state
from extendq.errors import JobFailed
from extendq.tasks.job_view import extract_outputs
from extendq.worker.models import JobState

if TYPE_CHECKING:
    from celery import Celery

    from extendq.worker.store import RedisJobStore

__all__ = [
    "STYLES",
    "JobReader",
    "Outcome",
    "ResultReader",
    "Tracked",
    "extracted_fields",
    "follow",
    "live_view",
    "outcome_of_run",
    "percentile",
    "summary",
    "summary_table",
]

PROCESSED = "PROCESSED"
STYLES = {**RUN_STATUS_STYLES, **STATE_STYLES}
_FIELDS = ("invoice_number", "invoice_date", "vendor", "total", "currency")


@dataclass(frozen=True)
class Tracked:
    """A job being followed: its id, how to show it, and (in the demo) the run status it should end in."""

    job_id: str
    label: str
    expected: str | None = None


@dataclass
class Outcome:
    """Where a followed job ended (or stood, when the wait timed out): its state, and its run's status if any."""

    job_id: str
    label: str
    state: JobState
    run_status: str | None = None
    run_id: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    latency_s: float | None = None
    note: str | None = None
    expected: str | None = None

    @property
    def done(self) -> bool:
        """The job has ended (SUCCESS or FAILURE)."""
        return self.state in FINISHED

    @property
    def ok(self) -> bool:
        """The job ended SUCCESS with a PROCESSED run."""
        return self.state is JobState.SUCCESS and self.run_status == PROCESSED

    @property
    def as_expected(self) -> bool:
        """The job ended SUCCESS with a run in its expected status (PROCESSED when none was given)."""
        return self.state is JobState.SUCCESS and self.run_status == (self.expected or PROCESSED)

    def to_json(self) -> dict[str, Any]:
        """The outcome as plain JSON."""
        body = {
            "job_id": self.job_id,
            "input": self.label,
            "done": self.done,
            "state": self.state.value,
            "run_status": self.run_status,
            "run_id": self.run_id,
            "fields": self.fields,
            "latency_s": None if self.latency_s is None else round(self.latency_s, 3),
            "note": self.note,
        }
        if self.expected is not None:
            body["expected_run_status"] = self.expected
        return body


class JobReader(Protocol):
    """Reads a job's state; `ResultReader` is the real one."""

    def peek(self, job_id: str) -> tuple[JobState, str | None]:
        """The job's state and its run's status (None before it has a run)."""

    def outcome(self, job: Tracked) -> Outcome:
        """The job's outcome, read once it has ended (or where it stands)."""


class ResultReader:
    """Reads jobs from Celery's result backend (`AsyncResult`) and their timings from the job store."""

    def __init__(self, app: Celery, store: RedisJobStore, *, clock: Callable[[], float] = time.time) -> None:
        self._app = app
        self._store = store
        self._clock = clock

    def peek(self, job_id: str) -> tuple[JobState, str | None]:
        """The job's state from its result (a job followed here was just sent: with no result yet, it is QUEUED)."""
        result = self._app.AsyncResult(job_id)
        info = result.info if isinstance(result.info, dict) else {}
        run_status = info.get("status") if result.state == "SUCCESS" else info.get("run_status")
        return job_state(result.state, None) or JobState.QUEUED, run_status

    def outcome(self, job: Tracked) -> Outcome:
        result = self._app.AsyncResult(job.job_id)
        state = job_state(result.state, None)
        latency = self._latency(job.job_id)
        if state is JobState.SUCCESS and isinstance(result.result, dict):
            return outcome_of_run(job, result.result, latency)
        if state is JobState.FAILURE:
            return _outcome_of_error(job, result.result, latency)
        at, run_status = self.peek(job.job_id)
        return Outcome(job.job_id, job.label, at, run_status=run_status, expected=job.expected)

    def _latency(self, job_id: str) -> float | None:
        record = self._store.load(job_id)
        if record is None or not record.enqueued_at:
            return None
        end = record.finished_at if record.finished_at is not None else self._clock()
        return max(0.0, end - record.enqueued_at)


def outcome_of_run(job: Tracked, run: Mapping[str, Any], latency_s: float | None) -> Outcome:
    """The outcome of a job whose result is a terminal Extend run."""
    status = str(run.get("status"))
    note = run.get("failureReason") if status != PROCESSED else None
    if job.expected is not None and status != job.expected:
        note = f"expected {job.expected}" + (f"; {note}" if note else "")
    return Outcome(
        job.job_id,
        job.label,
        JobState.SUCCESS,
        run_status=status,
        run_id=run.get("id"),
        fields=extracted_fields(run),
        latency_s=latency_s,
        note=note,
        expected=job.expected,
    )


def _outcome_of_error(job: Tracked, error: object, latency_s: float | None) -> Outcome:
    kind = getattr(error, "kind", "error") if isinstance(error, JobFailed) else type(error).__name__
    run_id = error.run_id if isinstance(error, JobFailed) else None
    note = f"{kind}: {error}"
    return Outcome(
        job.job_id,
        job.label,
        JobState.FAILURE,
        run_id=run_id,
        latency_s=latency_s,
        note=note,
        expected=job.expected,
    )


def extracted_fields(run: Mapping[str, Any]) -> dict[str, Any]:
    """Invoice fields from the run's EXTRACT step output (`stepRuns[i].result.extractRun.output.value`)."""
    for value in extract_outputs(run):
        return {name: value.get(name) for name in _FIELDS if value.get(name) is not None}
    return {}


def follow(
    jobs: Sequence[Tracked],
    reader: JobReader,
    *,
    console: Console,
    timeout_s: float | None = None,
    interval_s: float = 0.2,
) -> list[Outcome]:
    """Show a progress bar and counts by status until every job has ended (or `timeout_s` passed)."""
    pending = {job.job_id: job for job in jobs}
    ended: dict[str, Outcome] = {}
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    progress = _progress(console)
    task = progress.add_task("jobs", total=len(jobs))
    with live_view(console) as live:
        while True:
            flight = _poll(pending, ended, reader)
            progress.update(task, completed=len(ended))
            live.update(Group(progress, _counts_line(flight, ended.values())))
            if not pending or (deadline is not None and time.monotonic() >= deadline):
                break
            time.sleep(interval_s)
    return [ended.get(job.job_id) or reader.outcome(job) for job in jobs]


@contextmanager
def live_view(console: Console) -> Iterator[Live]:
    """A rich `Live` on `console` that ends its last frame with a newline, also when interrupted."""
    try:
        with Live(console=console, refresh_per_second=8, transient=False) as live:
            yield live
    finally:
        if not console.is_terminal:
            console.line()  # on a file or pipe rich leaves the last frame without its newline


def _poll(
    pending: dict[str, Tracked], ended: dict[str, Outcome], reader: JobReader
) -> list[tuple[JobState, str | None]]:
    """Move ended jobs from `pending` to `ended`; the state and run status of the rest."""
    flight = []
    for job_id, job in list(pending.items()):
        state, run_status = reader.peek(job_id)
        if state in FINISHED:
            ended[job_id] = reader.outcome(job)
            del pending[job_id]
        else:
            flight.append((state, run_status))
    return flight


def _progress(console: Console) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        auto_refresh=False,
    )


def _counts_line(flight: Iterable[tuple[JobState, str | None]], ended: Iterable[Outcome]) -> Text:
    """`  state: QUEUED 2 · RUNNING 1 · SUCCESS 3   run status: PROCESSING 1 · PROCESSED 3`."""
    now = [*flight, *((outcome.state, outcome.run_status) for outcome in ended)]
    line = Text("  state: ")
    line.append(_join_counts(Counter(state.value for state, _ in now)) or "none")
    line.append("   run status: ")
    line.append(_join_counts(Counter(run_status for _, run_status in now if run_status)) or "none")
    return line


def _join_counts(counts: Mapping[str, int]) -> Text:
    text = Text()
    for index, (status, count) in enumerate(sorted(counts.items(), key=lambda item: (-item[1], item[0]))):
        if index:
            text.append(" · ")
        text.append(f"{status} {count}", style=STYLES.get(status, ""))
    return text


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(
    outcomes: Sequence[Outcome], *, api_calls: int | None = None, elapsed_s: float | None = None
) -> dict[str, Any]:
    """Totals of a batch: jobs by state and by run status, latency p50/p95, Extend API calls per job (when known)."""
    latencies = [outcome.latency_s for outcome in outcomes if outcome.done and outcome.latency_s is not None]
    p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
    return {
        "jobs": len(outcomes),
        "by_state": dict(Counter(outcome.state.value for outcome in outcomes).most_common()),
        "by_run_status": dict(Counter(o.run_status for o in outcomes if o.run_status is not None).most_common()),
        "unexpected": sum(1 for outcome in outcomes if not outcome.as_expected),
        "latency_p50_s": None if p50 is None else round(p50, 3),
        "latency_p95_s": None if p95 is None else round(p95, 3),
        "elapsed_s": None if elapsed_s is None else round(elapsed_s, 3),
        "api_calls": api_calls,
        "api_calls_per_job": round(api_calls / len(outcomes), 2) if api_calls is not None and outcomes else None,
    }


def summary_table(totals: Mapping[str, Any]) -> Table:
    """The batch totals as a two-column grid, printed under the outcomes table."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    elapsed = totals.get("elapsed_s")
    grid.add_row("jobs", f"{totals['jobs']}" + (f" in {elapsed:.1f}s" if elapsed is not None else ""))
    grid.add_row("by state", _join_counts(totals["by_state"]))
    if totals["by_run_status"]:
        grid.add_row("by run status", _join_counts(totals["by_run_status"]))
    grid.add_row("latency", f"p50 {_seconds(totals['latency_p50_s'])} · p95 {_seconds(totals['latency_p95_s'])}")
    if totals.get("api_calls") is not None:
        per_job = totals["api_calls_per_job"]
        grid.add_row("Extend API calls", f"{totals['api_calls']} ({per_job:.1f} per job)")
    return grid


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}s"
