"""A batch member's own look through its batch: list the batch's runs, fetch those nobody has claimed yet.

Every request takes a token of the account's shared limit; the first goes on the token the member's step took.
When no token is free the look stops, keeps where it got to on the job's record (the runs still to fetch and the
next page to list), and the member's next step, on the token it reserved, goes on from there. Starting over
spent that token on listing the batch again: under a limit the members kept busy between them, every step
listed, the fetch after it always had to wait, and no run was ever fetched.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from extendq.errors import RetryableError
from extendq.worker.extend import ExtendApi
from extendq.worker.models import is_terminal
from extendq.worker.records import JobRecord
from extendq.worker.store import RedisJobStore

_PAGE_SIZE = 100


@dataclass
class _Progress:
    """How far a look got: the runs still to fetch, the next page to list, whether it listed the last page, and
    whether it looks for ended runs only."""

    pending: list[str] = field(default_factory=list)
    next_page: str | None = None
    listed_all: bool = False
    ended_only: bool = True

    @classmethod
    def of(cls, record: JobRecord, *, ended_only: bool) -> _Progress:
        saved: dict[str, Any] = json.loads(record.batch_lookup) if record.batch_lookup else {}
        if not saved or bool(saved.get("o")) != ended_only:
            return cls(ended_only=ended_only)  # none kept, or kept by the other kind of look: start over
        return cls(list(saved.get("p") or []), saved.get("n"), bool(saved.get("e")), ended_only)

    def encoded(self) -> str:
        saved = {"p": self.pending, "n": self.next_page, "e": self.listed_all, "o": self.ended_only}
        return json.dumps(saved, separators=(",", ":"))


@dataclass
class BatchLookup:
    """One member's look through its batch, resumed from its record and kept there when it has to wait.

    `pace` takes a token before a request (raising `Throttled` when none is free); the first request of a step
    goes on the step's own token. `fetch` fetches and handles one run; it answers True to end the look.
    """

    record: JobRecord
    api: ExtendApi
    store: RedisJobStore
    pace: Callable[[], None]
    fetch: Callable[[str], bool]
    _paid: bool = True  # the step's own token is there for the first request

    def run(self, *, ended_only: bool) -> None:
        """Go on with the look (or start it) until every run it found is fetched, or `fetch` ends it."""
        progress = _Progress.of(self.record, ended_only=ended_only)
        try:
            self._resume(progress)
        except RetryableError:
            self._keep(progress.encoded())
            raise
        self._keep(None)

    def _resume(self, progress: _Progress) -> None:
        while True:
            while progress.pending:
                run_id = progress.pending[0]
                if self.store.owners([run_id])[0] is None:  # another member's step or a sweep may have it now
                    self._take()
                    if self.fetch(run_id):
                        return
                progress.pending.pop(0)
            if progress.listed_all:
                return
            self._list(progress)

    def _list(self, progress: _Progress) -> None:
        """One page of the batch's runs: those no job has claimed (that ended, for `ended_only`) are to fetch."""
        assert self.record.extend_batch_id is not None
        self._take()
        params: dict[str, Any] = {"batchId": self.record.extend_batch_id, "maxPageSize": _PAGE_SIZE}
        if progress.next_page:
            params["nextPageToken"] = progress.next_page
        page = self.api.list_runs(**params)
        summaries = page.get("data") or []
        run_ids = [str(s["id"]) for s in summaries if not progress.ended_only or is_terminal(s.get("status"))]
        owners = self.store.owners(run_ids)
        progress.pending += [run_id for run_id, owner in zip(run_ids, owners, strict=True) if owner is None]
        progress.next_page = page.get("nextPageToken")
        progress.listed_all = not progress.next_page

    def _take(self) -> None:
        """A token for the next request: the step's own for the first one, then one each from `pace`."""
        if self._paid:
            self._paid = False
            return
        self.pace()

    def _keep(self, progress: str | None) -> None:
        if progress != self.record.batch_lookup:
            self.record.batch_lookup = progress
            self.store.update(self.record.job_id, batch_lookup=progress)
