"""The job request a producer hands over, validated before anything is queued, and the job's states."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator, model_validator

from extendq.config.tenants import TENANT_PATTERN
from extendq.errors import InvalidJobRequest

METADATA_MAX_BYTES = 10 * 1024
JOB_ID_KEY = "extendq:job_id"
JOB_KEY_KEY = "extendq:job_key"
USAGE_TAGS_KEY = "extend:usage_tags"
TERMINAL_RUN_STATUSES = frozenset({"PROCESSED", "FAILED", "CANCELLED", "NEEDS_REVIEW", "REJECTED"})
# The statuses of a run still moving. Any other status is terminal, as the SDK's `create_and_poll` treats it: a
# status Extend adds later ends the job with the run as its result, rather than checking it for ever.
RUNNING_RUN_STATUSES = frozenset({"PENDING", "PROCESSING", "CANCELLING"})


def is_terminal(status: object) -> bool:
    """Whether a run with this status has ended: any status but the running ones (a missing one has not)."""
    return isinstance(status, str) and bool(status) and status not in RUNNING_RUN_STATUSES


def job_outcome(state: str, run_status: str | None) -> str:
    """How a finished job ended in one word: its run's status, or FAILURE when it got no terminal run."""
    return (run_status or "") if state == JobState.SUCCESS.value else JobState.FAILURE.value


_TAG_JUNK = re.compile(r"[^A-Za-z0-9_-]")
TASK_NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,199}$"


class JobState(StrEnum):
    """Where a job is; also the Celery state a producer reads while it is in flight."""

    QUEUED = "QUEUED"
    SUBMITTING = "SUBMITTING"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WorkflowRef(_Strict):
    """Which workflow to run: its id and optionally a version ("3", "draft")."""

    id: Annotated[str, Field(min_length=1, max_length=255)]
    version: Annotated[str, Field(min_length=1, max_length=64)] | None = None


class UrlFile(_Strict):
    """A file Extend downloads from a URL."""

    url: Annotated[str, Field(min_length=1, pattern=r"^https?://\S+$")]
    name: str | None = None
    settings: dict[str, Any] | None = None


class IdFile(_Strict):
    """A file already in Extend, by its id."""

    id: Annotated[str, Field(min_length=1, max_length=255)]


class TextFile(_Strict):
    """Raw text, processed as a text file."""

    text: Annotated[str, Field(min_length=1)]
    name: str | None = None


class PathFile(_Strict):
    """A file on storage the workers share; the worker uploads it first."""

    path: Annotated[str, Field(min_length=1)]
    name: str | None = None


_FILE_FORMS = ("url", "id", "text", "path")


def _form_in(forms: tuple[str, ...]) -> Callable[[Any], str | None]:
    """The union member a file input is, by the one form key it has (None when it has none or several)."""

    def form(value: Any) -> str | None:
        keys = type(value).model_fields if isinstance(value, BaseModel) else value if isinstance(value, dict) else ()
        present = [key for key in forms if key in keys]
        return present[0] if len(present) == 1 else None

    return form


# Tagged by the form key each member requires, so a malformed file is checked against its own form only and
# reported once (`file.url: ...`), not once per member of the union.
FileInput = Annotated[
    Annotated[UrlFile, Tag("url")]
    | Annotated[IdFile, Tag("id")]
    | Annotated[TextFile, Tag("text")]
    | Annotated[PathFile, Tag("path")],
    Discriminator(
        _form_in(_FILE_FORMS),
        custom_error_type="file_form",
        custom_error_message="a file input needs exactly one of url, id, text or path",
    ),
]
PackageFile = Annotated[
    Annotated[UrlFile, Tag("url")] | Annotated[IdFile, Tag("id")] | Annotated[PathFile, Tag("path")],
    Discriminator(
        _form_in(("url", "id", "path")),
        custom_error_type="file_form",
        custom_error_message="a package file needs exactly one of url, id or path",
    ),
]


class Package(_Strict):
    """Several files processed as one run."""

    files: Annotated[list[PackageFile], Field(min_length=2, max_length=50)]

    @field_validator("files", mode="before")
    @classmethod
    def _no_text(cls, value: object) -> object:
        if isinstance(value, list) and any(isinstance(item, dict) and "text" in item for item in value):
            raise ValueError("raw text is not allowed in a package; use url, id or path files")
        return value

    @model_validator(mode="after")
    def _no_duplicates(self) -> Package:
        seen: set[str] = set()
        for item in self.files:
            marker = repr(item.model_dump(exclude_none=True, include={"url", "id", "path"}))
            if marker in seen:
                raise ValueError(f"package lists the same file twice: {marker}")
            seen.add(marker)
        return self


class JobRequest(_Strict):
    """One file-processing job, as carried by the `extendq.run_workflow` task message."""

    workflow: WorkflowRef
    file: FileInput | None = None
    package: Package | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    priority: Annotated[int, Field(ge=1, le=100)] | None = None
    job_key: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")] | None = None
    deadline_s: Annotated[float, Field(gt=0)] | None = None
    secrets: str | None = None
    # "watch": a NEEDS_REVIEW result is followed until reviewed, and the later outcome published as an event.
    needs_review: Literal["result", "watch"] = "result"
    # The Extend account (configured on workers, see config/tenants.py) the run belongs to; None: the default.
    tenant: Annotated[str, Field(pattern=TENANT_PATTERN)] | None = None
    # The producer's own Celery tasks, sent by name once the job finished (worker/callbacks.py).
    on_success: Annotated[str, Field(pattern=TASK_NAME_PATTERN)] | None = None
    on_failure: Annotated[str, Field(pattern=TASK_NAME_PATTERN)] | None = None
    callback_queue: Annotated[str, Field(pattern=TASK_NAME_PATTERN)] | None = None
    # The job this one replays (`extendq retry`): same request, new job.
    replay_of: Annotated[str, Field(min_length=1, max_length=200)] | None = None

    @field_validator("workflow", mode="before")
    @classmethod
    def _workflow_from_id(cls, value: object) -> object:
        return {"id": value} if isinstance(value, str) else value

    @field_validator("secrets", mode="before")
    @classmethod
    def _sealed_only(cls, value: object) -> object:
        if value is not None and not isinstance(value, str):
            raise ValueError(
                "secrets must be sealed with EXTENDQ_SECRETS_KEY (see `tasks.seal_secrets`); plaintext is refused"
            )
        return value

    @field_validator("file", mode="before")
    @classmethod
    def _one_file_form(cls, value: object) -> object:
        if isinstance(value, dict):
            forms = [k for k in ("url", "id", "text", "path") if k in value]
            if len(forms) != 1:
                raise ValueError("a file input needs exactly one of url, id, text or path")
        return value

    @field_validator("metadata")
    @classmethod
    def _clean_metadata(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"metadata must be JSON-serialisable: {exc}") from None
        if any(key.startswith("extendq:") for key in value):
            raise ValueError("metadata keys starting with 'extendq:' are reserved")
        return _clean_usage_tags(value)

    @model_validator(mode="after")
    def _check_whole(self) -> JobRequest:
        if (self.file is None) == (self.package is None):
            raise ValueError("give exactly one of file or package")
        size = len(json.dumps(self.run_metadata("0" * 36), separators=(",", ":")).encode())
        if size > METADATA_MAX_BYTES:
            raise ValueError(f"metadata is {size} bytes serialised (with extendq's keys); the limit is 10240")
        return self

    def run_metadata(self, job_id: str) -> dict[str, Any]:
        """The metadata the run carries: the producer's, plus the job id and key used to find it again."""
        extra: dict[str, Any] = {JOB_ID_KEY: job_id}
        if self.job_key is not None:
            extra[JOB_KEY_KEY] = self.job_key
        return {**self.metadata, **extra}

    @classmethod
    def parse(cls, data: dict[str, Any]) -> JobRequest:
        """Validate a request from plain JSON; raises `InvalidJobRequest` naming every problem."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise InvalidJobRequest(describe_validation(exc)) from None

    def wire(self) -> dict[str, Any]:
        """The request as plain JSON, the form the task message carries (`needs_review` only when not the default)."""
        return self.model_dump(
            mode="json", exclude_none=True, exclude={"needs_review"} if self.needs_review == "result" else None
        )


def _clean_usage_tags(metadata: dict[str, Any]) -> dict[str, Any]:
    tags = metadata.get(USAGE_TAGS_KEY)
    if tags is None:
        return metadata
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise ValueError(f"{USAGE_TAGS_KEY} must be a list of strings")
    cleaned = [clean for tag in tags if (clean := _TAG_JUNK.sub("", tag))]
    return {**metadata, USAGE_TAGS_KEY: cleaned}


def describe_validation(exc: ValidationError) -> str:
    """One readable line per problem, naming the field; input values are left out (they may hold secrets)."""
    lines = []
    for err in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for index, part in enumerate(err["loc"]) if not _is_file_tag(err["loc"], index))
        lines.append(f"{where or 'request'}: {err['msg']}")
    return "invalid job request: " + "; ".join(lines)


def _is_file_tag(loc: tuple[int | str, ...], index: int) -> bool:
    """Whether `loc[index]` is the tag of a file union (`file.url.url`): left out, the field it names follows."""
    if index == 0 or loc[index] not in _FILE_FORMS:
        return False
    before = loc[index - 1]
    return before == "file" or (isinstance(before, int) and loc[index - 2 : index - 1] == ("files",))
