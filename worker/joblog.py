"""How a job's state changes are told: its log line and its events-stream entry."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from extendq.worker.models import JobState
from extendq.worker.records import JobRecord

log = logging.getLogger("extendq.jobs")
# The state of an events-stream entry that tells of an action someone took (the dashboard's cancel and retry).
ACTION_STATE = "ACTION"
# The job's state after each logged change (`log_change`).
_STATE_AFTER = {
    "enqueued": JobState.QUEUED,
    "submitted": JobState.RUNNING,
    "progress": JobState.RUNNING,
    "finished": JobState.SUCCESS,
    "failed": JobState.FAILURE,
}


def log_change(
    record: JobRecord, status: str, what: str, *, now: float, via: str = "", error: str = "", detail: str = ""
) -> None:
    """The one line of a job's state change; its fields are JSON keys with EXTENDQ_LOG_FORMAT=json."""
    elapsed = round(now - record.enqueued_at, 3)
    fields: dict[str, Any] = {
        "event": what,
        "job_id": record.job_id,
        "run_id": record.run_id or "",
        "workflow_id": record.request.workflow.id,
        "state": _STATE_AFTER.get(what, record.state).value,
        "status": status,
        "elapsed_s": elapsed,
        "checks": record.checks,
    }
    fields.update({name: value for name, value in (("via", via), ("error", error)) if value})
    tail = (f" via={via}" if via else "") + (f" error={error}: {detail}" if error else "")
    log.info(
        "job %s %s run=%s workflow=%s status=%s elapsed=%.2fs%s",
        record.job_id,
        what,
        record.run_id,
        record.request.workflow.id,
        status,
        elapsed,
        tail,
        extra=fields,
    )


def job_event(record: JobRecord, *, state: JobState, status: str, error: str = "") -> dict[str, str]:
    """The events-stream entry for a job's state change."""
    return {
        "job_id": record.job_id,
        "run_id": record.run_id or "",
        "workflow_id": record.request.workflow.id,
        "state": state.value,
        "status": status,
        "error": error,
    }


def time_to_result(run: dict[str, Any], now: float) -> float | None:
    """Seconds from the run's end on Extend (its endTime, else its last update) to `now`, when it says."""
    ended = timestamp_of(run.get("endTime")) or timestamp_of(run.get("updatedAt"))
    return None if ended is None else max(now - ended, 0.0)


def timestamp_of(value: Any) -> float | None:
    """Unix seconds of an ISO 8601 time as Extend writes it (None when it is not one)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def action_event(job_id: str, action: str, *, by: str, detail: str = "") -> dict[str, str]:
    """The events-stream entry of an action taken on a job (`cancel`, `retry`), by whom and with what effect."""
    return {"job_id": job_id, "state": ACTION_STATE, "action": action, "by": by, "detail": detail}
