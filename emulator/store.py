"""In-memory runs: creation (drawing the timeline and outcome), cancel, review, update, delete, listing.

The store never sleeps or schedules: it records timestamps and tells an observer (the webhook
dispatcher) when a run will next reach a terminal status. A run committed late is held but not
shown (by id or in listings) until its commit.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from extendq.emulator.extraction import Extraction, extract_fields
from extendq.emulator.files import FileRecord
from extendq.emulator.profiles import WorkflowSpec
from extendq.emulator.runs import CANCELLABLE, Review, RunRecord, RunState, is_committed, state_at
from extendq.emulator.statuses import CANCELLED, FAILED, NEEDS_REVIEW, PROCESSED, REJECTED
from extendq.emulator.wire import new_id

Clock = Callable[[], float]
DueCallback = Callable[[str, float], None]
NO_TOTAL = "No total amount could be found in the document text."


class InvalidTransition(Exception):
    """The run's current status does not allow the requested change."""

    def __init__(self, run_id: str, status: str, action: str) -> None:
        super().__init__(f"workflow run {run_id} is {status} and cannot be {action}")


@dataclass(frozen=True, slots=True)
class RunQuery:
    """Filters, order and page of `GET /workflow_runs`."""

    status: str | None = None
    workflow_id: str | None = None
    batch_id: str | None = None
    name_contains: str | None = None
    sort_by: str = "updatedAt"
    descending: bool = True
    after: tuple[float, str] | None = None
    limit: int = 10


def decide_outcome(spec: WorkflowSpec, found: Extraction, rng: random.Random) -> tuple[str, str | None, str | None]:
    """Outcome, failure reason and message: from the extracted total, or drawn from the weights."""
    if spec.outcomes == "content":
        if found.total is None:
            return FAILED, "PARSING_ERROR", NO_TOTAL
        return (NEEDS_REVIEW if found.total >= spec.review_threshold else PROCESSED), None, None
    statuses = list(spec.outcomes)
    outcome = rng.choices(statuses, weights=[spec.outcomes[s] for s in statuses])[0]
    if outcome == FAILED:
        return outcome, spec.failure_reason, spec.failure_message
    return outcome, None, None


class RunStore:
    """Every run by id, in creation order."""

    def __init__(self, *, clock: Clock, rng: random.Random, on_due: DueCallback | None = None) -> None:
        self.clock = clock
        self.rng = rng
        self.on_due = on_due
        self._runs: dict[str, RunRecord] = {}
        self._batch_cursor = 0.0
        self.unknown_statuses: set[str] = set()  # the unknown statuses runs were given

    def create(
        self,
        workflow_id: str,
        spec: WorkflowSpec,
        files: list[FileRecord],
        metadata: dict[str, Any],
        *,
        version: str | None = None,
        batch_id: str | None = None,
        not_before: float | None = None,
        priority: int | None = None,
        secrets: dict[str, Any] | None = None,
        cancel_s: float = 0.0,
        commit_s: float = 0.0,
        status: str | None = None,
    ) -> RunRecord:
        """Create a run whose timeline and outcome are drawn now.

        `cancel_s` is how long a run drawn to end CANCELLED spends in CANCELLING before its end.
        `commit_s` delays the run's commit (a late commit): the run is created now but shows, and
        is queued, only from its commit. `status` replaces its outcome (an unknown status; the draws are
        made all the same, so seeded sequences do not change).
        """
        at = self.clock()
        committed = at + commit_s
        start = max(committed + self.rng.uniform(*spec.queue_s), not_before or committed)
        end = start + self.rng.uniform(*spec.duration_s)
        found = extract_fields("\n".join(f.text for f in files))
        outcome, reason, message = decide_outcome(spec, found, self.rng)
        if status is not None:
            outcome, reason, message = status, None, None
            self.unknown_statuses.add(status)
        run = RunRecord(
            id=new_id("workflow_run_"),
            workflow_id=workflow_id,
            spec=spec,
            version=version or spec.version,
            files=files,
            metadata=metadata,
            batch_id=batch_id,
            priority=priority,
            created_at=at,
            committed_at=committed,
            start_at=start,
            end_at=end,
            outcome=outcome,
            extraction=found,
            failure_reason=reason,
            failure_message=message,
            credits=float(sum(f.pages for f in files) + 1),
            child_ids=(new_id("exr_"), new_id("step_run_"), new_id("step_")),
            secrets=secrets,
        )
        _settle_by_hand(run, spec, cancel_s)
        self._runs[run.id] = run
        self._due(run.id, end)
        return run

    def batch_slots(self, count: int, per_second: float, commit_s: float = 0.0) -> list[float]:
        """Start times for `count` queued batch runs committed `commit_s` from now, paced behind earlier batches."""
        base = max(self.clock() + commit_s, self._batch_cursor)
        self._batch_cursor = base + count / per_second
        return [base + i / per_second for i in range(count)]

    def get(self, run_id: str) -> RunRecord | None:
        """The run, or None when unknown or not committed yet."""
        run = self._runs.get(run_id)
        return run if run is not None and is_committed(run, self.clock()) else None

    def state(self, run: RunRecord) -> RunState:
        """The run's state now."""
        return state_at(run, self.clock())

    def delete(self, run_id: str) -> bool:
        """Forget a run (pending webhooks for it are dropped)."""
        return self._runs.pop(run_id, None) is not None

    def cancel(self, run: RunRecord, cancel_s: float) -> None:
        """Start cancelling a PENDING or PROCESSING run; it is CANCELLED `cancel_s` later.

        Raises:
            InvalidTransition: the run is in any other status.
        """
        at = self.clock()
        status = state_at(run, at).status
        if status not in CANCELLABLE:
            raise InvalidTransition(run.id, status, "cancelled")
        run.cancel_at, run.cancel_done_at = at, at + cancel_s
        self._due(run.id, at + cancel_s)

    def review(self, run: RunRecord, *, approved: bool, reviewer: str, note: str | None) -> None:
        """Approve (-> PROCESSED) or reject (-> REJECTED) a NEEDS_REVIEW run.

        Raises:
            InvalidTransition: the run is not waiting for review.
        """
        at = self.clock()
        status = state_at(run, at).status
        if status != NEEDS_REVIEW or run.review is not None:
            raise InvalidTransition(run.id, status, "reviewed")
        run.review = Review(approved=approved, reviewer=reviewer, note=note, at=at)
        self._due(run.id, at)

    def merge_metadata(self, run: RunRecord, metadata: dict[str, Any]) -> None:
        """Merge metadata into the run's (incoming keys win)."""
        run.metadata = {**run.metadata, **metadata}
        run.touch()

    def query(self, query: RunQuery) -> tuple[list[tuple[RunRecord, RunState]], tuple[float, str] | None]:
        """One page of runs matching `query`, and the cursor of the next page (None on the last)."""
        at = self.clock()
        rows = []
        for run in self._runs.values():
            if not (is_committed(run, at) and _prefilter(run, query)):
                continue
            state = state_at(run, at)
            if query.status is None or state.status == query.status:
                key = (run.created_at if query.sort_by == "createdAt" else state.updated_at, run.id)
                rows.append((key, run, state))
        if query.after is not None:
            after = query.after
            rows = [r for r in rows if (r[0] < after if query.descending else r[0] > after)]
        # One page (and one more row, to know there is a next page) picked without sorting every run.
        pick = heapq.nlargest if query.descending else heapq.nsmallest
        top = pick(query.limit + 1, rows, key=lambda row: row[0])
        page = top[: query.limit]
        more = len(top) > query.limit
        return [(run, state) for _, run, state in page], (page[-1][0] if more and page else None)

    def __iter__(self) -> Iterator[RunRecord]:
        return iter(list(self._runs.values()))

    def __len__(self) -> int:
        return len(self._runs)

    def clear(self) -> None:
        """Forget every run and the batch queue."""
        self._runs.clear()
        self._batch_cursor = 0.0
        self.unknown_statuses.clear()

    def _due(self, run_id: str, at: float) -> None:
        if self.on_due is not None:
            self.on_due(run_id, at)


def _settle_by_hand(run: RunRecord, spec: WorkflowSpec, cancel_s: float) -> None:
    """Outcomes a person brings about: REJECTED is a rejecting review at the run's end (no
    NEEDS_REVIEW shown first); CANCELLED is a dashboard cancel that ends the run on time."""
    if run.outcome == REJECTED:
        run.review = Review(approved=False, reviewer=spec.reviewer, note=spec.rejection_note, at=run.end_at)
    elif run.outcome == CANCELLED:
        run.cancel_at, run.cancel_done_at = max(run.start_at, run.end_at - cancel_s), run.end_at


def _prefilter(run: RunRecord, query: RunQuery) -> bool:
    if query.workflow_id is not None and run.workflow_id != query.workflow_id:
        return False
    if query.batch_id is not None and run.batch_id != query.batch_id:
        return False
    if query.name_contains:
        needle = query.name_contains.lower()
        return any(needle in f.name.lower() for f in run.files)
    return True
