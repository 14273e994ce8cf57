"""Handlers of the Extend surface: files and workflow runs, with the contract's paths and wire names."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response

from extendq.emulator.errors import bad_request, not_found
from extendq.emulator.faults import scope_fault
from extendq.emulator.files import FileRecord, name_from_url, presigned_url, read_upload, sniff_type
from extendq.emulator.gateway import rate_limited
from extendq.emulator.runs import RunRecord
from extendq.emulator.serialize import file_body, run_json, summary_body
from extendq.emulator.state import Emulator
from extendq.emulator.store import InvalidTransition, RunQuery
from extendq.emulator.validation import FileInput, RunInput, check_metadata_size, parse_batch, parse_create, parse_json
from extendq.emulator.validation import parse_update as parse_update_body
from extendq.emulator.wire import JSON_TYPE, dumps, new_id

_OWN_FILE = re.compile(r"/_emulator/files/(?P<id>file_[^/]+)/content$")
MAX_PAGE = 1000
DEFAULT_PAGE = 10


def _emulator(request: Request) -> Emulator:
    emulator: Emulator = request.app.state.emulator
    return emulator


def json_response(body: Any) -> Response:
    """200 with a compact JSON body."""
    return Response(body if isinstance(body, bytes) else dumps(body), media_type=JSON_TYPE)


def _run(emulator: Emulator, request: Request) -> RunRecord:
    run_id = request.path_params["id"]
    run = emulator.runs.get(run_id)
    if run is None:
        raise not_found("Workflow run", run_id)
    return run


# ---- files -----------------------------------------------------------------------------------


async def upload_file(request: Request) -> Response:
    """POST /files/upload (multipart part `file`) -> File."""
    emulator = _emulator(request)
    async with request.form() as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise bad_request("multipart/form-data with a 'file' part is required")
        content = await upload.read()
        name = upload.filename or "file"
    kind, text, pages = await run_in_threadpool(read_upload, name, content)
    record = emulator.files.add(
        name=name, type_=kind, text=text, at=emulator.clock(), page_count=pages, content=content
    )
    return json_response(file_body(record))


async def get_file(request: Request) -> Response:
    """GET /files/{id} -> File with a presigned download URL (15 minutes)."""
    emulator = _emulator(request)
    record = _file(emulator, request.path_params["id"])
    url = presigned_url(emulator.public_url, record.id, emulator.clock(), emulator.url_key)
    return json_response(file_body(record, presigned_url=url, with_url=True))


async def list_files(request: Request) -> Response:
    """GET /files -> list of FileSummary, newest first unless `sortDir=asc`."""
    emulator = _emulator(request)
    params = request.query_params
    descending = _sort_dir(params.get("sortDir"))
    limit = _page_size(params.get("maxPageSize"))
    after = _cursor(params.get("nextPageToken"))
    needle = (params.get("nameContains") or "").lower()
    rows = sorted(((f.created_at, f.id), f) for f in emulator.files if needle in f.name.lower())
    if descending:
        rows.reverse()
    if after is not None:
        rows = [r for r in rows if (r[0] < after if descending else r[0] > after)]
    page = rows[:limit]
    token = _token(page[-1][0]) if len(rows) > limit and page else None
    return json_response({"object": "list", "data": [f.summary for _, f in page], "nextPageToken": token})


async def delete_file(request: Request) -> Response:
    """DELETE /files/{id} -> {"id"}."""
    emulator = _emulator(request)
    file_id = request.path_params["id"]
    if not emulator.files.delete(file_id):
        raise not_found("File", file_id)
    return json_response({"id": file_id})


def _file(emulator: Emulator, file_id: str) -> FileRecord:
    record = emulator.files.get(file_id)
    if record is None:
        raise not_found("File", file_id)
    return record


# ---- workflow runs ---------------------------------------------------------------------------


async def create_run(request: Request) -> Response:
    """POST /workflow_runs -> WorkflowRun (PENDING or PROCESSING); counts one run against runs/minute.

    A late commit (a fault) holds the run back from the surface; an unknown status replaces its outcome.
    """
    emulator = _emulator(request)
    fault = scope_fault(request.scope)
    run_input = parse_create(parse_json(await request.body()))
    spec = emulator.workflow(run_input.workflow_id)
    _check_file_ids(emulator, run_input)
    retry_after = emulator.limiter.admit_runs(emulator.clock(), 1)
    if retry_after is not None:
        limit = emulator.limiter.runs.limit if emulator.limiter.runs else 0
        raise rate_limited(retry_after, f"{limit} runs per minute")
    files = _materialize(emulator, run_input.files)
    run = emulator.runs.create(
        run_input.workflow_id,
        spec,
        files,
        run_input.metadata,
        version=run_input.version,
        priority=run_input.priority,
        secrets=run_input.secrets,
        cancel_s=emulator.profile.cancel_s,
        commit_s=fault.late_s or 0.0,
        status=fault.run_status or emulator.faults.draw_run_status(run_input.workflow_id),
    )
    return json_response(run_json(run, emulator.clock()))


async def create_batch(request: Request) -> Response:
    """POST /workflow_runs/batch -> {"batchId"}; runs are queued and start at the profile's pace.

    Batch runs do not count against runs/minute: the batch endpoint is Extend's way around it.
    A late commit holds all of them back; an unknown status is drawn (or forced) for each.
    """
    emulator = _emulator(request)
    fault = scope_fault(request.scope)
    commit_s = fault.late_s or 0.0
    inputs = parse_batch(parse_json(await request.body()))
    spec = emulator.workflow(inputs[0].workflow_id)
    for run_input in inputs:
        _check_file_ids(emulator, run_input)
    batch_id = new_id("batch_", 9)
    slots = emulator.runs.batch_slots(len(inputs), emulator.profile.batch_runs_per_second, commit_s)
    for run_input, not_before in zip(inputs, slots, strict=True):
        files = _materialize(emulator, run_input.files)
        emulator.runs.create(
            run_input.workflow_id,
            spec,
            files,
            run_input.metadata,
            version=run_input.version,
            batch_id=batch_id,
            not_before=not_before,
            priority=run_input.priority,
            secrets=run_input.secrets,
            cancel_s=emulator.profile.cancel_s,
            commit_s=commit_s,
            status=fault.run_status or emulator.faults.draw_run_status(run_input.workflow_id),
        )
    return json_response({"batchId": batch_id})


async def get_run(request: Request) -> Response:
    """GET /workflow_runs/{id} -> WorkflowRun; the hot path of polling clients."""
    emulator = _emulator(request)
    return json_response(run_json(_run(emulator, request), emulator.clock()))


async def list_runs(request: Request) -> Response:
    """GET /workflow_runs -> list of WorkflowRunSummary with filters and cursor pagination."""
    emulator = _emulator(request)
    params = request.query_params
    status = params.get("status")
    known = emulator.known_statuses()
    if status is not None and status not in known:
        raise bad_request(f"'status' must be one of {', '.join(known)}")
    sort_by = params.get("sortBy") or "updatedAt"
    if sort_by not in ("createdAt", "updatedAt"):
        raise bad_request("'sortBy' must be createdAt or updatedAt")
    query = RunQuery(
        status=status,
        workflow_id=params.get("workflowId"),
        batch_id=params.get("batchId"),
        name_contains=params.get("fileNameContains"),
        sort_by=sort_by,
        descending=_sort_dir(params.get("sortDir")),
        after=_cursor(params.get("nextPageToken")),
        limit=_page_size(params.get("maxPageSize")),
    )
    page, after = emulator.runs.query(query)
    data = [summary_body(run, state) for run, state in page]
    return json_response({"object": "list", "data": data, "nextPageToken": _token(after) if after else None})


async def update_run(request: Request) -> Response:
    """POST /workflow_runs/{id} -> WorkflowRun with `metadata` merged in."""
    emulator = _emulator(request)
    run = _run(emulator, request)
    metadata = parse_update_body(parse_json(await request.body()))
    check_metadata_size({**run.metadata, **metadata}, "metadata")
    emulator.runs.merge_metadata(run, metadata)
    return json_response(run_json(run, emulator.clock()))


async def delete_run(request: Request) -> Response:
    """DELETE /workflow_runs/{id} -> {"id"}."""
    emulator = _emulator(request)
    run = _run(emulator, request)
    emulator.runs.delete(run.id)
    return json_response({"id": run.id})


async def cancel_run(request: Request) -> Response:
    """POST /workflow_runs/{id}/cancel -> WorkflowRun (CANCELLING); 400 unless PENDING or PROCESSING."""
    emulator = _emulator(request)
    run = _run(emulator, request)
    try:
        emulator.runs.cancel(run, emulator.profile.cancel_s)
    except InvalidTransition as exc:
        raise bad_request(str(exc)) from None
    return json_response(run_json(run, emulator.clock()))


# ---- helpers ---------------------------------------------------------------------------------


def _check_file_ids(emulator: Emulator, run_input: RunInput) -> None:
    for file in run_input.files:
        if file.kind == "id":
            _file(emulator, file.value)


def _materialize(emulator: Emulator, inputs: tuple[FileInput, ...]) -> list[FileRecord]:
    """The FileRecords of a run's inputs: existing files by id, new ones for URLs and raw text."""
    at = emulator.clock()
    records = []
    for file in inputs:
        if file.kind == "id":
            records.append(_file(emulator, file.value))
        elif file.kind == "text":
            name = file.name or "document.txt"
            records.append(emulator.files.add(name=name, type_="TXT", text=file.value, at=at))
        else:
            records.append(_from_url(emulator, file, at))
    return records


def _from_url(emulator: Emulator, file: FileInput, at: float) -> FileRecord:
    """A URL input. The emulator cannot download, so the file has no text unless the URL is one of
    its own presigned file URLs."""
    name = file.name or name_from_url(file.value)
    own = _OWN_FILE.search(file.value.split("?", 1)[0])
    source = emulator.files.get(own["id"]) if own else None
    if source is not None:
        return emulator.files.add(name=name, type_=source.type, text=source.text, at=at, page_count=source.page_count)
    return emulator.files.add(name=name, type_=sniff_type(name), text="", at=at)


def _sort_dir(value: str | None) -> bool:
    if value not in (None, "asc", "desc"):
        raise bad_request("'sortDir' must be asc or desc")
    return value != "asc"


def _page_size(value: str | None) -> int:
    if value is None:
        return DEFAULT_PAGE
    if not value.isdigit() or not 1 <= int(value) <= MAX_PAGE:
        raise bad_request(f"'maxPageSize' must be an integer from 1 to {MAX_PAGE}")
    return int(value)


def _token(key: tuple[float, str]) -> str:
    return base64.urlsafe_b64encode(dumps(list(key))).decode().rstrip("=")


def _cursor(token: str | None) -> tuple[float, str] | None:
    if not token:
        return None
    try:
        value, ident = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return float(value), str(ident)
    except (ValueError, TypeError):
        raise bad_request("Invalid nextPageToken") from None
