"""Job records: how a job is held in its Redis hash (short field names, compact pieces), and read back."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from extendq.worker.models import JobRequest, JobState, job_outcome

# Field names in the job hash are short: 100k jobs in flight must fit in a few hundred MB.
_F_REQUEST, _F_SECRETS, _F_STATE = "req", "sec", "st"
_F_RUN, _F_RUN_STATUS, _F_CHECKS, _F_ATTEMPTS = "run", "rst", "chk", "att"
_F_ENQUEUED, _F_SUBMITTED, _F_POSTING, _F_DEADLINE = "enq", "sub", "post", "dl"
_F_CANCEL, _F_CANCEL_SENT, _F_FILE, _F_FINISHED, _F_ERROR = "cxl", "cxs", "fid", "fin", "err"
_F_TOKEN, _F_BATCH, _F_BATCH_TASK, _F_LOOKUP, _F_BATCH_LOOKUP = "tok", "xb", "bt", "lk", "blk"
# Redis keeps a small hash as one compact listpack (a third of the memory of a hash table) only while every
# value fits in `hash-max-listpack-value`, 64 bytes by default; the request and sealed secrets (ASCII) are
# longer, so they are stored in pieces of that size: `req`, `req1`, `req2`, ...
_PIECE = 64


@dataclass(frozen=True)
class EncodedResult:
    """A job's result encoded as the result backend stores it, for a store script to write in its own step."""

    key: str
    value: str
    ttl_s: int


@dataclass
class JobLock:
    """A job's lock as its holder knows it: released by the last write of a step, or on leaving the step."""

    token: str
    released: bool = False


@dataclass
class JobRecord:
    """A job as Redis holds it."""

    job_id: str
    request: JobRequest
    state: JobState
    enqueued_at: float
    secrets: str | None = None
    run_id: str | None = None
    run_status: str | None = None
    checks: int = 0
    attempts: int = 0
    submitted_at: float | None = None
    posting_since: float | None = None
    deadline_at: float | None = None
    cancel_requested: bool = False
    cancel_sent: bool = False
    file_id: str | None = None
    finished_at: float | None = None
    error: str | None = None
    held_tokens: dict[str, float] = field(default_factory=dict)
    extend_batch_id: str | None = None
    # The batch task that takes this job to Extend (`extendq.run_batch`); cleared when the job goes on alone.
    batch_task: str | None = None
    # Where a lookup for a lost create's run got to (`worker.landed`), while it is under way.
    lookup: str | None = None
    # Where a batch member's look through its batch got to (`worker.batch_lookup`), while it waits for a token.
    batch_lookup: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # Not stored: what the step holding the job knows (its lock, and the job's aliases when read with it), and
    # `fresh`: recorded by this step as SUBMITTING, posting since its creation, with nothing posted yet.
    lock: JobLock | None = field(default=None, repr=False, compare=False)
    aliases: list[str] | None = field(default=None, repr=False, compare=False)
    fresh: bool = field(default=False, repr=False, compare=False)

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    def progress(self) -> dict[str, Any]:
        """What a producer sees in `AsyncResult.info` while the job is in flight."""
        return {
            "job_id": self.job_id,
            "job_key": self.request.job_key,
            "workflow_id": self.request.workflow.id,
            "run_id": self.run_id,
            "run_status": self.run_status,
            "checks": self.checks,
            "attempts": self.attempts,
            "enqueued_at": self.enqueued_at,
            "submitted_at": self.submitted_at,
        }


_FIELDS = {
    "state": _F_STATE,
    "run_id": _F_RUN,
    "run_status": _F_RUN_STATUS,
    "checks": _F_CHECKS,
    "attempts": _F_ATTEMPTS,
    "submitted_at": _F_SUBMITTED,
    "posting_since": _F_POSTING,
    "deadline_at": _F_DEADLINE,
    "cancel_requested": _F_CANCEL,
    "cancel_sent": _F_CANCEL_SENT,
    "file_id": _F_FILE,
    "secrets": _F_SECRETS,
    "error": _F_ERROR,
    "held_tokens": _F_TOKEN,
    "extend_batch_id": _F_BATCH,
    "batch_task": _F_BATCH_TASK,
    "lookup": _F_LOOKUP,
    "batch_lookup": _F_BATCH_LOOKUP,
}


def _encode_new(
    request: JobRequest, *, now: float, secrets: str | None, batch_task: str | None = None
) -> dict[str, str]:
    wire = request.wire()
    wire.pop("secrets", None)  # kept sealed, in their own field, and dropped when the job ends
    fields = pieces(_F_REQUEST, json.dumps(wire, separators=(",", ":")))  # ASCII: one byte per character
    fields.update({_F_STATE: JobState.QUEUED.value, _F_ENQUEUED: repr(now)})
    if request.deadline_s is not None:
        fields[_F_DEADLINE] = repr(now + request.deadline_s)
    if secrets:
        fields.update(pieces(_F_SECRETS, secrets))
    if batch_task:
        fields[_F_BATCH_TASK] = batch_task
    return fields


def pieces(name: str, value: str) -> dict[str, str]:
    """An ASCII value as hash fields of at most `_PIECE` characters: `name`, `name1`, `name2`, ..."""
    count = max(1, -(-len(value) // _PIECE))
    return {f"{name}{index or ''}": value[index * _PIECE : (index + 1) * _PIECE] for index in range(count)}


def joined(raw: dict[Any, Any], name: str) -> str | None:
    """A value stored by `pieces`, from the job hash's fields; None when absent."""
    first = raw.get(name)
    if first is None:
        return None
    parts, index = [first], 1
    while (part := raw.get(f"{name}{index}")) is not None:
        parts.append(part)
        index += 1
    return "".join(parts)


def summary(job_id: str, raw: dict[Any, Any]) -> dict[str, Any] | None:
    """A job as lists show it, read from its hash's fields without building the request model: its state, outcome
    (None while in flight), run, error, workflow, tenant, replay_of, metadata and times; None when its record is
    gone (expired since an index named it)."""
    raw_request = joined(raw, _F_REQUEST)
    if raw_request is None:
        return None
    request = json.loads(raw_request)
    workflow = request.get("workflow") or {}
    state, run_status, finished, enqueued = (
        raw.get(name) for name in (_F_STATE, _F_RUN_STATUS, _F_FINISHED, _F_ENQUEUED)
    )
    return {
        "job_id": job_id,
        "state": state,
        "outcome": job_outcome(str(state), run_status) if finished is not None else None,
        "run_id": raw.get(_F_RUN),
        "run_status": run_status,
        "error": raw.get(_F_ERROR) or None,
        "workflow_id": workflow.get("id") if isinstance(workflow, dict) else workflow,
        "tenant": request.get("tenant"),
        "replay_of": request.get("replay_of"),
        "metadata": request.get("metadata") or {},
        "enqueued_at": float(enqueued) if enqueued else None,
        "finished_at": float(finished) if finished is not None else None,
    }


def _encode_value(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _flatten(mapping: dict[str, Any]) -> list[Any]:
    return [item for pair in mapping.items() for item in pair]


def _decode(job_id: str, raw: dict[Any, Any]) -> JobRecord:
    get = raw.get
    number = _optional_float
    return JobRecord(
        job_id=job_id,
        request=JobRequest.model_validate(json.loads(joined(raw, _F_REQUEST) or "{}")),
        state=JobState(get(_F_STATE) or JobState.QUEUED.value),
        enqueued_at=float(get(_F_ENQUEUED) or 0),
        secrets=joined(raw, _F_SECRETS),
        run_id=get(_F_RUN),
        run_status=get(_F_RUN_STATUS),
        checks=int(get(_F_CHECKS) or 0),
        attempts=int(get(_F_ATTEMPTS) or 0),
        submitted_at=number(get(_F_SUBMITTED)),
        posting_since=number(get(_F_POSTING)),
        deadline_at=number(get(_F_DEADLINE)),
        cancel_requested=get(_F_CANCEL) == "1",
        cancel_sent=get(_F_CANCEL_SENT) == "1",
        file_id=get(_F_FILE),
        finished_at=number(get(_F_FINISHED)),
        error=get(_F_ERROR) or None,
        held_tokens=json.loads(get(_F_TOKEN) or "{}"),
        extend_batch_id=get(_F_BATCH),
        batch_task=get(_F_BATCH_TASK),
        lookup=get(_F_LOOKUP),
        batch_lookup=get(_F_BATCH_LOOKUP),
    )


def _optional_float(value: str | None) -> float | None:
    return None if value in (None, "") else float(value)


def new_record(job_id: str, request: JobRequest, *, now: float, secrets: str | None) -> JobRecord:
    """The record `RedisJobStore.create_locked` writes for a new job, as `load` would read it back (but for its
    posting mark: nothing was posted yet, so the create need not look for a run that landed)."""
    deadline_at = None if request.deadline_s is None else now + request.deadline_s
    stored = request.model_copy(update={"secrets": None})  # kept sealed in the record, not in its request
    record = JobRecord(job_id, stored, JobState.SUBMITTING, now, secrets=secrets, deadline_at=deadline_at)
    record.fresh = True
    return record
