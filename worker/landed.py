"""Finding the run a create made before its answer was lost, so that the job adopts it rather than posting again.

The lookup lists the workflow's runs created since the create went out (newest first) and fetches those no
other job owns, to match their metadata. It may take several requests, each with a token of the shared limit;
when none is free it stops, keeps where it got to on the job's record, and the next step goes on from there
instead of starting over (under a saturated limit, starting over made no progress at all).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from extendq.errors import RetryableError, RunRejected
from extendq.worker.extend import ExtendApi, Run, api_time
from extendq.worker.models import JOB_ID_KEY
from extendq.worker.ratelimit import Bucket
from extendq.worker.records import JobRecord
from extendq.worker.store import RedisJobStore

log = logging.getLogger("extendq.jobs")
_LANDED_SLACK_S = 30.0
_PAGE_SIZE = 1000  # the list endpoint's documented maximum


def landed_run(
    record: JobRecord,
    *,
    api: ExtendApi,
    store: RedisJobStore,
    spend: Callable[[JobRecord, float, Bucket], None],
    clock: Callable[[], float],
    conclusive_from: float = 0.0,
) -> Run | None:
    """The run an earlier POST may have created before its answer was lost, found before posting again.

    Each request of the lookup first takes a token with `spend` (the runner's, so `Throttled` when none is free).
    `conclusive_from`: when the run can no longer appear (the create's landing window ends). A lookup resumed
    after that moment but begun before it starts over once: what it listed then may miss a run committed since.
    """
    try:
        return _Lookup(record, api, store, spend, clock, conclusive_from).find()
    except RetryableError as exc:
        # The lookup failed, not the create: the earlier POST may still have landed, keep looking later.
        exc.may_have_landed = True
        raise


@dataclass
class _Progress:
    """How far a lookup got: when it began listing, the next page to list (None: the first), the runs still to
    fetch, the end reached."""

    began: float | None = None
    next_page: str | None = None
    pending: list[str] | None = None
    ended: bool = False

    @classmethod
    def of(cls, record: JobRecord) -> _Progress:
        saved = json.loads(record.lookup) if record.lookup else {}
        pending = list(saved.get("p") or [])
        return cls(began=saved.get("t"), next_page=saved.get("n"), pending=pending, ended=bool(saved.get("e")))

    def encoded(self) -> str:
        saved = {"t": self.began, "n": self.next_page, "p": self.pending or [], "e": self.ended}
        return json.dumps(saved, separators=(",", ":"))


@dataclass(frozen=True)
class _Lookup:
    record: JobRecord
    api: ExtendApi
    store: RedisJobStore
    spend: Callable[[JobRecord, float, Bucket], None]
    clock: Callable[[], float]
    conclusive_from: float

    def find(self) -> Run | None:
        progress = _Progress.of(self.record)
        if progress.began is not None and progress.began < self.conclusive_from <= self.clock():
            progress = _Progress()  # begun while the run could still appear: look again, once, from the top
        try:
            run = self._resume(progress)
        except RetryableError:
            self._keep(progress.encoded())
            raise
        self._keep(None)
        return run

    def _resume(self, progress: _Progress) -> Run | None:
        pending = progress.pending = progress.pending or []
        while True:
            while pending:
                if (run := self._fetch(pending[0])) is not None:
                    return run
                pending.pop(0)
            if progress.ended:
                return None
            self._list(progress)

    def _list(self, progress: _Progress) -> None:
        """One page of the workflow's recent runs: those no other job owns join the runs to fetch."""
        self._pace()
        if progress.began is None:
            progress.began = self.clock()
        page: dict[str, Any] = self.api.list_runs(
            workflowId=self.record.request.workflow.id,
            sortBy="createdAt",
            sortDir="desc",
            maxPageSize=_PAGE_SIZE,
            nextPageToken=progress.next_page,
        )
        since = (self.record.posting_since or 0) - _LANDED_SLACK_S
        summaries = page.get("data") or []
        recent = [str(s["id"]) for s in summaries if api_time(s.get("createdAt")) >= since]
        owners = self.store.owners(recent)
        assert progress.pending is not None
        progress.pending += [run_id for run_id, owner in zip(recent, owners, strict=True) if owner is None]
        progress.next_page = page.get("nextPageToken")
        progress.ended = not progress.next_page or len(recent) < len(summaries)

    def _fetch(self, run_id: str) -> Run | None:
        """The run, when it is this job's."""
        self._pace()
        try:
            run = self.api.get_run(run_id)
        except RunRejected:
            return None  # gone since it was listed
        if (run.get("metadata") or {}).get(JOB_ID_KEY) != self.record.job_id:
            return None
        log.warning("job %s adopts run %s created by an earlier attempt", self.record.job_id, run_id)
        return run

    def _pace(self) -> None:  # before each request: every page and every fetch takes a token of its own
        self.spend(self.record, self.clock(), Bucket.REQUESTS)

    def _keep(self, progress: str | None) -> None:
        if progress != self.record.lookup:
            self.record.lookup = progress
            self.store.update(self.record.job_id, lookup=progress)
