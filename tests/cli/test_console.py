"""Tests for extendq.cli.console: outcomes from runs, the follow loop, totals and the tables (no Redis, no Celery)."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console

from extendq.cli import console as console_module
from extendq.cli.console import (
    Outcome,
    Tracked,
    extracted_fields,
    follow,
    outcome_of_run,
    percentile,
    summary,
    summary_table,
)
from extendq.cli.outcome_table import outcomes_table
from extendq.worker.models import JobState

FIELDS = {"invoice_number": "INV-1", "invoice_date": "2026-10-03", "vendor": "Acme", "total": 954.98, "currency": "EUR"}


def run(status: str = "PROCESSED", **extra: Any) -> dict[str, Any]:
    """A terminal run shaped like the API's, with the EXTRACT step's output when it has one."""
    output = {"value": {**FIELDS, "ignored": 1}, "metadata": {}} if status != "FAILED" else None
    step = {"stepType": "EXTRACT", "result": {"extractRun": {"status": status, "output": output}}}
    return {"id": "workflow_run_1", "status": status, "stepRuns": [step], **extra}


def render(renderable: Any) -> str:
    out = Console(file=io.StringIO(), width=200)
    out.print(renderable)
    return out.file.getvalue()  # type: ignore[attr-defined]


def test_percentiles_interpolate() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0], 95) == 3.0
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0], 95) == pytest.approx(3.85)


def test_fields_come_from_the_extract_step() -> None:
    assert extracted_fields(run()) == FIELDS
    assert extracted_fields(run("FAILED")) == {}
    assert extracted_fields({"status": "PROCESSED", "stepRuns": None}) == {}


def test_a_processed_run_is_ok_and_as_expected() -> None:
    outcome = outcome_of_run(Tracked("job-1", "a.txt", "PROCESSED"), run(), 1.5)
    assert (outcome.done, outcome.ok, outcome.as_expected) == (True, True, True)
    assert (outcome.run_id, outcome.latency_s, outcome.note) == ("workflow_run_1", 1.5, None)


def test_a_failed_run_notes_its_reason() -> None:
    outcome = outcome_of_run(Tracked("job-1", "a.txt", "FAILED"), run("FAILED", failureReason="PARSING_ERROR"), 1.0)
    assert not outcome.ok and outcome.as_expected
    assert outcome.note == "PARSING_ERROR"


def test_an_unexpected_status_is_noted() -> None:
    outcome = outcome_of_run(Tracked("job-1", "a.txt", "PROCESSED"), run("NEEDS_REVIEW"), 1.0)
    assert not outcome.as_expected
    assert outcome.note == "expected PROCESSED"


class FakeReader:
    """Jobs that end after a given number of polls."""

    def __init__(self, polls: dict[str, int]) -> None:
        self.polls = polls

    def peek(self, job_id: str) -> tuple[JobState, str | None]:
        self.polls[job_id] -= 1
        return (JobState.SUCCESS, "PROCESSED") if self.polls[job_id] <= 0 else (JobState.RUNNING, "PROCESSING")

    def outcome(self, job: Tracked) -> Outcome:
        if self.polls[job.job_id] <= 0:
            return Outcome(job.job_id, job.label, JobState.SUCCESS, run_status="PROCESSED", latency_s=1.0)
        return Outcome(job.job_id, job.label, JobState.RUNNING, run_status="PROCESSING")


def test_follow_returns_outcomes_in_job_order_once_all_ended() -> None:
    jobs = [Tracked("a", "a.txt"), Tracked("b", "b.txt"), Tracked("c", "c.txt")]
    out = Console(file=io.StringIO(), width=120)
    outcomes = follow(jobs, FakeReader({"a": 3, "b": 1, "c": 2}), console=out, interval_s=0.001)
    assert [(o.job_id, o.done) for o in outcomes] == [("a", True), ("b", True), ("c", True)]
    shown = out.file.getvalue()  # type: ignore[attr-defined]
    assert "3/3" in shown and "state: SUCCESS 3" in shown and "run status: PROCESSED 3" in shown
    assert shown.endswith("\n")


def test_follow_stops_at_its_timeout_with_jobs_still_in_flight() -> None:
    jobs = [Tracked("a", "a.txt")]
    outcomes = follow(jobs, FakeReader({"a": 10**6}), console=Console(file=io.StringIO()), timeout_s=0.05)
    assert [(o.done, o.state, o.run_status) for o in outcomes] == [(False, JobState.RUNNING, "PROCESSING")]


def test_summary_counts_states_run_statuses_latency_and_api_calls() -> None:
    outcomes = [
        Outcome("a", "a", JobState.SUCCESS, run_status="PROCESSED", latency_s=1.0),
        Outcome("b", "b", JobState.SUCCESS, run_status="PROCESSED", latency_s=3.0),
        Outcome("c", "c", JobState.SUCCESS, run_status="FAILED", latency_s=2.0, expected="FAILED"),
        Outcome("d", "d", JobState.RUNNING, run_status="PROCESSING"),
    ]
    totals = summary(outcomes, api_calls=18, elapsed_s=4.25)
    assert totals["by_state"] == {"SUCCESS": 3, "RUNNING": 1}
    assert totals["by_run_status"] == {"PROCESSED": 2, "FAILED": 1, "PROCESSING": 1}
    assert totals["unexpected"] == 1
    assert (totals["latency_p50_s"], totals["api_calls_per_job"], totals["elapsed_s"]) == (2.0, 4.5, 4.25)
    shown = render(summary_table(totals))
    assert "18 (4.5 per job)" in shown and "p50 2.0s" in shown and "4 in 4.2s" in shown


def test_api_calls_are_left_out_when_unknown() -> None:
    totals = summary([Outcome("a", "a", JobState.SUCCESS, run_status="PROCESSED", latency_s=1.0)])
    assert totals["api_calls"] is None and totals["api_calls_per_job"] is None
    assert "Extend API calls" not in render(summary_table(totals))


def test_the_table_shows_fields_time_and_expectation() -> None:
    outcomes = [
        outcome_of_run(Tracked("a", "invoices/acme.txt", "PROCESSED"), run(), 2.345),
        outcome_of_run(Tracked("b", "invoices/slip.txt", "FAILED"), run("FAILED", failureReason="PARSING_ERROR"), 1),
    ]
    shown = render(outcomes_table(outcomes, title="demo"))
    row = next(line for line in shown.splitlines() if "invoices/acme.txt" in line)
    for cell in ("SUCCESS", "PROCESSED ✓", "INV-1", "2026-10-03", "Acme", "954.98 EUR", "2.3s"):
        assert cell in row
    assert "PARSING_ERROR" in shown and "✓ ended as expected" in shown


def test_the_table_has_no_note_column_or_caption_when_not_needed() -> None:
    shown = render(outcomes_table([outcome_of_run(Tracked("a", "a.txt"), run(), 1.0)]))
    assert "note" not in shown and "expected" not in shown


def test_outcomes_serialise_to_plain_json() -> None:
    body = outcome_of_run(Tracked("a", "a.txt", "PROCESSED"), run(), 1.23456).to_json()
    assert body == {
        "job_id": "a",
        "input": "a.txt",
        "done": True,
        "state": "SUCCESS",
        "run_status": "PROCESSED",
        "run_id": "workflow_run_1",
        "fields": FIELDS,
        "latency_s": 1.235,
        "note": None,
        "expected_run_status": "PROCESSED",
    }


def test_exported_names_exist() -> None:
    for name in console_module.__all__:
        assert hasattr(console_module, name), name
