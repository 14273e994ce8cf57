"""The table of followed jobs at a terminal's width: numbers whole, state and run status apart."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from rich.console import Console

from extendq.cli.console import Outcome, Tracked, outcome_of_run
from extendq.cli.demo import SAMPLES_DIR
from extendq.cli.outcome_table import outcomes_table
from extendq.worker.models import JobState

EXPECTED: dict[str, dict[str, Any]] = json.loads((SAMPLES_DIR / "expected.json").read_text())


def run(status: str, fields: dict[str, Any], **extra: Any) -> dict[str, Any]:
    output = {"value": fields, "metadata": {}}
    return {
        "id": "workflow_run_1",
        "status": status,
        "stepRuns": [{"result": {"extractRun": {"output": output}}}],
        **extra,
    }


def demo_outcomes() -> list[Outcome]:
    """The demo's samples as they end, with long vendors, big totals and notes, as on a real screen."""
    outcomes = []
    for index, (relative, spec) in enumerate(EXPECTED.items()):
        fields = {
            "invoice_number": spec.get("invoice_number", f"N-{index}"),
            "invoice_date": "2026-11-02",
            "vendor": "Blue Harbor Design Studio GmbH & Co. KG",
            "total": 9_999_999.99 if index == 0 else spec.get("total", 1234.5 * index),
            "currency": "EUR",
        }
        extra = {"failureReason": "PARSING_ERROR"} if spec["status"] == "FAILED" else {}
        ended = outcome_of_run(
            Tracked(f"job-{index}", relative, spec["status"]), run(spec["status"], fields, **extra), 0
        )
        ended.latency_s = 0.5 + index * 3.7
        outcomes.append(ended)
    refused = Outcome("job-x", "invoices/refused.txt", JobState.FAILURE, note="rejected: workflow not found (404)")
    return [*outcomes, refused]


def render(width: int, outcomes: list[Outcome]) -> str:
    console = Console(width=width, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(outcomes_table(outcomes, title="extendq demo: sample documents", width=console.width))
    text = console.export_text()
    console.file.close()
    return text


@pytest.mark.parametrize("width", [80, 100, 200])
def test_at_any_width_every_total_and_time_is_whole_and_the_note_is_kept(width: int) -> None:
    outcomes = demo_outcomes()
    text = render(width, outcomes)
    assert max(len(line) for line in text.splitlines()) <= width
    header = next(line for line in text.splitlines() if line.lstrip().startswith("document "))
    for column in ("state", "run status", "total", "time", "note"):
        assert column in header
    for outcome in outcomes:
        total = outcome.fields.get("total")
        if total is not None:
            assert f"{total:,.2f} EUR" in text, f"{total:,.2f}"
        if outcome.latency_s is not None:
            assert f"{outcome.latency_s:.1f}s" in text


def test_at_80_columns_the_lower_priority_columns_make_room() -> None:
    text = render(80, demo_outcomes())
    header = next(line for line in text.splitlines() if line.lstrip().startswith("document "))
    assert "date" not in header
    assert "9,999,999.99 EUR" in text and "PROCESSED ✓" in text and "NEEDS_REVIEW ✓" in text


def test_state_and_run_status_are_separate_columns() -> None:
    text = render(200, demo_outcomes())
    row = next(line for line in text.splitlines() if "refused.txt" in line)
    assert "FAILURE" in row and not re.search(r"\bERROR\b", text)
    processed = next(line for line in text.splitlines() if "PROCESSED ✓" in line)
    assert "SUCCESS" in processed
