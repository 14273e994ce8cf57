"""Render runs and files as Extend's wire objects (camelCase, nullable fields sent as null).

Renderings are cached on the run per state (status + time of the last transition), so a poll of
an unchanged run costs a dictionary lookup.
"""

from __future__ import annotations

from typing import Any

from extendq.emulator.extraction import SCHEMA
from extendq.emulator.files import FileRecord
from extendq.emulator.runs import RunRecord, RunState, state_at
from extendq.emulator.statuses import CANCELLED, CANCELLING, FAILED, PENDING, PROCESSING
from extendq.emulator.wire import DASHBOARD, dumps, iso, iso_or_none

# Workflows of a profile are presented as created once, at a fixed moment.
WORKFLOW_EPOCH = iso(1767258000.0)


def run_json(run: RunRecord, at: float) -> bytes:
    """The full WorkflowRun as JSON bytes at time `at` (cached per state)."""
    state = state_at(run, at)
    key = ("json", state.key)
    cached = run.cache.get("json")
    if cached is not None and cached[0] == key:
        return cached[1]  # type: ignore[no-any-return]
    body = dumps(run_body(run, state))
    run.cache["json"] = (key, body)
    return body


def run_body(run: RunRecord, state: RunState) -> dict[str, Any]:
    """The full WorkflowRun object (retrieve, create, update, cancel, webhooks)."""
    cached = run.cache.get("full")
    if cached is not None and cached[0] == state.key:
        return cached[1]  # type: ignore[no-any-return]
    body = {**_common(run, state), **_run_details(run, state)}
    run.cache["full"] = (state.key, body)
    return body


def summary_body(run: RunRecord, state: RunState) -> dict[str, Any]:
    """The WorkflowRunSummary object of list responses."""
    cached = run.cache.get("summary")
    if cached is not None and cached[0] == state.key:
        return cached[1]  # type: ignore[no-any-return]
    usage = _usage(run, state)
    body = {
        **_common(run, state),
        "createdAt": iso(run.created_at),
        "updatedAt": iso(state.updated_at),
        "usage": None if usage is None else {"credits": usage["credits"], "totalCredits": usage["totalCredits"]},
    }
    run.cache["summary"] = (state.key, body)
    return body


def admin_body(run: RunRecord, at: float, *, with_secrets: bool = False) -> dict[str, Any]:
    """The full run plus `createdAt`/`updatedAt`/`committedAt` (and `secrets` when asked), for the admin API."""
    state = state_at(run, at)
    body = {
        **run_body(run, state),
        "createdAt": iso(run.created_at),
        "updatedAt": iso(state.updated_at),
        "committedAt": iso(run.committed_at),
    }
    if with_secrets:
        body["secrets"] = run.secrets
    return body


def _common(run: RunRecord, state: RunState) -> dict[str, Any]:
    review = state.review
    return {
        "object": "workflow_run",
        "id": run.id,
        "status": state.status,
        "workflow": {
            "object": "workflow",
            "id": run.workflow_id,
            "name": run.spec.name,
            "createdAt": WORKFLOW_EPOCH,
            "updatedAt": WORKFLOW_EPOCH,
            "createdBy": None,
        },
        "workflowVersion": {
            "object": "workflow_version",
            "id": f"workflow_version_{run.workflow_id.removeprefix('workflow_')}_{run.version}",
            "version": run.version,
            "name": None if run.version == "draft" else f"Version {run.version}",
            "createdAt": WORKFLOW_EPOCH,
            "createdBy": None,
        },
        "dashboardUrl": f"{DASHBOARD}/workflows/{run.id}",
        "batchId": run.batch_id,
        "files": [f.summary for f in run.files],
        "initialRunAt": iso(run.created_at),
        "startTime": iso_or_none(state.started_at),
        "endTime": iso_or_none(state.ended_at),
        "reviewedByUser": review.reviewer if review else None,
        "reviewedAt": iso(review.at) if review else None,
        "rejectionNote": review.note if review and not review.approved else None,
    }


def _run_details(run: RunRecord, state: RunState) -> dict[str, Any]:
    failed = state.status == FAILED
    return {
        "metadata": run.metadata,
        "failureReason": run.failure_reason if failed else None,
        "failureMessage": run.failure_message if failed else None,
        "reviewed": state.review is not None,
        "stepRuns": _step_runs(run, state),
        "usage": _usage(run, state),
    }


def _usage(run: RunRecord, state: RunState) -> dict[str, Any] | None:
    if state.ended_at is None:
        return None
    credits = 0.0 if state.status == CANCELLED else run.credits
    breakdown = (
        [] if state.status == CANCELLED else [{"object": "extract_run", "id": run.child_ids[0], "credits": credits}]
    )
    return {"credits": credits, "totalCredits": credits, "breakdown": breakdown}


def _step_status(state: RunState) -> str | None:
    if state.started_at is None:
        return None
    if state.status in (CANCELLING, CANCELLED):
        return CANCELLED if state.status == CANCELLED else PROCESSING
    if state.status == PROCESSING:
        return PROCESSING
    return FAILED if state.status == FAILED else "PROCESSED"


def _step_runs(run: RunRecord, state: RunState) -> list[dict[str, Any]]:
    status = _step_status(state)
    if status is None or state.status == PENDING:
        return []
    extract_id, step_run_id, step_id = run.child_ids
    files = [f.summary for f in run.files]
    return [
        {
            "object": "workflow_step_run",
            "id": step_run_id,
            "workflowRunId": run.id,
            "status": status,
            "stepType": "EXTRACT",
            "step": {"object": "workflow_step", "id": step_id, "name": f"Extract ({run.spec.name})", "type": "EXTRACT"},
            "files": files,
            "result": {"extractRun": _extract_run(run, state, status, files)},
        }
    ]


def _extract_run(run: RunRecord, state: RunState, status: str, files: list[dict[str, Any]]) -> dict[str, Any]:
    extract_id = run.child_ids[0]
    done = status == "PROCESSED"
    output = {"value": run.extraction.value(), "metadata": run.extraction.confidence()} if done else None
    failed = status == FAILED
    usage = _usage(run, state)
    return {
        "object": "extract_run",
        "id": extract_id,
        "status": status,
        "output": output,
        "initialOutput": output,
        "reviewedOutput": output if done and state.review is not None else None,
        "failureReason": run.failure_reason if failed else None,
        "failureMessage": run.failure_message if failed else None,
        "metadata": None,
        "reviewed": state.review is not None,
        "edited": False,
        "config": {"schema": SCHEMA},
        "file": files[0] if files else None,
        "files": files,
        "dashboardUrl": f"{DASHBOARD}/runs/{extract_id}",
        "usage": None if usage is None else {**usage, "breakdown": None},
        "createdAt": iso(state.started_at or run.start_at),
        "updatedAt": iso(state.updated_at),
    }


def file_body(record: FileRecord, *, presigned_url: str | None = None, with_url: bool = False) -> dict[str, Any]:
    """The File object: the summary, plus `presignedUrl` on `GET /files/{id}`."""
    body = {**record.summary, "contents": None}
    if with_url:
        body["presignedUrl"] = presigned_url
    return body
