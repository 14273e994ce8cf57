"""What the dashboard's buttons do: cancel a job, retry a failed one, retry every failed job a filter finds.

Each action is told on the events stream (state ACTION: the action, who took it, its effect) and goes through the
same paths as the CLI: a cancel is the `extendq.cancel` task, a retry is a replay (`worker.history`). A job is
retried from the dashboard once: the replay's id is kept next to it (`Keys.replayed`), so a second click, or a
second "retry all failed", starts nothing new.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from celery import Celery

from extendq.errors import InvalidJobRequest
from extendq.tasks.producer import cancel, enqueue
from extendq.worker.history import replay_request
from extendq.worker.job_search import Cursor, JobFilter, search
from extendq.worker.joblog import action_event
from extendq.worker.store import RedisJobStore

FAILED_OUTCOMES = frozenset({"FAILED", "FAILURE"})


class UnknownJob(LookupError):
    """No record of the job is left."""


@dataclass(frozen=True)
class RetriedAll:
    """What one "retry all failed" did: the replays it started (old id -> new id) and the failed jobs it left."""

    started: dict[str, str]
    already: int  # retried from the dashboard before
    examined: int
    more: bool  # the filter has more jobs than one click looks at


@dataclass(kw_only=True)
class Actions:
    store: RedisJobStore
    app: Celery
    lease_s: float = 120.0
    retry_all_max: int = 500

    def cancel(self, job_id: str, *, by: str) -> None:
        """Ask the workers to cancel the job; `InvalidJobRequest` when it has finished."""
        record = self.store.load(job_id)
        if record is None:
            raise UnknownJob(job_id)
        if record.finished:
            raise InvalidJobRequest(f"job {job_id} has finished: nothing to cancel")
        cancel(job_id, app=self.app)
        self.store.emit(action_event(job_id, "cancel", by=by, detail="cancel sent to the workers"))

    def retry(self, job_id: str, *, by: str) -> str:
        """Start the finished job again as a new job (`replay_of` links them); the new job's id.

        `InvalidJobRequest` when it is in flight, ended PROCESSED, or was retried from here already."""
        if self.store.load(job_id) is None:
            raise UnknownJob(job_id)
        new_id = self._replay(job_id, by=by)
        if new_id is None:
            raise InvalidJobRequest(f"job {job_id} was retried already, as job {self._replay_of(job_id)}")
        return new_id

    def retry_failed(self, wanted: JobFilter, *, by: str) -> RetriedAll:
        """Retry the failed jobs (outcome FAILED or FAILURE) among the finished jobs `wanted` finds, up to
        `retry_all_max` of them examined per call."""
        finished = replace(wanted, view="finished", state="")
        started: dict[str, str] = {}
        already = examined = 0
        cursor: Cursor | None = None
        while examined < self.retry_all_max:
            page = search(self.store, finished, cursor=cursor, page_size=100, max_examined=self.retry_all_max)
            examined += page.examined
            for row in page.rows:
                if row["outcome"] not in FAILED_OUTCOMES:
                    continue
                new_id = self._replay(row["job_id"], by=by)
                if new_id is None:
                    already += 1
                else:
                    started[row["job_id"]] = new_id
            cursor = page.next
            if cursor is None:
                break
        return RetriedAll(started=started, already=already, examined=examined, more=cursor is not None)

    def _replay(self, job_id: str, *, by: str) -> str | None:
        """Replay one job unless it was replayed from here already (then None)."""
        request = replay_request(self.store, job_id)
        marker = self.store.keys.replayed(job_id)
        client = self.store.client
        if not client.set(marker, "pending", nx=True, ex=self.store.result_ttl_s):
            return None
        try:
            new_id = enqueue(self.app, request, store=self.store, lease_s=self.lease_s).id
        except BaseException:
            client.delete(marker)
            raise
        client.set(marker, new_id, ex=self.store.result_ttl_s)
        self.store.emit(action_event(job_id, "retry", by=by, detail=f"replayed as job {new_id}"))
        return str(new_id)

    def _replay_of(self, job_id: str) -> str | None:
        earlier = self.store.client.get(self.store.keys.replayed(job_id))
        return None if earlier is None else str(earlier)
