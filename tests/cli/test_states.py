"""One vocabulary of job states: the code's `JobState`, the README's table, and how Celery's word maps onto it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from extendq.cli import states
from extendq.cli.manifest import BadInput
from extendq.cli.states import LIST_FILTERS, UnknownJob, job_state, known, list_filters
from extendq.worker.models import JobState

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_states() -> list[str]:
    """The first cell of each row of the table under the README's `### Job states`."""
    section = README.read_text(encoding="utf-8").split("### Job states", 1)[1].split("\n#", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return [re.match(r"\| `([A-Z_]+)` \|", row).group(1) for row in rows]  # type: ignore[union-attr]


def test_the_readme_table_lists_exactly_the_job_states_in_code_in_their_order() -> None:
    assert readme_states() == [state.value for state in JobState]


def test_every_readme_row_says_which_commands_show_the_state() -> None:
    section = README.read_text(encoding="utf-8").split("### Job states", 1)[1].split("\n#", 1)[0]
    for row in (line for line in section.splitlines() if line.startswith("| `")):
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert len(cells) == 3 and cells[1] and "`status`" in cells[2], row


@pytest.mark.parametrize(
    ("celery", "recorded", "expected"),
    [
        ("SUCCESS", JobState.RUNNING, JobState.SUCCESS),
        ("FAILURE", None, JobState.FAILURE),
        ("REVOKED", JobState.QUEUED, JobState.FAILURE),
        ("PENDING", JobState.SUBMITTING, JobState.SUBMITTING),
        ("RUNNING", JobState.RUNNING, JobState.RUNNING),
        ("RUNNING", None, JobState.RUNNING),
        ("PENDING", None, None),
        ("RETRY", None, None),
    ],
)
def test_celerys_state_and_the_record_give_one_job_state(
    celery: str, recorded: JobState | None, expected: JobState | None
) -> None:
    assert job_state(celery, recorded) == expected


def test_a_job_is_known_when_recorded_meanwhile() -> None:
    # Given a record that appears while the broker is searched (a worker took the message)
    answers = iter([False, True])
    assert known("j", recorded=lambda _: next(answers), waiting=lambda _: False)
    assert not known("j", recorded=lambda _: False, waiting=lambda _: False)


def test_the_unknown_job_message_names_the_id() -> None:
    error = UnknownJob("abc")
    assert isinstance(error, BadInput) and str(error) == "unknown job abc (or its record expired)"


def test_list_filters_are_job_states_and_run_statuses() -> None:
    assert list_filters(["FAILED", "success"]) == ["FAILED", "success"]
    assert {"success", "failure", "processed", "needs_review"} <= set(LIST_FILTERS)
    assert "queued" not in LIST_FILTERS  # `list` shows finished jobs only
    with pytest.raises(BadInput, match="unknown state 'pending'"):
        list_filters(["pending"])


def test_exported_names_exist() -> None:
    for name in states.__all__:
        assert hasattr(states, name), name
