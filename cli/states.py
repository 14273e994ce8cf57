"""The job states every command shows, and Extend's run statuses, each under its own name.

A job's state is a `JobState` (QUEUED, SUBMITTING, RUNNING, SUCCESS, FAILURE): where extendq has it. A
job that ended SUCCESS has a terminal Extend run, whose status (PROCESSED, FAILED, NEEDS_REVIEW, ...) is
shown as the "run status", never as the job's state: Extend's PENDING is a run status, not a job state.

Celery says PENDING for any task id it holds no result for, so its word is not enough to tell a job
waiting for a worker from an id nobody ever sent: the job record, the result and the broker's queues are
asked in turn (`known`), and a job none of them knows is unknown.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from extendq.cli.manifest import BadInput
from extendq.worker.models import TERMINAL_RUN_STATUSES, JobState

__all__ = [
    "FINISHED",
    "LIST_FILTERS",
    "RUN_STATUS_STYLES",
    "STATE_STYLES",
    "UnknownJob",
    "job_state",
    "known",
    "list_filters",
]

FINISHED = frozenset({JobState.SUCCESS, JobState.FAILURE})
# Celery's states that end a task without a run result: a task revoked by hand ends its job too.
_CELERY_FAILED = frozenset({"FAILURE", "REVOKED"})
STATE_STYLES: dict[str, str] = {
    JobState.QUEUED.value: "dim",
    JobState.SUBMITTING.value: "cyan",
    JobState.RUNNING.value: "cyan",
    JobState.SUCCESS.value: "green",
    JobState.FAILURE.value: "bold red",
}
RUN_STATUS_STYLES = {
    "PROCESSED": "green",
    "NEEDS_REVIEW": "yellow",
    "FAILED": "red",
    "REJECTED": "red",
    "CANCELLED": "magenta",
}
# `extendq list --status`: a finished job's state, its run's status, or `failed` (FAILURE or a FAILED run).
LIST_FILTERS = (
    "failed",
    JobState.SUCCESS.value.lower(),
    JobState.FAILURE.value.lower(),
    *sorted(status.lower() for status in TERMINAL_RUN_STATUSES - {"FAILED"}),
)


class UnknownJob(BadInput):
    """No job record, no result and no queued message has this id."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"unknown job {job_id} (or its record expired)")
        self.job_id = job_id


def job_state(celery_state: str, recorded: JobState | None) -> JobState | None:
    """The job's state from Celery's state of its task and its record's; None when neither knows the job.

    A terminal Celery state wins (the result is the job's outcome); otherwise the record, written at every
    step, is the fresher; a progress state published without a record (a record that expired) comes last.
    """
    if celery_state == "SUCCESS":
        return JobState.SUCCESS
    if celery_state in _CELERY_FAILED:
        return JobState.FAILURE
    if recorded is not None:
        return recorded
    return JobState(celery_state) if celery_state in JobState.__members__ else None


def known(job_id: str, *, recorded: Callable[[str], bool], waiting: Callable[[str], bool]) -> bool:
    """Whether a job with no result is known: recorded, or its message still waits in the broker.

    The record is asked again after the broker: a worker that took the message meanwhile has written it.
    """
    return recorded(job_id) or waiting(job_id) or recorded(job_id)


def list_filters(values: Collection[str]) -> list[str]:
    """The `--status` values of `extendq list`, checked; `BadInput` naming the valid ones otherwise."""
    wrong = [value for value in values if value.lower() not in LIST_FILTERS]
    if wrong:
        raise BadInput(f"--status: unknown state {wrong[0]!r}: use one of {', '.join(LIST_FILTERS)}")
    return list(values)
