"""Every validation error arrives as the SDK's typed exception, with the contract's error body."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from extend_ai import Extend
from extend_ai.errors import BadRequestError, NotFoundError, UnauthorizedError

from tests.emulator.conftest import NO_RETRY
from tests.support.emulator import EmulatorProcess

WORKFLOW: Any = {"id": "workflow_processed"}
URLS: Any = [{"url": f"https://x.test/{i}.pdf"} for i in range(51)]


def _body(error: Any) -> dict[str, Any]:
    body = error.body
    assert set(body) >= {"code", "message", "retryable", "requestId"}
    return dict(body)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "Exactly one of 'file' or 'package'"),
        ({"file": {"text": "x"}, "package": {"files": URLS[:2]}}, "Exactly one of 'file' or 'package'"),
        ({"package": {"files": URLS[:1]}}, "2 to 50 files"),
        ({"package": {"files": URLS}}, "2 to 50 files"),
        ({"package": {"files": [{"text": "a"}, {"text": "b"}]}}, "not raw text"),
        ({"package": {"files": [URLS[0], URLS[0]]}}, "duplicate"),
        ({"file": {"name": "nothing.pdf"}}, "exactly one of 'url', 'id' or 'text'"),
        ({"file": {"text": "x"}, "metadata": {"blob": "x" * 10_300}}, "limit is 10240 bytes"),
        ({"file": {"text": "x"}, "metadata": {"extend:usage_tags": "not-a-list"}}, "list of strings"),
    ],
)
def test_create_validation_errors_are_bad_requests(client: Extend, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequestError) as raised:
        client.workflow_runs.create(workflow=WORKFLOW, request_options=NO_RETRY, **kwargs)
    body = _body(raised.value)
    assert body["code"] == "INVALID_REQUEST" and body["retryable"] is False
    assert message in body["message"]


def test_metadata_of_exactly_10240_bytes_is_accepted(client: Extend) -> None:
    padding = 10240 - len('{"blob":""}')
    run = client.workflow_runs.create(workflow=WORKFLOW, file={"text": "x"}, metadata={"blob": "x" * padding})
    assert len(run.metadata["blob"]) == padding
    with pytest.raises(BadRequestError):
        client.workflow_runs.update(run.id, metadata={"more": 1})


def test_batch_limits(client: Extend) -> None:
    too_many: Any = [{"file": {"text": "x"}}] * 1001
    with pytest.raises(BadRequestError, match="1 to 1000"):
        client.workflow_runs.create_batch(workflow=WORKFLOW, inputs=too_many, request_options=NO_RETRY)
    with pytest.raises(BadRequestError) as raised:
        client.workflow_runs.create_batch(workflow=WORKFLOW, inputs=[], request_options=NO_RETRY)
    assert "1 to 1000" in _body(raised.value)["message"]
    with pytest.raises(BadRequestError):
        client.workflow_runs.create_batch(workflow=WORKFLOW, inputs=[{"file": {}}], request_options=NO_RETRY)  # type: ignore[typeddict-item]


def test_unknown_workflow_run_and_file_are_not_found(client: Extend) -> None:
    with pytest.raises(NotFoundError):
        client.workflow_runs.create(workflow={"id": "workflow_nope"}, file={"text": "x"})
    with pytest.raises(NotFoundError):
        client.workflow_runs.create(workflow=WORKFLOW, file={"id": "file_nope"})
    with pytest.raises(NotFoundError):
        client.workflow_runs.create_batch(workflow=WORKFLOW, inputs=[{"file": {"id": "file_nope"}}])
    for call in (
        lambda: client.workflow_runs.retrieve("workflow_run_nope"),
        lambda: client.workflow_runs.update("workflow_run_nope", metadata={}),
        lambda: client.workflow_runs.delete("workflow_run_nope"),
        lambda: client.workflow_runs.cancel("workflow_run_nope"),
        lambda: client.files.retrieve("file_nope"),
        lambda: client.files.delete("file_nope"),
    ):
        with pytest.raises(NotFoundError) as raised:
            call()
        assert _body(raised.value)["code"] == "NOT_FOUND"


def test_bad_list_parameters_are_bad_requests(client: Extend) -> None:
    with pytest.raises(BadRequestError):
        client.workflow_runs.list(max_page_size=0)
    with pytest.raises(BadRequestError):
        client.workflow_runs.list(next_page_token="!!not-a-token!!")
    with pytest.raises(BadRequestError):
        client.workflow_runs.list(status="DONE")  # type: ignore[arg-type]


def test_malformed_json_is_a_bad_request(emulator: EmulatorProcess) -> None:
    headers = {"Authorization": "Bearer k", "x-extend-api-version": "2026-02-09", "content-type": "application/json"}
    response = httpx.post(f"{emulator.url}/workflow_runs", content=b'{"workflow": ', headers=headers)
    assert response.status_code == 400 and response.json()["message"] == "Malformed JSON body"


def test_a_missing_api_version_is_a_bad_request(emulator: EmulatorProcess) -> None:
    response = httpx.get(f"{emulator.url}/workflow_runs", headers={"Authorization": "Bearer k"})
    assert response.status_code == 400 and "x-extend-api-version" in response.json()["message"]


def test_wrong_api_key_is_unauthorized(receiver: Any) -> None:
    with EmulatorProcess(profile="fast", api_keys=["right-key"]) as process, httpx.Client() as http:
        wrong = Extend(token="wrong-key", base_url=process.url, httpx_client=http)
        with pytest.raises(UnauthorizedError) as raised:
            wrong.workflow_runs.list()
        assert _body(raised.value)["code"] == "UNAUTHORIZED"
        right = Extend(token="right-key", base_url=process.url, httpx_client=http)
        assert right.workflow_runs.list().data == []
