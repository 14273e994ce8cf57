"""An Extend API that makes no calls: for the webhook receiver, which finishes jobs from events alone."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NoReturn

from extendq.errors import ApiUnavailable
from extendq.worker.extend import Run


class NoApi:
    """Refuses every call (`ApiUnavailable`): whatever needs Extend is left to the workers."""

    def _refuse(self, what: str) -> NoReturn:
        raise ApiUnavailable(f"{what}: the webhook receiver makes no Extend calls")

    def create_run(self, body: dict[str, Any]) -> Run:
        self._refuse("create_run")

    def get_run(self, run_id: str) -> Run:
        self._refuse("get_run")

    def create_batch(self, body: dict[str, Any]) -> str:
        self._refuse("create_batch")

    def cancel_run(self, run_id: str) -> Run:
        self._refuse("cancel_run")

    def upload(self, path: str, name: str | None = None) -> str:
        self._refuse("upload")

    def list_runs(self, **params: Any) -> dict[str, Any]:
        self._refuse("list_runs")

    def recent_runs(
        self, workflow_id: str, since: float, pace: Callable[[], None] | None = None
    ) -> Iterator[dict[str, Any]]:
        self._refuse("recent_runs")

    def close(self) -> None:
        """Nothing to close."""
