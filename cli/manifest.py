"""What to submit: command-line inputs (files, folders, URLs) and CSV/JSONL manifests, as job entries.

Everything here is pure parsing: it reads the named files and folders but queues nothing. Every
problem raises `BadInput` with one line that names the culprit (a path, or a manifest's line).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["BadInput", "Entry", "entries_for", "expand_inputs", "is_url", "parse_metadata", "read_manifest"]

_URL_SCHEMES = ("http://", "https://")
_JSONL_SUFFIXES = (".jsonl", ".ndjson")
_COLUMNS = ("path", "workflow", "metadata")


class BadInput(ValueError):
    """An input the user gave cannot be used; the message is one line naming it."""


@dataclass(frozen=True)
class Entry:
    """One job to submit: its file input, workflow, metadata, and how to show it to the user."""

    file: dict[str, str]
    label: str
    workflow: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def is_url(value: str) -> bool:
    """True for an http(s) URL, which becomes a `{"url": ...}` input."""
    return value.lower().startswith(_URL_SCHEMES)


def parse_metadata(text: str | None, *, where: str = "--metadata") -> dict[str, Any]:
    """A metadata JSON object from text (empty when None); `BadInput` naming `where` otherwise."""
    if text is None or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(f"{where} is not valid JSON: {exc.msg} at column {exc.colno}") from None
    return _metadata_object(value, where)


def _metadata_object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadInput(f"{where} must be a JSON object, not {type(value).__name__}")
    return value


def entries_for(
    inputs: Sequence[str], *, workflow: str | None, metadata: dict[str, Any], manifest: str | Path | None
) -> list[Entry]:
    """The entries of `extendq submit`: its PATH/URL arguments (which need a workflow), then the manifest's rows."""
    if not inputs and manifest is None:
        raise BadInput("nothing to submit: give PATH or URL arguments, or --manifest FILE")
    if inputs and not workflow:
        raise BadInput("--workflow is required to submit PATH or URL arguments")
    entries = expand_inputs(inputs, workflow=workflow, metadata=metadata)
    if manifest is not None:
        entries += read_manifest(manifest, workflow=workflow, metadata=metadata)
    return entries


def expand_inputs(
    items: Sequence[str], *, workflow: str | None = None, metadata: dict[str, Any] | None = None
) -> list[Entry]:
    """One entry per URL and per file; folders expand to their files (recursive, sorted, hidden ones skipped)."""
    entries: list[Entry] = []
    for item in items:
        for file, label in _inputs_of(item):
            entries.append(Entry(file=file, label=label, workflow=workflow, metadata=dict(metadata or {})))
    return entries


def _inputs_of(item: str) -> Iterator[tuple[dict[str, str], str]]:
    if is_url(item):
        yield {"url": item}, item
        return
    path = Path(item).expanduser()
    if path.is_dir():
        files = list(_files_under(path))
        if not files:
            raise BadInput(f"folder {item} holds no files (hidden ones are skipped)")
        for file in files:
            yield {"path": str(_readable(file, str(file)).resolve())}, str(file)
        return
    yield {"path": str(_readable(path, item).resolve())}, item


def _files_under(folder: Path) -> Iterator[Path]:
    """Files below `folder`, sorted by relative path, skipping hidden files and hidden folders."""
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [name for name in dirs if not name.startswith(".")]
        found.extend(Path(root) / name for name in files if not name.startswith("."))
    yield from sorted(found, key=lambda path: path.relative_to(folder).as_posix())


def _readable(path: Path, shown: str) -> Path:
    if not path.exists():
        raise BadInput(f"no such file or folder: {shown}")
    if not path.is_file():
        raise BadInput(f"not a regular file: {shown}")
    if not os.access(path, os.R_OK):
        raise BadInput(f"cannot read {shown}: permission denied")
    return path


def read_manifest(
    path: str | Path, *, workflow: str | None = None, metadata: dict[str, Any] | None = None
) -> list[Entry]:
    """Entries from a CSV (header `path,workflow,metadata`) or JSONL manifest; one job per row.

    Relative paths are relative to the manifest's folder; a `path` may also be a URL. A row without a
    workflow takes `workflow`; a row's metadata is merged over `metadata`.

    Raises:
        BadInput: the manifest cannot be read, or a row is malformed (named by its line number).
    """
    manifest = Path(path).expanduser()
    text = _read_text(manifest, str(path))
    rows = _jsonl_rows(text, str(path)) if _is_jsonl(manifest, text) else _csv_rows(text, str(path))
    entries = [_entry(row, line, manifest, str(path), workflow, metadata or {}) for line, row in rows]
    if not entries:
        raise BadInput(f"manifest {path} has no rows")
    return entries


def _read_text(manifest: Path, shown: str) -> str:
    try:
        return manifest.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise BadInput(f"no such manifest: {shown}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read manifest {shown}: {exc}") from None


def _is_jsonl(manifest: Path, text: str) -> bool:
    if manifest.suffix.lower() in _JSONL_SUFFIXES:
        return True
    if manifest.suffix.lower() == ".csv":
        return False
    return text.lstrip().startswith("{")


def _jsonl_rows(text: str, shown: str) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadInput(f"{shown} line {number}: not valid JSON: {exc.msg}") from None
        if not isinstance(row, dict):
            raise BadInput(f"{shown} line {number}: a row must be a JSON object")
        yield number, row


def _csv_rows(text: str, shown: str) -> Iterator[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    _check_header(reader.fieldnames, shown)
    for row in reader:
        number = reader.line_num
        if None in row:
            raise BadInput(f"{shown} line {number}: more values than the header has columns")
        if any(value is None for value in row.values()):
            raise BadInput(f"{shown} line {number}: fewer values than the header has columns")
        if any(value.strip() for value in row.values()):
            yield number, row


def _check_header(fieldnames: Sequence[str] | None, shown: str) -> None:
    if not fieldnames:
        raise BadInput(f"manifest {shown} is empty")
    unknown = [name for name in fieldnames if name.strip() not in _COLUMNS]
    if unknown or "path" not in [name.strip() for name in fieldnames]:
        raise BadInput(f"{shown} line 1: the header must name the columns {','.join(_COLUMNS)} (path required)")


def _entry(
    row: dict[str, Any], line: int, manifest: Path, shown: str, workflow: str | None, metadata: dict[str, Any]
) -> Entry:
    where = f"{shown} line {line}"
    row = {str(key).strip(): value for key, value in row.items()}
    unknown = sorted(set(row) - set(_COLUMNS))
    if unknown:
        raise BadInput(f"{where}: unknown column {unknown[0]!r} (expected {', '.join(_COLUMNS)})")
    target = _text(row.get("path"), "path", where)
    if not target:
        raise BadInput(f"{where}: path is empty")
    file, label = _row_input(target, manifest, where)
    row_workflow = _text(row.get("workflow"), "workflow", where) or workflow
    if not row_workflow:
        raise BadInput(f"{where}: no workflow (add a workflow column or pass --workflow)")
    extra = _row_metadata(row.get("metadata"), where)
    return Entry(file=file, label=label, workflow=row_workflow, metadata={**metadata, **extra})


def _text(value: Any, column: str, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadInput(f"{where}: {column} must be a string")
    return value.strip()


def _row_input(target: str, manifest: Path, where: str) -> tuple[dict[str, str], str]:
    if is_url(target):
        return {"url": target}, target
    path = Path(target).expanduser()
    if not path.is_absolute():
        path = manifest.parent / path
    try:
        return {"path": str(_readable(path, target).resolve())}, target
    except BadInput as exc:
        raise BadInput(f"{where}: {exc}") from None


def _row_metadata(value: Any, where: str) -> dict[str, Any]:
    if value is None or (isinstance(value, str) and not value.strip()):
        return {}
    if isinstance(value, str):
        return parse_metadata(value, where=f"{where}: metadata")
    return _metadata_object(value, f"{where}: metadata")
