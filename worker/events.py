"""Applying Extend's webhook events to jobs: a terminal run finishes its job with no API call.

Workers apply every event the receiver queues (`apply`). The receiver applies a terminal event that carries its
run itself, before answering (`apply_at_once`): the shortest way from Extend's delivery to a durable result, with
the same lock and the same finishing script as a check, so whichever comes first publishes the one result.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from extendq.worker import metrics
from extendq.worker.extend import Run
from extendq.worker.joblog import job_event
from extendq.worker.jobs import JobRunner
from extendq.worker.models import JOB_ID_KEY, JobState, is_terminal
from extendq.worker.records import JobRecord

log = logging.getLogger("extendq.events")
# A BUSY event is tried again soon, then less often, up to this: never a tight loop, and never a long wait
# held in a worker's memory as a countdown message.
BUSY_FIRST_S = 0.05
BUSY_MAX_S = 2.0


def busy_delay_s(retries: int) -> float:
    """Seconds before trying a BUSY event again after `retries` tries: 0.05 s, doubling, capped at 2 s.

    There is no last try: the lock always frees (a step holds it for one HTTP call, and a lock whose holder
    died expires after the lock TTL), so an accepted event is applied, never dropped for being busy.
    """
    return min(BUSY_FIRST_S * 2.0 ** min(max(retries, 0), 16), BUSY_MAX_S)


class Outcome(StrEnum):
    """What applying one event did."""

    APPLIED = "applied"
    PROGRESS = "progress"
    ALREADY_FINISHED = "already_finished"
    UNKNOWN_RUN = "unknown_run"
    IGNORED = "ignored"
    BUSY = "busy"


@dataclass(kw_only=True)
class EventApplier:
    """Finds the job an event is about and moves it on, under the same per-job lock as checks."""

    runner: JobRunner
    clock: Callable[[], float] = time.time

    def apply(self, event: dict[str, Any]) -> Outcome:
        """Apply one verified event (payload already fetched when it came as a signed URL).

        `BUSY` means a check holds the job right now: the caller tries again after `busy_delay_s`.
        """
        event_type = str(event.get("eventType", ""))
        payload = event.get("payload")
        if not event_type.startswith("workflow_run.") or not isinstance(payload, dict):
            return self._counted(event_type, Outcome.IGNORED)
        run_id = run_id_of(payload)
        job_id = self._job_for(run_id, payload)
        if job_id is None:
            return self._counted(event_type, Outcome.UNKNOWN_RUN)
        store = self.runner.store
        with store.lock(job_id, ttl_s=self.runner.lock_ttl_s) as held:
            if not held:
                return Outcome.BUSY
            record = store.load(job_id)
            if record is None:
                return self._counted(event_type, Outcome.UNKNOWN_RUN)
            if record.finished:
                return self._counted(event_type, Outcome.ALREADY_FINISHED)
            return self._counted(event_type, self._apply_to(record, event_type, run_id, payload))

    def apply_at_once(self, event_type: str, run: Run, record: JobRecord) -> Outcome | None:
        """Apply a terminal event whose run came in its body (`inline_terminal_run`) to `record`, its job, read
        under its lock (`RedisJobStore.event_look`), now, in the caller's thread.

        None, having changed nothing, when another run claims the job: the caller hands the event to the workers,
        which count it as they count any stranger.
        """
        run_id = run_id_of(run)
        if record.run_id not in (None, run_id):
            return None
        if record.finished:
            return self._counted(event_type, Outcome.ALREADY_FINISHED)
        return self._counted(event_type, self._apply_to(record, event_type, run_id, run))

    def _apply_to(self, record: JobRecord, event_type: str, run_id: str, payload: Run) -> Outcome:
        now = self.clock()
        if record.run_id is None:
            # The create's answer was lost, or has not been recorded yet: the event names the run.
            record.run_id, record.submitted_at = run_id, now
            self.runner.store.record_run(record.job_id, run_id, submitted_at=now)
        elif record.run_id != run_id:
            return Outcome.UNKNOWN_RUN
        status = str(payload.get("status", ""))
        if event_type.startswith("workflow_run.step_run") or not is_terminal(status):
            self.runner.store.emit(job_event(record, state=JobState.RUNNING, status=status or event_type))
            return Outcome.PROGRESS
        self.runner.finish_with_run(record, payload, now, via="webhook")  # logs the job's `finished` line
        log.debug("job %s finished by webhook %s", record.job_id, event_type)
        return Outcome.APPLIED

    def _job_for(self, run_id: str, payload: Run) -> str | None:
        owner = self.runner.store.owners([run_id])[0] if run_id else None
        if owner is not None:
            return owner
        return metadata_job(payload)

    def _counted(self, event_type: str, outcome: Outcome) -> Outcome:
        self.runner.store.count(f"webhook_{outcome.value}")
        metrics.webhook_event(event_type, outcome.value)
        return outcome


def inline_terminal_run(event: dict[str, Any]) -> Run | None:
    """The run of a `workflow_run.*` event that says the run ended and carries it whole; None for any other event
    (progress, a step run's, one whose run waits behind a signed URL, or no run id)."""
    event_type = str(event.get("eventType", ""))
    run = event.get("payload")
    if not event_type.startswith("workflow_run.") or event_type.startswith("workflow_run.step_run"):
        return None
    if not isinstance(run, dict) or run.get("object") == "signed_data_url" or not is_terminal(run.get("status")):
        return None
    return run if run_id_of(run) else None


def run_id_of(run: Run) -> str:
    """The id of the run an event carries ('' when it names none)."""
    return str(run.get("workflowRunId") or run.get("id") or "")


def metadata_job(run: Run) -> str | None:
    """The job id a run carries in its metadata (extendq puts it there when it creates the run), if any."""
    metadata = run.get("metadata")
    job_id = metadata.get(JOB_ID_KEY) if isinstance(metadata, dict) else None
    return str(job_id) if job_id else None
