"""Request bodies of the Extend surface, checked and turned into plain values (400 on anything wrong)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from extendq.emulator.errors import bad_request

METADATA_MAX_BYTES = 10240
BATCH_MAX_INPUTS = 1000
PACKAGE_FILES = (2, 50)
USAGE_TAGS = "extend:usage_tags"
_TAG_JUNK = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True, slots=True)
class FileInput:
    """One file of a run: by URL, by Extend file id, or raw text."""

    kind: str  # "url" | "id" | "text"
    value: str
    name: str | None = None


@dataclass(frozen=True, slots=True)
class RunInput:
    """A validated `POST /workflow_runs` body (or one batch input with the batch's workflow)."""

    workflow_id: str
    version: str | None
    files: tuple[FileInput, ...]
    metadata: dict[str, Any]
    priority: int | None = None
    secrets: dict[str, Any] | None = None


def parse_json(raw: bytes) -> dict[str, Any]:
    """The JSON object of a request body."""
    try:
        body = json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError):
        raise bad_request("Malformed JSON body") from None
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object")
    return body


def parse_create(body: dict[str, Any]) -> RunInput:
    """A `POST /workflow_runs` body."""
    workflow_id, version = _workflow(body)
    has_file, has_package = body.get("file") is not None, body.get("package") is not None
    if has_file == has_package:
        raise bad_request("Exactly one of 'file' or 'package' must be provided")
    if has_package:
        if body.get("outputs") is not None:
            raise bad_request("'outputs' is not supported on package runs")
        files = _package(body["package"])
    else:
        files = (parse_file(body["file"], "file"),)
    _optional_list(body, "outputs")
    metadata = clean_metadata(body.get("metadata"), "metadata")
    return RunInput(workflow_id, version, files, metadata, _priority(body), _secrets(body.get("secrets"), "secrets"))


def parse_batch(body: dict[str, Any]) -> list[RunInput]:
    """A `POST /workflow_runs/batch` body, as one RunInput per input."""
    workflow_id, version = _workflow(body)
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not 1 <= len(inputs) <= BATCH_MAX_INPUTS:
        raise bad_request(f"'inputs' must be a list of 1 to {BATCH_MAX_INPUTS} items")
    priority = _priority(body, low=1, high=100)
    runs = []
    for index, item in enumerate(inputs):
        where = f"inputs[{index}]"
        if not isinstance(item, dict) or item.get("file") is None:
            raise bad_request(f"'{where}' must be an object with a 'file'")
        file = parse_file(item["file"], f"{where}.file")
        metadata = clean_metadata(item.get("metadata"), f"{where}.metadata")
        secrets = _secrets(item.get("secrets"), f"{where}.secrets")
        runs.append(RunInput(workflow_id, version, (file,), metadata, priority, secrets))
    return runs


def parse_update(body: dict[str, Any]) -> dict[str, Any]:
    """A `POST /workflow_runs/{id}` body: the metadata to merge (`name` is accepted and ignored)."""
    if body.get("name") is not None and not isinstance(body["name"], str):
        raise bad_request("'name' must be a string")
    return clean_metadata(body.get("metadata"), "metadata")


def parse_file(value: Any, where: str) -> FileInput:
    """One file input: exactly one of `url`, `id` or `text`."""
    if not isinstance(value, dict):
        raise bad_request(f"'{where}' must be an object with one of 'url', 'id' or 'text'")
    kinds = [k for k in ("url", "id", "text") if value.get(k) is not None]
    if len(kinds) != 1:
        raise bad_request(f"'{where}' must have exactly one of 'url', 'id' or 'text'")
    kind = kinds[0]
    content = value[kind]
    if not isinstance(content, str) or (kind != "text" and not content.strip()):
        raise bad_request(f"'{where}.{kind}' must be a non-empty string")
    name = value.get("name")
    if name is not None and not isinstance(name, str):
        raise bad_request(f"'{where}.name' must be a string")
    return FileInput(kind, content, name)


def clean_metadata(value: Any, where: str) -> dict[str, Any]:
    """Run metadata: an object of at most 10 KB compact JSON; `extend:usage_tags` reduced to `[A-Za-z0-9_-]`."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_request(f"'{where}' must be a JSON object")
    metadata: dict[str, Any] = dict(value)
    if USAGE_TAGS in metadata:
        tags = metadata[USAGE_TAGS]
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise bad_request(f"'{where}.{USAGE_TAGS}' must be a list of strings")
        cleaned = [_TAG_JUNK.sub("", t) for t in tags]
        metadata[USAGE_TAGS] = [t for t in cleaned if t]
    check_metadata_size(metadata, where)
    return metadata


def check_metadata_size(value: dict[str, Any], where: str) -> None:
    """400 when the metadata serializes to more than 10 KB."""
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    if size > METADATA_MAX_BYTES:
        raise bad_request(f"'{where}' is {size} bytes of JSON; the limit is {METADATA_MAX_BYTES} bytes")


def _workflow(body: dict[str, Any]) -> tuple[str, str | None]:
    workflow = body.get("workflow")
    if not isinstance(workflow, dict) or not isinstance(workflow.get("id"), str) or not workflow["id"]:
        raise bad_request("'workflow' must be an object with a string 'id'")
    version = workflow.get("version")
    if version is not None and (not isinstance(version, str) or not version):
        raise bad_request("'workflow.version' must be a non-empty string")
    return workflow["id"], version


def _package(value: Any) -> tuple[FileInput, ...]:
    files = value.get("files") if isinstance(value, dict) else None
    low, high = PACKAGE_FILES
    if not isinstance(files, list) or not low <= len(files) <= high:
        raise bad_request(f"'package.files' must be a list of {low} to {high} files")
    parsed = tuple(parse_file(f, f"package.files[{i}]") for i, f in enumerate(files))
    if any(f.kind == "text" for f in parsed):
        raise bad_request("'package.files' accepts only 'url' or 'id' files, not raw text")
    keys = [(f.kind, f.value) for f in parsed]
    if len(set(keys)) != len(keys):
        raise bad_request("'package.files' contains duplicate file ids or URLs")
    return parsed


def _priority(body: dict[str, Any], low: int | None = None, high: int | None = None) -> int | None:
    priority = body.get("priority")
    if priority is None:
        return None
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise bad_request("'priority' must be an integer")
    if low is not None and high is not None and not low <= priority <= high:
        raise bad_request(f"'priority' must be between {low} and {high}")
    return priority


def _secrets(value: Any, where: str) -> dict[str, Any] | None:
    """Run-scoped secrets: any JSON object, kept for the admin API and never sent back."""
    if value is not None and not isinstance(value, dict):
        raise bad_request(f"'{where}' must be a JSON object")
    return value


def _optional_list(body: dict[str, Any], key: str) -> None:
    if body.get(key) is not None and not isinstance(body[key], list):
        raise bad_request(f"'{key}' must be a list")
