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

from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from extendq.errors import JobFailed

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
    "outcomes_table",
    "percentile",
    "summary",
    "summary_table",
]

PROCESSED = "PROCESSED"
ERROR = "ERROR"
_READY = frozenset({"SUCCESS", "FAILURE", "REVOKED"})
STYLES = {PROCESSED: "green", "NEEDS_REVIEW": "yellow", "FAILED": "red", "CANCELLED": "magenta", ERROR: "bold red"}
_FIELDS = ("invoice_number", "invoice_date", "vendor", "total", "currency")


@dataclass(frozen=True)
class Tracked:
    """A job being followed: its id, how to show it, and (in the demo) the run status it should end in."""

    job_id: str
    label: str
    expected: str | None = None


@dataclass
class Outcome:
    """Where a followed job ended (or stood, when the wait timed out)."""

    job_id: str
    label: str
    done: bool
    status: str
    run_id: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    latency_s: float | None = None
    note: str | None = None
    expected: str | None = None

    @property
    def ok(self) -> bool:
        """The job ended PROCESSED."""
        return self.done and self.status == PROCESSED

    @property
    def as_expected(self) -> bool:
        """The job ended in its expected status (PROCESSED when none was given)."""
        return self.done and self.status == (self.expected or PROCESSED)

    def to_json(self) -> dict[str, Any]:
        """The outcome as plain JSON."""
        body = {
            "job_id": self.job_id,
            "input": self.label,
            "done": self.done,
            "status": self.status,
            "run_id": self.run_id,
            "fields": self.fields,
            "latency_s": None if self.latency_s is None else round(self.latency_s, 3),
            "note": self.note,
        }
        if self.expected is not None:
            body["expected"] = self.expected
        return body


class JobReader(Protocol):
    """Reads a job's state; `ResultReader` is the real one."""

    def peek(self, job_id: str) -> str | None:
        """None once the job has ended, else what it is doing (QUEUED, SUBMITTING, a run status)."""

    def outcome(self, job: Tracked) -> Outcome:
        """The job's outcome, read once it has ended (or where it stands)."""


class ResultReader:
    """Reads jobs from Celery's result backend (`AsyncResult`) and their timings from the job store."""

    def __init__(self, app: Celery, store: RedisJobStore, *, clock: Callable[[], float] = time.time) -> None:
        self._app = app
        self._store = store
        self._clock = clock

    def peek(self, job_id: str) -> str | None:
        result = self._app.AsyncResult(job_id)
        state = result.state
        if state in _READY:
            return None
        if state == "PENDING":
            return "QUEUED"
        info = result.info if isinstance(result.info, dict) else {}
        return str(info.get("run_status") or state)

    def outcome(self, job: Tracked) -> Outcome:
        result = self._app.AsyncResult(job.job_id)
        state = result.state
        latency = self._latency(job.job_id)
        if state == "SUCCESS" and isinstance(result.result, dict):
            return outcome_of_run(job, result.result, latency)
        if state in _READY:
            return _outcome_of_error(job, result.result, latency)
        return Outcome(job.job_id, job.label, done=False, status=self.peek(job.job_id) or state, expected=job.expected)

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
        done=True,
        status=status,
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
        done=True,
        status=ERROR,
        run_id=run_id,
        latency_s=latency_s,
        note=note,
        expected=job.expected,
    )


def extracted_fields(run: Mapping[str, Any]) -> dict[str, Any]:
    """Invoice fields from the run's EXTRACT step output (`stepRuns[i].result.extractRun.output.value`)."""
    for step in run.get("stepRuns") or []:
        result = step.get("result") if isinstance(step, dict) else None
        extract = result.get("extractRun") if isinstance(result, dict) else None
        output = extract.get("output") if isinstance(extract, dict) else None
        value = output.get("value") if isinstance(output, dict) else None
        if isinstance(value, dict):
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


def _poll(pending: dict[str, Tracked], ended: dict[str, Outcome], reader: JobReader) -> Counter[str]:
    """Move ended jobs from `pending` to `ended`; count the rest by what they are doing."""
    flight: Counter[str] = Counter()
    for job_id, job in list(pending.items()):
        doing = reader.peek(job_id)
        if doing is None:
            ended[job_id] = reader.outcome(job)
            del pending[job_id]
        else:
            flight[doing] += 1
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


def _counts_line(flight: Counter[str], ended: Iterable[Outcome]) -> Text:
    done = Counter(outcome.status for outcome in ended)
    line = Text("  in flight: ")
    line.append(_join_counts(flight) or "none")
    line.append("   ended: ")
    line.append(_join_counts(done) or "none")
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
    """Totals of a batch: jobs by status, latency p50/p95, Extend API calls per job (when known)."""
    latencies = [outcome.latency_s for outcome in outcomes if outcome.done and outcome.latency_s is not None]
    p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
    return {
        "jobs": len(outcomes),
        "by_status": dict(Counter(outcome.status for outcome in outcomes).most_common()),
        "unexpected": sum(1 for outcome in outcomes if not outcome.as_expected),
        "latency_p50_s": None if p50 is None else round(p50, 3),
        "latency_p95_s": None if p95 is None else round(p95, 3),
        "elapsed_s": None if elapsed_s is None else round(elapsed_s, 3),
        "api_calls": api_calls,
        "api_calls_per_job": round(api_calls / len(outcomes), 2) if api_calls is not None and outcomes else None,
    }


def outcomes_table(outcomes: Sequence[Outcome], *, title: str | None = None) -> Table:
    """One row per job: input, status, invoice number, date, vendor, total, enqueue-to-result time, note."""
    checked = any(outcome.expected is not None for outcome in outcomes)
    table = Table(
        title=title,
        title_justify="left",
        caption="✓ ended as expected   ✗ did not" if checked else None,
        caption_justify="left",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        pad_edge=False,
    )
    # Narrow terminals shrink the document, vendor and note columns; the short ones keep their width.
    table.add_column("document", overflow="fold", min_width=16)
    table.add_column("status", no_wrap=True)
    table.add_column("invoice #", no_wrap=True)
    table.add_column("date", no_wrap=True)
    table.add_column("vendor", max_width=24, overflow="ellipsis", min_width=8)
    table.add_column("total", justify="right", no_wrap=True)
    table.add_column("time", justify="right", no_wrap=True)
    notes = any(outcome.note for outcome in outcomes)
    if notes:
        table.add_column("note", overflow="fold")
    for outcome in outcomes:
        table.add_row(*_row(outcome)[: None if notes else -1])
    return table


def _row(outcome: Outcome) -> list[str | Text]:
    fields = outcome.fields
    status = Text(outcome.status if outcome.done else f"{outcome.status}…", style=STYLES.get(outcome.status, "dim"))
    mark = "" if outcome.expected is None else (" ✓" if outcome.as_expected else " ✗")
    return [
        outcome.label,
        status + Text(mark, style="green" if outcome.as_expected else "red"),
        str(fields.get("invoice_number") or ""),
        str(fields.get("invoice_date") or ""),
        str(fields.get("vendor") or ""),
        _money(fields.get("total"), fields.get("currency")),
        "" if outcome.latency_s is None else f"{outcome.latency_s:.1f}s",
        outcome.note or "",
    ]


def _money(total: Any, currency: Any) -> str:
    if not isinstance(total, int | float):
        return ""
    return f"{total:,.2f} {currency or ''}".rstrip()


def summary_table(totals: Mapping[str, Any]) -> Table:
    """The batch totals as a two-column grid, printed under the outcomes table."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    elapsed = totals.get("elapsed_s")
    grid.add_row("jobs", f"{totals['jobs']}" + (f" in {elapsed:.1f}s" if elapsed is not None else ""))
    grid.add_row("by status", _join_counts(totals["by_status"]))
    grid.add_row("latency", f"p50 {_seconds(totals['latency_p50_s'])} · p95 {_seconds(totals['latency_p95_s'])}")
    if totals.get("api_calls") is not None:
        per_job = totals["api_calls_per_job"]
        grid.add_row("Extend API calls", f"{totals['api_calls']} ({per_job:.1f} per job)")
    return grid


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}s"
