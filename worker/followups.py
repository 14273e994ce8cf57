"""What follows a job's terminal run besides its result: its usage is noted, and a watched review is followed."""

from __future__ import annotations

import logging

from extendq.worker.extend import Run
from extendq.worker.records import JobRecord
from extendq.worker.review import watch
from extendq.worker.store import RedisJobStore
from extendq.worker.usage import UsageLedger

log = logging.getLogger("extendq.followups")


def after_run(store: RedisJobStore, record: JobRecord, run: Run, now: float, *, usage_noted: bool = False) -> None:
    """Called once when a job finished with a run. Best effort: it logs and never raises (the result is out).

    `usage_noted`: the finishing step noted the run's usage already (`worker.usage.usage_note`).
    """
    try:
        if not usage_noted:
            ledger = UsageLedger(client=store.client, keys=store.keys)
            ledger.record(run, workflow_id=record.request.workflow.id, now=now, tenant=record.request.tenant)
        watch(store, record, run, now)
    except Exception:
        log.exception("job %s: noting usage or following its review failed", record.job_id)
