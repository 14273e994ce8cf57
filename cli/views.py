"""What the read commands show: `status` rows, `result`'s run, and `watch`'s live view of the events stream.

The events stream (`Keys.events`) gets one entry per progress change and one per finished job, with
the fields job_id, run_id, workflow_id, state (RUNNING, SUCCESS, FAILURE), status (the run's: `watch`
shows it as run_status) and error; a watched NEEDS_REVIEW run adds one more, state REVIEWED, once it is
approved or rejected. An action taken in the dashboard (cancel, retry) adds one with state ACTION and the fields
action, by and detail; `watch` passes those on with --json and leaves them out of its view.
"""

from __future__ import annotations

import json
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import redis
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from extendq.cli.console import PROCESSED, extracted_fields, live_view
from extendq.cli.states import FINISHED, RUN_STATUS_STYLES, STATE_STYLES, job_state
from extendq.errors import JobFailed
from extendq.worker.joblog import ACTION_STATE
from extendq.worker.keys import Keys
from extendq.worker.models import JobState
from extendq.worker.review import REVIEWED, review_status

if TYPE_CHECKING:
    from celery import Celery

    from extendq.worker.store import RedisJobStore

__all__ = [
    "EventFeed",
    "emit_json",
    "ended_badly",
    "finished_table",
    "job_status",
    "queued_status",
    "redact",
    "run_grid",
    "show_cancelled",
    "show_result",
    "status_table",
    "usage_table",
]

_BLOCK_MS = 250
_SHOWN = 10


class EventFeed:
    """Reads new events from the stream and keeps what the live view shows."""

    def __init__(self, client: redis.Redis, keys: Keys, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._redis = client
        self._keys = keys
        self._clock = clock
        self.active: dict[str, dict[str, str]] = {}
        self.finished: deque[dict[str, Any]] = deque(maxlen=_SHOWN)

    def run(
        self,
        *,
        console: Console | None,
        emit: Callable[[dict[str, Any]], None],
        count: int | None = None,
        timeout_s: float | None = None,
    ) -> int:
        """Follow new events until `count` jobs finished or `timeout_s` passed; how many finished.

        With a console, a live view is drawn on it; without one, every event goes to `emit` as it comes.
        """
        last = self._last_id()
        self._remember_recent()
        deadline = None if timeout_s is None else self._clock() + timeout_s
        seen = 0
        with live_view(console) if console is not None else nullcontext() as live:
            _show(live, self)
            while (count is None or seen < count) and (deadline is None or self._clock() < deadline):
                for event in self._read(last, deadline):
                    last, seen = event["id"], seen + self._apply(event)
                    if live is None:
                        emit(event)
                    if seen == count:
                        break
                _show(live, self)
        return seen

    def _last_id(self) -> str:
        newest: list[Any] = self._redis.xrevrange(self._keys.events, count=1) or []
        return str(newest[0][0]) if newest else "0-0"

    def _remember_recent(self) -> None:
        """Fill 'last finished' from the stream's tail, so the view is not empty at first."""
        entries: list[Any] = self._redis.xrevrange(self._keys.events, count=200) or []
        for entry_id, fields in reversed(entries):
            if fields.get("state") in FINISHED:
                self.finished.appendleft(_event(entry_id, fields))

    def _read(self, last: str, deadline: float | None) -> list[dict[str, Any]]:
        block = _BLOCK_MS if deadline is None else max(1, min(_BLOCK_MS, int((deadline - self._clock()) * 1000)))
        batches: Any = self._redis.xread({self._keys.events: last}, count=100, block=block) or []
        return [_event(entry_id, fields) for _, entries in batches for entry_id, fields in entries]

    def _apply(self, event: dict[str, Any]) -> int:
        """Update the view's state; 1 when the event is a job finishing."""
        job_id = event.get("job_id", "")
        if event.get("state") == ACTION_STATE:  # someone's cancel or retry in the dashboard: not a change of the job
            return 0
        if event.get("state") == REVIEWED:  # a finished job's later review outcome: shown, not counted again
            self.finished.appendleft(event)
            return 0
        if event.get("state") in FINISHED:
            self.active.pop(job_id, None)
            self.finished.appendleft(event)
            return 1
        self.active[job_id] = event
        return 0

    def in_flight(self) -> int:
        """Jobs scheduled in Redis right now (every unfinished job is)."""
        return int(self._redis.zcard(self._keys.due))

    def view(self) -> Group:
        """The live view: jobs in flight (those seen running since the start) and the last finished."""
        running = Table(title=f"in flight: {self.in_flight()} jobs", title_justify="left", header_style="bold")
        finished = Table(title="last finished", title_justify="left", header_style="bold")
        for table in (running, finished):
            for name in ("job", "workflow", "run id", "state", "run status", "error"):
                table.add_column(name, overflow="fold")
        for event in list(self.active.values())[-_SHOWN:]:
            running.add_row(*_cells(event))
        for event in self.finished:
            finished.add_row(*_cells(event))
        return Group(running, finished)


def _show(live: Live | None, feed: EventFeed) -> None:
    if live is not None:
        live.update(feed.view())


def ended_badly(row: Mapping[str, Any]) -> bool:
    """A `job_status` row of a job that failed, or whose run ended in another status than PROCESSED."""
    state = row["state"]
    return bool(state == JobState.FAILURE or (state == JobState.SUCCESS and row["run_status"] != PROCESSED))


def _event(entry_id: Any, fields: dict[str, Any]) -> dict[str, Any]:
    """A stream entry as JSON: its id, when it was added (from the id), and its fields (`status` as `run_status`)."""
    entry = str(entry_id)
    named = {_EVENT_NAMES.get(str(k), str(k)): str(v) for k, v in fields.items()}
    return {"id": entry, "at": int(entry.split("-", 1)[0]) / 1000, **named}


# The stream's `status` is the run's: shown under the name every command gives it.
_EVENT_NAMES = {"status": "run_status"}


def _cells(event: dict[str, Any]) -> list[str | Text]:
    state = event.get("state", "")
    return [
        event.get("job_id", ""),
        event.get("workflow_id", ""),
        event.get("run_id", ""),
        Text(state, style=STATE_STYLES.get(state, "")),
        Text(event.get("run_status", ""), style=RUN_STATUS_STYLES.get(event.get("run_status", ""), "")),
        event.get("error", ""),
    ]


def job_status(app: Celery, store: RedisJobStore, job_id: str) -> dict[str, Any] | None:
    """One job's state from its `AsyncResult` and its job record (what `extendq status` shows); None if neither has it.

    `state` is the job's (`JobState`); `run_status` is its Extend run's, under its own name.
    """
    result = app.AsyncResult(job_id)
    celery_state, value = result.state, result.info
    record = store.load(job_id)
    state = job_state(celery_state, record.state if record is not None else None)
    if state is None:
        return None
    row: dict[str, Any] = dict.fromkeys(("workflow_id", "run_id", "run_status", "checks", "attempts", "error"))
    row = {"job_id": job_id, "state": state.value, **row, "message": None}
    if record is not None:
        row.update(record.progress(), error=record.error)
        row.update(tenant=record.request.tenant, replay_of=record.request.replay_of)
    if isinstance(value, dict) and celery_state != "SUCCESS":
        row.update({key: item for key, item in value.items() if key in row and key != "state" and item is not None})
    if celery_state == "SUCCESS" and isinstance(value, dict):
        row.update(run_id=value.get("id"), run_status=value.get("status"))
    if isinstance(value, BaseException):
        row.update(error=getattr(value, "kind", type(value).__name__), message=str(value))
        row["run_id"] = row["run_id"] or getattr(value, "run_id", None)
    row["review_status"] = review_status(store, job_id)
    return {key: row.get(key) for key in ("job_id", "state", *_STATUS_KEYS)}


def queued_status(job_id: str) -> dict[str, Any]:
    """The `job_status` row of a job whose message waits in the broker, not yet recorded by a worker."""
    return {"job_id": job_id, "state": JobState.QUEUED.value, **dict.fromkeys(_STATUS_KEYS)}


_STATUS_KEYS = (
    "workflow_id",
    "run_id",
    "run_status",
    "checks",
    "attempts",
    "error",
    "message",
    "review_status",
    "tenant",
    "replay_of",
)


def status_table(rows: Sequence[Mapping[str, Any]]) -> Table:
    """`extendq status`: one row per job (review and replay columns only when a job has one)."""
    errors = [f"{row['error']}: {row['message']}" if row.get("message") else row.get("error") for row in rows]
    columns = {
        "job": [row["job_id"] for row in rows],
        "state": [row["state"] for row in rows],
        "workflow": [row["workflow_id"] for row in rows],
        "run id": [row["run_id"] for row in rows],
        "run status": [row["run_status"] for row in rows],
        "checks": [row["checks"] for row in rows],
        "error": errors,
        "review": [row.get("review_status") for row in rows],
        "replay of": [row.get("replay_of") for row in rows],
    }
    styles = [_ROW_STYLES.get(row["state"]) for row in rows]
    return _table(columns, keep=("job", "state", "workflow", "run id", "run status", "checks", "error"), styles=styles)


_ROW_STYLES = {JobState.FAILURE.value: "red", JobState.SUCCESS.value: "green"}
# Words and numbers keep one line; ids, names and messages fold when the terminal is narrow.
_WHOLE = frozenset({"finished", "state", "run status", "checks", "review"})


def _table(
    columns: Mapping[str, Sequence[Any]],
    *,
    keep: Sequence[str],
    styles: Sequence[str | None],
    caption: str | None = None,
) -> Table:
    """A table of `columns` (name -> cells); a column not in `keep` is shown only when one of its cells has a value."""
    shown = {name: cells for name, cells in columns.items() if name in keep or any(c not in (None, "") for c in cells)}
    table = Table(header_style="bold", caption=caption)
    for name in shown:
        table.add_column(name, no_wrap=name in _WHOLE, overflow="fold")
    for cells, style in zip(zip(*shown.values(), strict=True), styles, strict=True):
        table.add_row(*("" if cell is None else str(cell) for cell in cells), style=style)
    return table


def finished_table(rows: Sequence[Mapping[str, Any]]) -> Table:
    """`extendq list`: finished jobs, newest first, with the state each ended in and its run's status."""
    columns = {
        "finished": [time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(row["finished_at"]))) for row in rows],
        **{name: [row[key] for row in rows] for name, key in _LISTED.items()},
    }
    styles = [RUN_STATUS_STYLES.get(row["run_status"]) if row["state"] == JobState.SUCCESS else "red" for row in rows]
    return _table(
        columns, keep=("finished", "job", "state", "workflow"), styles=styles, caption=_count(len(rows), "job")
    )


_LISTED = {
    "job": "job_id",
    "state": "state",
    "run status": "run_status",
    "workflow": "workflow_id",
    "tenant": "tenant",
    "run id": "run_id",
    "error": "error",
    "replay of": "replay_of",
}


def _count(number: int, noun: str) -> str:
    """`1 job`, `2 jobs`."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _them(number: int) -> str:
    return "it" if number == 1 else "them"


def run_grid(job_id: str, run: Mapping[str, Any]) -> Table:
    """`extendq result`: the terminal run, key by key, with its extracted fields."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    workflow = run.get("workflow")
    status = str(run.get("status"))
    grid.add_row("job", job_id)
    grid.add_row("state", Text(JobState.SUCCESS.value, style=STATE_STYLES[JobState.SUCCESS.value]))
    grid.add_row("run", str(run.get("id")))
    grid.add_row("workflow", str(workflow.get("id") if isinstance(workflow, dict) else workflow))
    grid.add_row("run status", Text(status, style=RUN_STATUS_STYLES.get(status, "")))
    if run.get("failureReason"):
        grid.add_row("failure", f"{run['failureReason']}: {run.get('failureMessage') or ''}")
    for name, value in extracted_fields(run).items():
        grid.add_row(name.replace("_", " "), str(value))
    usage = run.get("usage")
    if isinstance(usage, dict) and usage.get("credits") is not None:
        grid.add_row("credits", str(usage["credits"]))
    grid.add_row("time", f"{run.get('startTime') or '-'} → {run.get('endTime') or '-'}")
    return grid


def redact(url: str) -> str:
    """`url` with its password replaced by `***`, fit for an error message."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)).geturl()


def emit_json(data: Any) -> None:
    """Print `data` as indented JSON on stdout (never through rich, which would wrap long lines)."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def show_result(job_id: str, outcome: Any, *, state: JobState, as_json: bool, console: Console) -> bool | None:
    """Print a job's `AsyncResult`: True when its run ended PROCESSED, False when it ended otherwise, None in flight.

    `state`: the job's state, shown while it is in flight.
    """
    if outcome.state == "SUCCESS" and isinstance(outcome.result, dict):
        run = outcome.result
        if as_json:
            emit_json(run)
        else:
            console.print(run_grid(job_id, run))
        return bool(run.get("status") == PROCESSED)
    if outcome.ready():
        error = outcome.result
        kind = error.kind if isinstance(error, JobFailed) else type(error).__name__
        run_id = error.run_id if isinstance(error, JobFailed) else None
        body: dict[str, str | None] = {"job_id": job_id, "state": JobState.FAILURE.value, "error": kind}
        body.update(message=str(error), run_id=run_id)
        if as_json:
            emit_json(body)
        else:
            sys.stderr.write(f"Error: job {job_id} failed ({kind}): {error}\n")
        return False
    info = outcome.info if isinstance(outcome.info, dict) else {}
    if as_json:
        emit_json({"job_id": job_id, "state": state.value, "run_status": info.get("run_status"), "info": info})
    else:
        sys.stderr.write(f"job {job_id} is still {state.value} (run status {info.get('run_status') or '-'})\n")
    return None


def show_cancelled(answers: Mapping[str, bool | None], *, timeout_s: float, as_json: bool) -> None:
    """Print what the workers answered to cancel requests (None: no answer in time)."""
    if as_json:
        emit_json([{"job_id": job_id, "cancelled": cancelled} for job_id, cancelled in answers.items()])
        return
    for job_id, cancelled in answers.items():
        if cancelled is None:
            said = f"cancel sent; no worker answered within {timeout_s:g}s"
        else:
            said = "cancelling" if cancelled else "not cancelled: unknown or already finished"
        sys.stdout.write(f"{job_id}  {said}\n")


def usage_table(report: Mapping[str, Any]) -> Table:
    """`extendq usage`: credits and runs per day, by workflow and by usage tag, and the total."""
    pending = int(report.get("pending_runs", 0))
    caption = _count(int(report["total"]["runs"]), "finished run")
    if pending:
        caption += f"; {_count(pending, 'more finished run')} not counted yet (the next roll-up adds {_them(pending)})"
    table = Table(header_style="bold", caption=caption)
    table.add_column("day")
    table.add_column("credits", justify="right")
    table.add_column("runs", justify="right")
    table.add_column("by workflow", overflow="fold")
    table.add_column("by tenant", overflow="fold")
    table.add_column("by usage tag", overflow="fold")
    for row in report["days"]:
        table.add_row(*_usage_cells(row["day"], row))
    table.add_section()
    table.add_row(*_usage_cells("total", report["total"]), style="bold")
    return table


def _usage_cells(label: str, totals: Mapping[str, Any]) -> list[str]:
    def parts(by: Mapping[str, Mapping[str, Any]]) -> str:
        return ", ".join(f"{name} {part['credits']:g}" for name, part in sorted(by.items()))

    by = [parts(totals.get(kind, {})) for kind in ("by_workflow", "by_tenant", "by_tag")]
    return [label, f"{totals['credits']:g}", str(totals["runs"]), *by]
