"""The body of a job's create-run request, its file inputs in the API's wire form (a local path uploaded first)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from extendq.errors import InputNotFound
from extendq.worker.extend import ExtendApi
from extendq.worker.models import FileInput, PathFile
from extendq.worker.records import JobRecord
from extendq.worker.secrets import unseal


def create_body(
    record: JobRecord,
    *,
    api_for: Callable[[JobRecord], ExtendApi],
    files_root: Path | None,
    secrets_key: str | None,
) -> dict[str, Any]:
    """The create-run body of the job; a local file is uploaded to the job's account (`api_for`) first."""
    request = record.request
    body: dict[str, Any] = {
        "workflow": request.workflow.model_dump(exclude_none=True),
        "metadata": request.run_metadata(record.job_id),
    }
    if request.file is not None:
        body["file"] = file_wire(request.file, api_for(record), files_root)
    elif request.package is not None:
        body["package"] = {"files": [file_wire(item, api_for(record), files_root) for item in request.package.files]}
    if request.priority is not None:
        body["priority"] = request.priority
    if record.secrets:
        body["secrets"] = unseal(record.secrets, secrets_key)
    return body


def file_wire(item: FileInput, api: ExtendApi, files_root: Path | None) -> dict[str, Any]:
    """A file input in the API's wire form; a local `path` (under `files_root`, if set) is uploaded first."""
    if not isinstance(item, PathFile):
        return item.model_dump(exclude_none=True)
    path = checked_path(item.path, files_root)
    return {"id": api.upload(str(path), item.name)}


def checked_path(raw: str, files_root: Path | None) -> Path:
    """The local file `raw` names; `InputNotFound` when it is missing or outside `files_root`."""
    path = Path(raw).expanduser()
    if files_root is not None:
        path = (files_root / path).resolve()
        if not path.is_relative_to(files_root.resolve()):
            raise InputNotFound(f"input path {raw!r} is outside the shared files root")
    if not path.is_file():
        raise InputNotFound(f"input path {raw!r} does not exist or is not a file")
    return path
