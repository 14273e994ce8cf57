"""Run status derived from timestamps, on an injected clock: every transition and its updatedAt."""

from __future__ import annotations

import random

import pytest

from extendq.emulator.files import FileStore
from extendq.emulator.profiles import WorkflowSpec, load_profile
from extendq.emulator.runs import is_terminal, state_at
from extendq.emulator.store import InvalidTransition, RunQuery, RunStore
from tests.emulator.conftest import INVOICE, FakeClock

SPEC = WorkflowSpec(name="W", duration_s=(2.0, 2.0), queue_s=(1.0, 1.0), outcomes={"PROCESSED": 1})


def _store(clock: FakeClock) -> tuple[RunStore, FileStore, list[tuple[str, float]]]:
    due: list[tuple[str, float]] = []
    return RunStore(clock=clock, rng=random.Random(0), on_due=lambda r, at: due.append((r, at))), FileStore(), due


def test_a_run_moves_pending_processing_then_terminal(clock: FakeClock) -> None:
    runs, files, due = _store(clock)
    created = clock.now
    run = runs.create("w", SPEC, [files.add(name="a.txt", type_="TXT", text="", at=created)], {})
    timeline = [
        (state_at(run, created + t).status, state_at(run, created + t).updated_at) for t in (0, 0.99, 1, 2.9, 3)
    ]
    assert timeline == [
        ("PENDING", created),
        ("PENDING", created),
        ("PROCESSING", created + 1),
        ("PROCESSING", created + 1),
        ("PROCESSED", created + 3),
    ]
    assert due == [(run.id, created + 3)]


def test_state_carries_start_and_end_only_once_reached(clock: FakeClock) -> None:
    runs, files, _ = _store(clock)
    run = runs.create("w", SPEC, [], {})
    assert (state_at(run, clock.now).started_at, state_at(run, clock.now).ended_at) == (None, None)
    assert state_at(run, clock.now + 1.5).started_at == clock.now + 1
    assert state_at(run, clock.now + 5).ended_at == clock.now + 3


def test_cancel_goes_through_cancelling_to_cancelled(clock: FakeClock) -> None:
    runs, _, due = _store(clock)
    run = runs.create("w", SPEC, [], {})
    clock.advance(1.5)
    runs.cancel(run, cancel_s=0.2)
    assert runs.state(run).status == "CANCELLING" and runs.state(run).updated_at == clock.now
    clock.advance(0.2)
    state = runs.state(run)
    assert (state.status, state.updated_at, state.ended_at) == ("CANCELLED", clock.now, clock.now)
    clock.advance(10)
    assert runs.state(run).status == "CANCELLED"  # cancelling wins over the natural end
    assert due[-1] == (run.id, clock.now - 10)


def test_a_run_cancelled_before_it_starts_never_shows_a_start(clock: FakeClock) -> None:
    runs, _, _ = _store(clock)
    run = runs.create("w", SPEC, [], {})
    runs.cancel(run, cancel_s=0.0)
    assert runs.state(run).status == "CANCELLED" and runs.state(run).started_at is None


@pytest.mark.parametrize("advance", [3.0, 0.1])
def test_finished_or_cancelling_runs_cannot_be_cancelled(clock: FakeClock, advance: float) -> None:
    runs, _, _ = _store(clock)
    run = runs.create("w", SPEC, [], {})
    if advance < 1:
        runs.cancel(run, cancel_s=1.0)
    clock.advance(advance)
    with pytest.raises(InvalidTransition):
        runs.cancel(run, cancel_s=0.2)


@pytest.mark.parametrize(("approved", "status"), [(True, "PROCESSED"), (False, "REJECTED")])
def test_review_moves_needs_review_on(clock: FakeClock, approved: bool, status: str) -> None:
    runs, _, due = _store(clock)
    spec = SPEC.model_copy(update={"outcomes": {"NEEDS_REVIEW": 1}})
    run = runs.create("w", spec, [], {})
    with pytest.raises(InvalidTransition):
        runs.review(run, approved=True, reviewer="a@b.c", note=None)
    clock.advance(3)
    assert runs.state(run).status == "NEEDS_REVIEW"
    clock.advance(1)
    runs.review(run, approved=approved, reviewer="a@b.c", note="n")
    state = runs.state(run)
    assert (state.status, state.updated_at, state.ended_at) == (status, clock.now, clock.now - 1)
    assert due[-1] == (run.id, clock.now)
    with pytest.raises(InvalidTransition):
        runs.review(run, approved=True, reviewer="a@b.c", note=None)


def test_content_workflows_decide_from_the_extracted_total(clock: FakeClock) -> None:
    runs, files, _ = _store(clock)
    spec = load_profile("fast").workflows["workflow_invoice"]
    texts = {"PROCESSED": INVOICE, "NEEDS_REVIEW": "Total: 10,000.00", "FAILED": "no amount"}
    for expected, text in texts.items():
        run = runs.create("workflow_invoice", spec, [files.add(name="x.txt", type_="TXT", text=text, at=0)], {})
        assert run.outcome == expected
    assert run.failure_reason == "PARSING_ERROR" and "total" in (run.failure_message or "")


def test_weighted_outcomes_are_reproducible_with_a_seed(clock: FakeClock) -> None:
    spec = load_profile("fast").workflows["workflow_mixed"]

    def outcomes() -> list[str]:
        runs = RunStore(clock=clock, rng=random.Random(42))
        return [runs.create("m", spec, [], {}).outcome for _ in range(200)]

    first = outcomes()
    assert first == outcomes()
    assert 100 < first.count("PROCESSED") < 180 and first.count("FAILED") > 10 and first.count("NEEDS_REVIEW") > 5


def test_batch_slots_are_paced_behind_earlier_batches(clock: FakeClock) -> None:
    runs, _, _ = _store(clock)
    assert runs.batch_slots(3, per_second=2) == [clock.now, clock.now + 0.5, clock.now + 1.0]
    assert runs.batch_slots(1, per_second=2) == [clock.now + 1.5]


def test_query_filters_sorts_and_pages_by_cursor(clock: FakeClock) -> None:
    runs, files, _ = _store(clock)
    created = []
    for i in range(5):
        created.append(runs.create("w", SPEC, [files.add(name=f"inv-{i}.pdf", type_="PDF", text="", at=0)], {}))
        clock.advance(1)
    page, after = runs.query(RunQuery(sort_by="createdAt", descending=False, limit=2))
    assert [r.id for r, _ in page] == [created[0].id, created[1].id] and after is not None
    page, after = runs.query(RunQuery(sort_by="createdAt", descending=False, limit=2, after=after))
    assert [r.id for r, _ in page] == [created[2].id, created[3].id]
    page, after = runs.query(RunQuery(sort_by="createdAt", descending=False, limit=2, after=after))
    assert [r.id for r, _ in page] == [created[4].id] and after is None
    only, _ = runs.query(RunQuery(name_contains="INV-3", limit=10))
    assert [r.id for r, _ in only] == [created[3].id]
    processing, _ = runs.query(RunQuery(status="PROCESSED", limit=10))
    assert {r.id for r, _ in processing} == {run.id for run in created[:3]}  # each ends 3 s after creation


def test_terminal_statuses_are_the_webhook_ones() -> None:
    assert [s for s in ("PENDING", "PROCESSING", "CANCELLING") if is_terminal(s)] == []
    assert all(is_terminal(s) for s in ("PROCESSED", "FAILED", "NEEDS_REVIEW", "REJECTED", "CANCELLED"))


def test_a_rejected_outcome_ends_reviewed_and_rejected_at_the_run_end(clock: FakeClock) -> None:
    # Given a workflow whose runs are rejected in review
    runs, _, due = _store(clock)
    spec = SPEC.model_copy(update={"outcomes": {"REJECTED": 1}, "reviewer": "ann@example.com"})
    run = runs.create("w", spec, [], {})
    # Then it processes like any run, with no review shown yet
    clock.advance(1.5)
    assert (runs.state(run).status, runs.state(run).review) == ("PROCESSING", None)
    # And at its end it is REJECTED by the reviewer, without passing through NEEDS_REVIEW
    clock.advance(1.5)
    state = runs.state(run)
    assert (state.status, state.updated_at, state.ended_at) == ("REJECTED", run.end_at, run.end_at)
    assert state.review is not None
    assert (state.review.reviewer, state.review.note, state.review.approved) == (
        "ann@example.com",
        "Rejected in review",
        False,
    )
    assert due == [(run.id, run.end_at)]
    with pytest.raises(InvalidTransition):
        runs.review(run, approved=True, reviewer="a@b.c", note=None)


def test_a_cancelled_outcome_goes_through_cancelling_and_ends_on_time(clock: FakeClock) -> None:
    runs, _, due = _store(clock)
    spec = SPEC.model_copy(update={"outcomes": {"CANCELLED": 1}})
    run = runs.create("w", spec, [], {}, cancel_s=0.5)
    created = clock.now
    statuses = [(state_at(run, created + t).status, state_at(run, created + t).updated_at) for t in (0.5, 2, 2.5, 3)]
    assert statuses == [
        ("PENDING", created),
        ("PROCESSING", created + 1),
        ("CANCELLING", created + 2.5),
        ("CANCELLED", created + 3),
    ]
    final = state_at(run, created + 10)
    assert (final.status, final.started_at, final.ended_at) == ("CANCELLED", created + 1, created + 3)
    assert due == [(run.id, created + 3)]


def test_a_cancel_by_the_client_comes_before_a_planned_one(clock: FakeClock) -> None:
    runs, _, _ = _store(clock)
    run = runs.create("w", SPEC.model_copy(update={"outcomes": {"CANCELLED": 1}}), [], {}, cancel_s=0.5)
    clock.advance(1.2)
    runs.cancel(run, cancel_s=0.2)
    clock.advance(0.2)
    ended = clock.now
    clock.advance(5)  # past the planned cancel, which never happens
    assert (runs.state(run).status, runs.state(run).ended_at) == ("CANCELLED", ended)


def test_a_run_in_its_planned_cancelling_cannot_be_cancelled_again(clock: FakeClock) -> None:
    runs, _, _ = _store(clock)
    run = runs.create("w", SPEC.model_copy(update={"outcomes": {"CANCELLED": 1}}), [], {}, cancel_s=0.5)
    clock.advance(2.7)
    assert runs.state(run).status == "CANCELLING"
    with pytest.raises(InvalidTransition):
        runs.cancel(run, cancel_s=0.2)


def test_a_planned_cancel_shorter_than_cancel_s_starts_with_processing(clock: FakeClock) -> None:
    runs, _, _ = _store(clock)
    spec = SPEC.model_copy(update={"outcomes": {"CANCELLED": 1}, "duration_s": (0.1, 0.1)})
    run = runs.create("w", spec, [], {}, cancel_s=5)
    assert (run.cancel_at, run.cancel_done_at) == (run.start_at, run.end_at)
    assert state_at(run, run.start_at).started_at == run.start_at


def test_weighted_outcomes_include_rejected_and_cancelled(clock: FakeClock) -> None:
    spec = SPEC.model_copy(update={"outcomes": {"REJECTED": 1, "CANCELLED": 1, "PROCESSED": 0}})
    runs = RunStore(clock=clock, rng=random.Random(5))
    outcomes = {runs.create("w", spec, [], {}).outcome for _ in range(50)}
    assert outcomes == {"REJECTED", "CANCELLED"}


def test_secrets_are_kept_on_the_record(clock: FakeClock) -> None:
    runs, _, _ = _store(clock)
    assert runs.create("w", SPEC, [], {}, secrets={"token": "t"}).secrets == {"token": "t"}
    assert runs.create("w", SPEC, [], {}).secrets is None
