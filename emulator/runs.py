"""A workflow run's record and its status, derived from timestamps rather than advanced by timers.

A run stores when it was created, when it shows on the Extend surface (its commit), when it starts
and when it ends (drawn at creation), plus the moments of a cancel or a review. `state_at(run, t)`
derives the status at any time `t`; nothing in the emulator moves a run along, so reads stay cheap
and an injected clock is enough to test every transition.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from extendq.emulator.extraction import Extraction
from extendq.emulator.files import FileRecord
from extendq.emulator.profiles import WorkflowSpec
from extendq.emulator.statuses import (
    CANCELLED,
    CANCELLING,
    EVENT_TYPES,
    PENDING,
    PROCESSED,
    PROCESSING,
    REJECTED,
)

CANCELLABLE = frozenset({PENDING, PROCESSING})


@dataclass(frozen=True, slots=True)
class Review:
    """A human decision on a NEEDS_REVIEW run."""

    approved: bool
    reviewer: str
    note: str | None
    at: float


@dataclass(slots=True)
class RunRecord:
    """Everything the emulator knows about one run; the timeline is fixed at creation."""

    id: str
    workflow_id: str
    spec: WorkflowSpec
    version: str
    files: list[FileRecord]
    metadata: dict[str, Any]
    batch_id: str | None
    priority: int | None
    created_at: float
    committed_at: float  # when it shows on the Extend surface: created_at, or later after a late commit
    start_at: float
    end_at: float
    outcome: str
    extraction: Extraction
    failure_reason: str | None
    failure_message: str | None
    credits: float
    child_ids: tuple[str, str, str]  # extract run, step run, step
    secrets: dict[str, Any] | None = None  # as the create sent them; never rendered on the Extend surface
    cancel_at: float | None = None
    cancel_done_at: float | None = None
    review: Review | None = None
    emitted: set[str] = field(default_factory=set)
    cache: dict[str, Any] = field(default_factory=dict)

    def touch(self) -> None:
        """Drop cached renderings after a change that timestamps alone do not show."""
        self.cache.clear()


@dataclass(frozen=True, slots=True)
class RunState:
    """What a run looks like at one moment."""

    status: str
    updated_at: float
    started_at: float | None
    ended_at: float | None
    review: Review | None

    @property
    def key(self) -> tuple[str, float]:
        """Identifies this state for caching renderings."""
        return self.status, self.updated_at


def state_at(run: RunRecord, at: float) -> RunState:
    """The run's status at time `at`, and when it last changed; the one place transitions are decided."""
    if run.cancel_at is not None and run.cancel_done_at is not None and at >= run.cancel_at:
        started = run.start_at if run.start_at <= run.cancel_at else None
        if at >= run.cancel_done_at:
            return RunState(CANCELLED, run.cancel_done_at, started, run.cancel_done_at, None)
        return RunState(CANCELLING, run.cancel_at, started, None, None)
    if at < run.start_at:
        return RunState(PENDING, run.created_at, None, None, None)
    if at < run.end_at:
        return RunState(PROCESSING, run.start_at, run.start_at, None, None)
    review = run.review
    if review is not None and at >= review.at:
        status = PROCESSED if review.approved else REJECTED
        return RunState(status, review.at, run.start_at, run.end_at, review)
    return RunState(run.outcome, run.end_at, run.start_at, run.end_at, None)


def is_committed(run: RunRecord, at: float) -> bool:
    """True once the run shows on the Extend surface (by id, in listings, in webhooks)."""
    return at >= run.committed_at


def is_terminal(status: str) -> bool:
    """True for the statuses that end polling (and send a webhook)."""
    return status in EVENT_TYPES
