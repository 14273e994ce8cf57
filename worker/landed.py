"""Finding the run a create made before its answer was lost, so that the job adopts it rather than posting again."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from extendq.errors import RetryableError
from extendq.worker.extend import ExtendApi, Run
from extendq.worker.models import JOB_ID_KEY
from extendq.worker.ratelimit import Bucket
from extendq.worker.records import JobRecord
from extendq.worker.store import RedisJobStore

log = logging.getLogger("extendq.jobs")
_LANDED_SLACK_S = 30.0
_OWNER_BATCH = 50


def landed_run(
    record: JobRecord,
    *,
    api: ExtendApi,
    store: RedisJobStore,
    spend: Callable[[JobRecord, float, Bucket], None],
    clock: Callable[[], float],
) -> Run | None:
    """The run an earlier POST may have created before its answer was lost, found before posting again.

    Each request of the lookup first takes a token with `spend` (the runner's, so `Throttled` when none is free).
    """
    try:
        return _Lookup(record, api, store, spend, clock).find()
    except RetryableError as exc:
        # The lookup failed, not the create: the earlier POST may still have landed, keep looking later.
        exc.may_have_landed = True
        raise


@dataclass(frozen=True)
class _Lookup:
    record: JobRecord
    api: ExtendApi
    store: RedisJobStore
    spend: Callable[[JobRecord, float, Bucket], None]
    clock: Callable[[], float]

    def find(self) -> Run | None:
        # Runs other jobs already own are skipped without a request; the few others are fetched and matched.
        since = (self.record.posting_since or 0) - _LANDED_SLACK_S
        batch: list[str] = []
        for summary in self.api.recent_runs(self.record.request.workflow.id, since, self._pace):
            batch.append(str(summary["id"]))
            if len(batch) >= _OWNER_BATCH:
                if (run := self._match_unowned(batch)) is not None:
                    return run
                batch = []
        return self._match_unowned(batch)

    def _pace(self) -> None:  # before each request: every page of the listing is a request of its own
        self.spend(self.record, self.clock(), Bucket.REQUESTS)

    def _match_unowned(self, run_ids: list[str]) -> Run | None:
        job_id = self.record.job_id
        for run_id, owner in zip(run_ids, self.store.owners(run_ids), strict=True):
            if owner is not None:
                continue
            self._pace()
            run = self.api.get_run(run_id)
            if (run.get("metadata") or {}).get(JOB_ID_KEY) == job_id:
                log.warning("job %s adopts run %s created by an earlier attempt", job_id, run_id)
                return run
        return None
