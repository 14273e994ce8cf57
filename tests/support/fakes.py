"""In-memory stand-ins for unit tests of the job runner: an Extend API and a result backend."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from extendq.errors import ExtendqError
from extendq.worker.models import JobState


class FakeApi:
    """Runs held in a dict; each run ends with `status` at its first check (or at once with `instant`)."""

    def __init__(self, status: str = "PROCESSED", *, name: str = "default", instant: bool = False) -> None:
        self.status = status
        self.name = name
        self.instant = instant
        self.runs: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []
        self.batches: list[dict[str, Any]] = []
        self.create_error: ExtendqError | None = None

    def create_run(self, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append("create")
        if self.create_error is not None:
            raise self.create_error
        run_id = f"workflow_run_{self.name}_{len(self.runs) + 1}"
        status = self.status if self.instant else "PROCESSING"
        self.runs[run_id] = {"id": run_id, "status": status, "metadata": body["metadata"]}
        return dict(self.runs[run_id])

    def get_run(self, run_id: str) -> dict[str, Any]:
        self.calls.append("get")
        self.runs[run_id]["status"] = self.status
        return dict(self.runs[run_id])

    def cancel_run(self, run_id: str) -> dict[str, Any]:
        self.calls.append("cancel")
        self.runs[run_id]["status"] = "CANCELLED"
        return dict(self.runs[run_id])

    def upload(self, path: str, name: str | None = None) -> str:
        self.calls.append("upload")
        return f"file_{self.name}"

    def create_batch(self, body: dict[str, Any]) -> str:
        """A batch is only noted (its runs never start): tests read `batches`."""
        self.calls.append("batch")
        self.batches.append(body)
        return f"batch_{self.name}_{len(self.batches)}"

    def list_runs(self, **params: Any) -> dict[str, Any]:
        """Every run, newest first, on one page (the lookup after a lost create reads it)."""
        self.calls.append("list")
        summaries = [{"id": run["id"], "status": run["status"]} for run in reversed(self.runs.values())]
        return {"data": summaries, "nextPageToken": None}

    def recent_runs(
        self, workflow_id: str, since: float, pace: Callable[[], None] | None = None
    ) -> Iterator[dict[str, Any]]:
        return iter(())

    def close(self) -> None:
        pass


class Results:
    """The result backend: what was published per job id."""

    def __init__(self) -> None:
        self.published: dict[str, Any] = {}

    def progress(self, job_id: str, state: JobState, info: dict[str, Any]) -> None:
        pass

    def success(self, job_id: str, run: dict[str, Any]) -> None:
        self.published[job_id] = run

    def failure(self, job_id: str, error: ExtendqError) -> None:
        self.published[job_id] = error

    def copy(self, source_id: str, target_id: str) -> bool:
        return False
