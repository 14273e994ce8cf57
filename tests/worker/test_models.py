from __future__ import annotations

import json

import pytest

from extendq.errors import InvalidJobRequest
from extendq.worker.models import JOB_ID_KEY, JobRequest


def _request(**overrides: object) -> dict[str, object]:
    return {"workflow": "workflow_invoice", "file": {"text": "Invoice #: 1\nTotal: 10.00"}, **overrides}


def test_workflow_may_be_an_id_or_a_reference() -> None:
    assert JobRequest.parse(_request()).workflow.id == "workflow_invoice"
    versioned = JobRequest.parse(_request(workflow={"id": "workflow_x", "version": "3"}))
    assert versioned.workflow.version == "3"


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"workflow": ""}, "workflow"),
        ({"workflow": None}, "workflow"),
        ({"file": {}}, "exactly one of url, id, text or path"),
        ({"file": {"url": "https://x/a.pdf", "text": "t"}}, "exactly one of url, id, text or path"),
        ({"file": {"url": "not a url"}}, "file"),
        ({"file": {"id": ""}}, "file"),
        ({"file": {"text": ""}}, "file"),
        ({"file": {"path": ""}}, "file"),
        ({"package": {"files": [{"id": "file_1"}, {"id": "file_2"}]}}, "exactly one of file or package"),
        ({"file": None, "package": {"files": [{"id": "file_1"}]}}, "package.files"),
        ({"file": None, "package": {"files": [{"id": f"file_{i}"} for i in range(51)]}}, "package.files"),
        ({"file": None, "package": {"files": [{"id": "a"}, {"text": "b"}]}}, "raw text is not allowed"),
        ({"file": None, "package": {"files": [{"id": "a"}, {"id": "a"}]}}, "same file twice"),
        ({"metadata": {"x": "y" * 10_300}}, "limit is 10240"),
        ({"metadata": {"extendq:job_id": "spoof"}}, "reserved"),
        ({"metadata": {"when": float("nan")}}, "JSON-serialisable"),
        ({"priority": 0}, "priority"),
        ({"job_key": "has space"}, "job_key"),
        ({"deadline_s": -1}, "deadline_s"),
        ({"secrets": {"token": "plain"}}, "plaintext is refused"),
        ({"unexpected": 1}, "unexpected"),
    ],
)
def test_bad_requests_are_refused_with_the_field_named(overrides: dict[str, object], needle: str) -> None:
    with pytest.raises(InvalidJobRequest) as caught:
        JobRequest.parse(_request(**overrides))
    assert needle in str(caught.value)


def test_refusal_never_echoes_input_values() -> None:
    with pytest.raises(InvalidJobRequest) as caught:
        JobRequest.parse(_request(secrets={"api_token": "sentinel-secret-value"}))
    assert "sentinel-secret-value" not in str(caught.value)


def test_usage_tags_are_cleaned_not_refused() -> None:
    request = JobRequest.parse(_request(metadata={"extend:usage_tags": ["team a!", "ok_1-2", "!!!"]}))
    assert request.metadata["extend:usage_tags"] == ["teama", "ok_1-2"]


def test_metadata_limit_counts_extendq_keys() -> None:
    room = 10 * 1024 - len(json.dumps({"x": "", JOB_ID_KEY: "0" * 36}, separators=(",", ":")))
    JobRequest.parse(_request(metadata={"x": "y" * room}))
    with pytest.raises(InvalidJobRequest):
        JobRequest.parse(_request(metadata={"x": "y" * (room + 1)}))


def test_run_metadata_carries_job_id_and_key() -> None:
    request = JobRequest.parse(_request(metadata={"a": 1}, job_key="order-7"))
    assert request.run_metadata("job-1") == {"a": 1, "extendq:job_id": "job-1", "extendq:job_key": "order-7"}


def test_wire_round_trips() -> None:
    request = JobRequest.parse(_request(priority=5, deadline_s=60))
    assert JobRequest.parse(request.wire()) == request


def test_needs_review_is_result_or_watch_and_the_default_stays_off_the_wire() -> None:
    plain = JobRequest.parse({"workflow": "w", "file": {"id": "file_1"}})
    watched = JobRequest.parse({"workflow": "w", "file": {"id": "file_1"}, "needs_review": "watch"})
    assert plain.needs_review == "result" and "needs_review" not in plain.wire()
    assert watched.wire()["needs_review"] == "watch" and JobRequest.parse(watched.wire()) == watched
    with pytest.raises(InvalidJobRequest, match="needs_review"):
        JobRequest.parse({"workflow": "w", "file": {"id": "file_1"}, "needs_review": "later"})
