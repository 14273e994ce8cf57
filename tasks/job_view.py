"""One job as the dashboard's Job page shows it: its request (per-run secrets never), its timeline, its Extend
run (the published result), the fields the run extracted, and its error with its kind.

The timeline comes from the job's record (enqueued, run created, finished), the run's own times, and the job's
entries in the events stream (progress, review outcome, dashboard actions) among those from its start on and the
newest (where a recent review outcome or action is): at most `stream_entries` entries of each, never the whole
stream.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from typing import Any

from celery import Celery

from extendq.worker.joblog import timestamp_of
from extendq.worker.models import job_outcome
from extendq.worker.records import JobRecord
from extendq.worker.review import review_status
from extendq.worker.store import RedisJobStore

__all__ = ["extract_outputs", "extracted_fields", "job_view"]

_SHOWN_TEXT = 2000  # characters of a raw-text input shown
_MAX_FIELDS = 200


def job_view(
    store: RedisJobStore, app: Celery, job_id: str, *, stream_entries: int = 2000, clock: Any = time.time
) -> dict[str, Any] | None:
    """The job's page data, or None when no record of it is left."""
    record = store.load(job_id)
    if record is None:
        return None
    run = _published_run(app, record)
    return {
        "job_id": job_id,
        "state": record.state.value,
        "outcome": job_outcome(record.state.value, record.run_status) if record.finished else None,
        "request": shown_request(record),
        "tenant": record.request.tenant,
        "workflow_id": record.request.workflow.id,
        "run_id": record.run_id,
        "run_status": record.run_status,
        "run": _run_summary(run),
        "fields": extracted_fields(run) if run else {},
        "error": _error(app, record),
        "review": review_status(store, job_id),
        "checks": record.checks,
        "enqueued_at": record.enqueued_at,
        "finished_at": record.finished_at,
        "age_s": max((record.finished_at or clock()) - record.enqueued_at, 0.0),
        "cancel_requested": record.cancel_requested,
        "timeline": _timeline(store, record, run, stream_entries),
    }


def shown_request(record: JobRecord) -> dict[str, Any]:
    """The request as submitted, without its per-run secrets (sealed or not) and with long raw text cut."""
    wire = record.request.wire()
    wire.pop("secrets", None)
    file = wire.get("file")
    if isinstance(file, dict) and isinstance(file.get("text"), str) and len(file["text"]) > _SHOWN_TEXT:
        file["text"] = file["text"][:_SHOWN_TEXT] + f"… ({len(file['text'])} characters)"
    return wire


def extract_outputs(run: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The output values of the run's EXTRACT steps (`stepRuns[i].result.extractRun.output.value`), in order."""
    for step in run.get("stepRuns") or []:
        result = step.get("result") if isinstance(step, dict) else None
        extract = result.get("extractRun") if isinstance(result, dict) else None
        output = extract.get("output") if isinstance(extract, dict) else None
        value = output.get("value") if isinstance(output, dict) else None
        if isinstance(value, dict):
            yield value


def extracted_fields(run: dict[str, Any]) -> dict[str, str]:
    """Every field the run's extraction steps output, flattened (`line_items.0.amount`), as text."""
    fields: dict[str, str] = {}
    for value in extract_outputs(run):
        _flatten("", value, fields)
    if not fields and isinstance(run.get("output"), dict):
        _flatten("", run["output"], fields)
    return dict(list(fields.items())[:_MAX_FIELDS])


def _flatten(prefix: str, value: Any, into: dict[str, str]) -> None:
    if isinstance(value, dict) and value:
        for name, inner in value.items():
            _flatten(f"{prefix}.{name}" if prefix else str(name), inner, into)
    elif isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        for index, inner in enumerate(value):
            _flatten(f"{prefix}.{index}", inner, into)
    elif value is not None:
        into[prefix] = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _published_run(app: Celery, record: JobRecord) -> dict[str, Any] | None:
    if not record.finished or record.state.value != "SUCCESS":
        return None
    result = app.AsyncResult(record.job_id)
    run = result.result if result.state == "SUCCESS" else None
    return run if isinstance(run, dict) else None


def _run_summary(run: dict[str, Any] | None) -> dict[str, Any] | None:
    if run is None:
        return None
    keys = ("id", "status", "dashboardUrl", "createdAt", "startTime", "endTime", "reviewedBy", "rejectionNote")
    summary = {key: run[key] for key in keys if run.get(key) not in (None, "")}
    workflow = run.get("workflow")
    if isinstance(workflow, dict):
        summary["workflow"] = workflow.get("name") or workflow.get("id")
    return summary


def _error(app: Celery, record: JobRecord) -> dict[str, str] | None:
    if record.error is None:
        return None
    result = app.AsyncResult(record.job_id)
    message = str(result.result) if result.state == "FAILURE" and result.result is not None else ""
    return {"kind": record.error, "message": message}


def _timeline(
    store: RedisJobStore, record: JobRecord, run: dict[str, Any] | None, entries: int
) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = [{"at": record.enqueued_at, "event": "enqueued", "detail": ""}]
    if record.submitted_at is not None:
        events.append({"at": record.submitted_at, "event": "run created", "detail": record.run_id or ""})
    for name, key in (("run started on Extend", "startTime"), ("run ended on Extend", "endTime")):
        if run is not None and (at := timestamp_of(run.get(key))) is not None:
            events.append({"at": at, "event": name, "detail": ""})
    events += _stream_events(store, record, entries)
    if record.finished_at is not None:
        ended = job_outcome(record.state.value, record.run_status)
        events.append(
            {"at": record.finished_at, "event": "finished", "detail": f"{ended} {record.error or ''}".strip()}
        )
    return sorted(events, key=lambda event: event["at"])


def _stream_events(store: RedisJobStore, record: JobRecord, entries: int) -> list[dict[str, Any]]:
    """The job's own entries in the events stream (not its finish, which the record holds): among the first
    `entries` from its start, and the newest `entries` back to its start."""
    client, key = store.client, store.keys.events
    start = int(record.enqueued_at * 1000)
    forward: Any = client.xrange(key, start, "+", count=entries)
    backward: Any = client.xrevrange(key, "+", start, count=entries)
    read: list[Any] = [*(forward or []), *(backward or [])]
    seen: set[str] = set()
    events = []
    for entry_id, fields in read:
        if entry_id in seen or fields.get("job_id") != record.job_id or fields.get("state") in ("SUCCESS", "FAILURE"):
            continue
        seen.add(entry_id)
        events.append(_stream_event(str(entry_id), fields))
    return events


def _stream_event(entry_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    at = int(entry_id.partition("-")[0]) / 1000
    if fields.get("action"):
        detail = f"by {fields.get('by', '?')}" + (f": {fields['detail']}" if fields.get("detail") else "")
        return {"at": at, "event": f"{fields['action']} (dashboard)", "detail": detail}
    state, status = fields.get("state", ""), fields.get("status", "")
    name = "review outcome" if state == "REVIEWED" else "progress"
    return {"at": at, "event": name, "detail": status or state}
