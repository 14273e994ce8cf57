"""The app in-process on an injected clock: every response validates strictly with the SDK's models."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from extend_ai.files.types import FilesDeleteResponse, FilesListResponse
from extend_ai.types import ApiError, File, WorkflowRun
from extend_ai.workflow_runs.types import (
    WorkflowRunsCreateBatchResponse,
    WorkflowRunsDeleteResponse,
    WorkflowRunsListResponse,
)

from extendq.emulator.profiles import load_profile
from tests.emulator.conftest import API_HEADERS, INVOICE, FakeClock

pytestmark = pytest.mark.anyio

Local = Callable[..., Any]
STATUS_TEXTS = {"workflow_processed": "x", "workflow_failed": "x", "workflow_review": "x", "workflow_invoice": INVOICE}


def _valid(model: Any, response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    model.model_validate(response.json())
    model.model_validate_json(response.content)
    return dict(response.json()) if isinstance(response.json(), dict) else {"data": response.json()}


async def _create(http: httpx.AsyncClient, workflow: str = "workflow_processed", **body: Any) -> dict[str, Any]:
    body.setdefault("file", {"text": INVOICE, "name": "invoice.txt"})
    return _valid(WorkflowRun, await http.post("/workflow_runs", json={"workflow": {"id": workflow}, **body}))


async def test_every_run_status_validates_as_workflow_run_and_summary(local: Local, clock: FakeClock) -> None:
    async with local() as http:
        ids = {wf: (await _create(http, wf))["id"] for wf in STATUS_TEXTS}
        cancelled = (await _create(http))["id"]
        seen = {(await http.get(f"/workflow_runs/{cancelled}")).json()["status"]}
        _valid(WorkflowRun, await http.post(f"/workflow_runs/{cancelled}/cancel"))
        seen.add((await http.get(f"/workflow_runs/{cancelled}")).json()["status"])
        clock.advance(0.5)
        for run_id in ids.values():
            seen.add(_valid(WorkflowRun, await http.get(f"/workflow_runs/{run_id}"))["status"])
        rejected = await http.post(f"/_emulator/runs/{ids['workflow_review']}/review", json={"decision": "reject"})
        seen.add(_valid(WorkflowRun, rejected)["status"])
        seen.add(_valid(WorkflowRun, await http.get(f"/workflow_runs/{cancelled}"))["status"])
        listed = _valid(WorkflowRunsListResponse, await http.get("/workflow_runs", params={"maxPageSize": 100}))
    assert seen >= {"PENDING", "CANCELLING", "CANCELLED", "PROCESSED", "FAILED", "NEEDS_REVIEW", "REJECTED"}
    assert {run["status"] for run in listed["data"]} >= {"PROCESSED", "FAILED", "REJECTED", "CANCELLED"}


async def test_a_processed_run_is_complete(local: Local, clock: FakeClock) -> None:
    async with local() as http:
        created = await _create(http, "workflow_invoice", metadata={"jobId": "j-1"})
        assert created["stepRuns"] == [] and created["usage"] is None and created["endTime"] is None
        clock.advance(1)
        run = _valid(WorkflowRun, await http.get(f"/workflow_runs/{created['id']}"))
    assert run["status"] == "PROCESSED" and run["metadata"] == {"jobId": "j-1"}
    assert run["initialRunAt"] <= run["startTime"] < run["endTime"]
    assert run["usage"]["credits"] > 0 and run["usage"]["breakdown"][0]["object"] == "extract_run"
    (step,) = run["stepRuns"]
    assert (step["stepType"], step["status"]) == ("EXTRACT", "PROCESSED")
    assert step["result"]["extractRun"]["output"]["value"] == {
        "invoice_number": "INV-2026-0042",
        "invoice_date": "2026-10-03",
        "vendor": "Acme GmbH",
        "total": 980.0,
        "currency": "EUR",
    }
    for field in ("batchId", "failureReason", "failureMessage", "reviewedByUser", "reviewedAt", "rejectionNote"):
        assert field in run and run[field] is None


async def test_a_content_failure_explains_itself(local: Local, clock: FakeClock) -> None:
    async with local() as http:
        created = await _create(http, "workflow_receipt", file={"url": "https://files.example/r/receipt-9.pdf"})
        clock.advance(1)
        run = (await http.get(f"/workflow_runs/{created['id']}")).json()
    assert (run["status"], run["failureReason"]) == ("FAILED", "PARSING_ERROR")
    assert "total" in run["failureMessage"]
    assert run["files"][0]["name"] == "receipt-9.pdf" and run["files"][0]["type"] == "PDF"


async def test_updated_at_is_the_time_of_the_last_transition(local: Local, clock: FakeClock) -> None:
    async with local() as http:
        run_id = (await _create(http))["id"]
        clock.advance(5)
        first = (await http.get("/workflow_runs")).json()["data"][0]
        clock.advance(5)
        await http.post(f"/workflow_runs/{run_id}", json={"metadata": {"k": "v"}})
        second = (await http.get("/workflow_runs")).json()["data"][0]
        full = (await http.get("/_emulator/runs")).json()["data"][0]
    assert first["updatedAt"] == second["updatedAt"] == full["updatedAt"] == full["endTime"]


async def test_files_validate_and_presigned_urls_download(local: Local) -> None:
    async with local() as http:
        upload = await http.post("/files/upload", files={"file": ("inv.txt", INVOICE.encode(), "text/plain")})
        file = _valid(File, upload)
        assert "presignedUrl" not in file and file["type"] == "TXT"
        fetched = _valid(File, await http.get(f"/files/{file['id']}"))
        download = await http.get(fetched["presignedUrl"].removeprefix("http://emu"))
        assert download.content == INVOICE.encode()
        tampered = await http.get(fetched["presignedUrl"].removeprefix("http://emu")[:-4] + "0000")
        assert tampered.status_code == 404
        _valid(FilesListResponse, await http.get("/files"))
        by_url = await _create(http, "workflow_invoice", file={"url": fetched["presignedUrl"]})
        run = (await http.get("/_emulator/runs")).json()["data"][0]
        _valid(FilesDeleteResponse, await http.delete(f"/files/{file['id']}"))
        _valid(ApiError, await http.get(f"/files/{file['id']}"), 404)
    assert run["id"] == by_url["id"] and run["status"] in ("PENDING", "PROCESSING")
    assert by_url["files"][0]["name"] == "content"


async def test_batch_list_and_delete_responses_validate(local: Local) -> None:
    async with local() as http:
        body = {"workflow": {"id": "workflow_mixed"}, "inputs": [{"file": {"text": "a"}, "metadata": {"i": 1}}]}
        batch = _valid(WorkflowRunsCreateBatchResponse, await http.post("/workflow_runs/batch", json=body))
        listed = _valid(
            WorkflowRunsListResponse, await http.get("/workflow_runs", params={"batchId": batch["batchId"]})
        )
        run_id = listed["data"][0]["id"]
        assert listed["data"][0]["batchId"] == batch["batchId"] and listed["nextPageToken"] is None
        _valid(WorkflowRunsDeleteResponse, await http.delete(f"/workflow_runs/{run_id}"))
        _valid(ApiError, await http.get(f"/workflow_runs/{run_id}"), 404)


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "UNAUTHORIZED"),
        ({"Authorization": "Bearer "}, 401, "UNAUTHORIZED"),
        ({"Authorization": "Basic abc", "x-extend-api-version": "2026-02-09"}, 401, "UNAUTHORIZED"),
        ({"Authorization": "Bearer k"}, 400, "INVALID_REQUEST"),
        ({**API_HEADERS, "x-emulator-scenario": "explode"}, 400, "INVALID_REQUEST"),
    ],
)
async def test_auth_and_version_headers_are_required(
    local: Local, headers: dict[str, str], status: int, code: str
) -> None:
    async with local() as http:
        request = http.build_request("GET", "/workflow_runs")
        for name in ("authorization", "x-extend-api-version"):
            del request.headers[name]
        request.headers.update(headers)
        response = await http.send(request)
    body = _valid(ApiError, response, status)
    assert body["code"] == code and body["retryable"] is False and body["requestId"].startswith("req_")


async def test_only_configured_api_keys_are_accepted(local: Local) -> None:
    async with local(api_keys=["key-a"]) as http:
        assert (await http.get("/workflow_runs", headers={"Authorization": "Bearer key-b"})).status_code == 401
        assert (await http.get("/workflow_runs", headers={"Authorization": "Bearer key-a"})).status_code == 200


async def test_unknown_routes_and_methods_use_the_error_body(local: Local) -> None:
    async with local() as http:
        assert _valid(ApiError, await http.get("/nope"), 404)["code"] == "NOT_FOUND"
        assert _valid(ApiError, await http.put("/workflow_runs/x"), 405)["code"] == "METHOD_NOT_ALLOWED"
        stats = (await http.get("/_emulator/stats")).json()
    assert stats["requests"] == {"GET <unmatched>": {"404": 1}, "PUT /workflow_runs/{id}": {"405": 1}}


async def test_rate_limit_answers_429_with_retry_after(local: Local, clock: FakeClock) -> None:
    profile = {"base": "fast", "rate_limit": {"requests_per_second": 2, "runs_per_minute": 1}}
    async with local() as http:
        assert (await http.put("/_emulator/profile", json=profile)).status_code == 200
        await _create(http)
        second = await http.post(
            "/workflow_runs", json={"workflow": {"id": "workflow_processed"}, "file": {"text": "x"}}
        )
        third = await http.get("/workflow_runs")
        clock.advance(1)
        assert (await http.get("/workflow_runs")).status_code == 200
        log = (await http.get("/_emulator/requests")).json()
        stats = (await http.get("/_emulator/stats")).json()
    assert (second.status_code, second.headers["retry-after"]) == (429, "60")
    assert (third.status_code, third.headers["retry-after"]) == (429, "1")
    assert _valid(ApiError, third, 429)["retryable"] is True
    assert [(e["status"], e["retryAfter"]) for e in log] == [(200, None), (429, 60), (429, 1), (200, None)]
    assert stats["rate_limited"] == 2


async def test_admin_routes_are_neither_limited_nor_faulted_nor_logged(local: Local) -> None:
    profile = {"base": "fast", "rate_limit": {"requests_per_second": 1}, "faults": {"error_rate": 1.0}}
    async with local() as http:
        await http.put("/_emulator/profile", json=profile)
        answers = [(await http.get("/_emulator/stats")).status_code for _ in range(5)]
        assert (await http.get("/workflow_runs")).status_code in (500, 502, 503, 408)
        assert (await http.get("/_emulator/requests")).json()[0]["route"] == "/workflow_runs"
    assert answers == [200] * 5


async def test_profile_put_is_validated_and_get_returns_it(local: Local) -> None:
    async with local() as http:
        bad = await http.put("/_emulator/profile", json={"base": "fast", "faults": {"error_rate": 3}})
        assert _valid(ApiError, bad, 400)["message"].startswith("invalid profile")
        good = await http.put("/_emulator/profile", json={"base": "payg", "seed": 5})
        current = (await http.get("/_emulator/profile")).json()
    assert good.json() == current and current["seed"] == 5 and current["rate_limit"]["runs_per_minute"] == 80


async def test_reset_forgets_runs_files_and_requests_but_keeps_the_profile(local: Local) -> None:
    async with local() as http:
        await http.put("/_emulator/profile", json={"base": "fast", "seed": 9})
        await _create(http)
        await http.post("/_emulator/reset")
        stats = (await http.get("/_emulator/stats")).json()
        assert (await http.get("/_emulator/profile")).json()["seed"] == 9
    assert (stats["runs_total"], stats["requests_total"], stats["files_total"], stats["requests"]) == (0, 0, 0, {})


async def test_review_errors(local: Local, clock: FakeClock) -> None:
    async with local() as http:
        run_id = (await _create(http, "workflow_review"))["id"]
        early = await http.post(f"/_emulator/runs/{run_id}/review", json={"decision": "approve"})
        clock.advance(1)
        odd = await http.post(f"/_emulator/runs/{run_id}/review", json={"decision": "maybe"})
        unknown = await http.post("/_emulator/runs/workflow_run_x/review", json={"decision": "approve"})
        approved = await http.post(
            f"/_emulator/runs/{run_id}/review", json={"decision": "approve", "reviewer": "ann@example.com"}
        )
    assert (early.status_code, odd.status_code, unknown.status_code) == (400, 400, 404)
    run = _valid(WorkflowRun, approved)
    assert (run["status"], run["reviewed"], run["reviewedByUser"]) == ("PROCESSED", True, "ann@example.com")
    assert run["reviewedAt"] is not None and run["stepRuns"][0]["result"]["extractRun"]["reviewed"] is True


async def test_admin_runs_filter_by_workflow(local: Local) -> None:
    async with local() as http:
        await _create(http, "workflow_processed")
        await _create(http, "workflow_failed")
        runs = (await http.get("/_emulator/runs", params={"workflowId": "workflow_failed"})).json()["data"]
    assert [r["workflow"]["id"] for r in runs] == ["workflow_failed"]


async def test_malformed_bodies_are_400(local: Local) -> None:
    async with local() as http:
        broken = await http.post("/workflow_runs", content=b"{nope", headers={"content-type": "application/json"})
        listing = await http.post("/workflow_runs", content=json.dumps([1]).encode())
        upload = await http.post("/files/upload", files={"other": ("a.txt", b"x")})
    assert [r.status_code for r in (broken, listing, upload)] == [400, 400, 400]
    assert broken.json()["message"] == "Malformed JSON body"


@pytest.mark.parametrize(
    ("workflow", "expected"),
    [
        ("workflow_rejected", ["PENDING", "PROCESSING", "REJECTED"]),
        ("workflow_cancelled", ["PENDING", "PROCESSING", "CANCELLING", "CANCELLED"]),
    ],
)
async def test_rejected_and_cancelled_outcomes_validate_at_every_step(
    local: Local, clock: FakeClock, workflow: str, expected: list[str]
) -> None:
    # Given a run of a workflow that always ends REJECTED or CANCELLED, with a queue before it
    spec = load_profile("fast").workflows[workflow].model_dump(mode="json")
    profile = {"base": "fast", "workflows": {workflow: {**spec, "queue_s": [0.02, 0.02]}}}
    seen: list[str] = []
    async with local() as http:
        await http.put("/_emulator/profile", json=profile)
        run_id = (await _create(http, workflow))["id"]
        # When it is read every 10 ms until well after its end
        for _ in range(60):
            run = _valid(WorkflowRun, await http.get(f"/workflow_runs/{run_id}"))
            if not seen or seen[-1] != run["status"]:
                seen.append(run["status"])
            listed = await http.get("/workflow_runs", params={"workflowId": workflow})
            _valid(WorkflowRunsListResponse, listed)
            clock.advance(0.01)
    # Then it went through each status in order, and every read validated strictly
    assert seen == expected
    assert run["startTime"] is not None and run["endTime"] > run["startTime"]
    if expected[-1] == "REJECTED":
        assert (run["reviewed"], run["reviewedByUser"], run["rejectionNote"]) == (
            True,
            "reviewer@example.com",
            "Rejected in review",
        )
        assert run["reviewedAt"] == run["endTime"] and run["stepRuns"][0]["result"]["extractRun"]["reviewed"]
    else:
        assert (run["reviewed"], run["reviewedByUser"], run["usage"]["credits"]) == (False, None, 0.0)
        assert run["stepRuns"][0]["status"] == "CANCELLED"


@pytest.mark.parametrize(
    ("workflow", "status", "code"),
    [("workflow_revoked", 403, "FORBIDDEN"), ("workflow_invalid", 400, "INVALID_REQUEST")],
)
async def test_refusing_workflows_answer_their_error_and_create_nothing(
    local: Local, workflow: str, status: int, code: str
) -> None:
    async with local() as http:
        single = await http.post("/workflow_runs", json={"workflow": {"id": workflow}, "file": {"text": "x"}})
        batch = await http.post(
            "/workflow_runs/batch", json={"workflow": {"id": workflow}, "inputs": [{"file": {"text": "x"}}]}
        )
        stats = (await http.get("/_emulator/stats")).json()
    for response in (single, batch):
        body = _valid(ApiError, response, status)
        assert (body["code"], body["retryable"]) == (code, False)
    assert (stats["runs_total"], stats["files_total"]) == (0, 0)


async def test_a_refusal_still_needs_a_valid_body(local: Local) -> None:
    async with local() as http:
        response = await http.post("/workflow_runs", json={"workflow": {"id": "workflow_revoked"}})
    assert (response.status_code, response.json()["code"]) == (400, "INVALID_REQUEST")


async def test_secrets_are_never_returned_by_the_extend_surface(local: Local, clock: FakeClock) -> None:
    secrets = {"apiToken": "tok-never-shown", "nested": {"k": [1, 2]}}
    async with local() as http:
        created = await http.post(
            "/workflow_runs", json={"workflow": {"id": "workflow_processed"}, "file": {"text": "x"}, "secrets": secrets}
        )
        run_id = created.json()["id"]
        await _create(http)
        batch = {"workflow": {"id": "workflow_processed"}, "inputs": [{"file": {"text": "y"}, "secrets": {"b": "2"}}]}
        await http.post("/workflow_runs/batch", json=batch)
        clock.advance(1)
        answers = [
            created,
            await http.get(f"/workflow_runs/{run_id}"),
            await http.get("/workflow_runs"),
            await http.post(f"/workflow_runs/{run_id}", json={"metadata": {"m": 1}}),
            await http.get("/_emulator/runs"),
        ]
        included = (await http.get("/_emulator/runs", params={"include": "secrets"})).json()["data"]
        bad = await http.get("/_emulator/runs", params={"include": "files"})
    for answer in answers:
        assert answer.status_code == 200
        assert b"tok-never-shown" not in answer.content and b'"secrets"' not in answer.content
    assert [run["secrets"] for run in included] == [secrets, None, {"b": "2"}]
    assert bad.status_code == 400 and "secrets" in bad.json()["message"]


@pytest.mark.parametrize("secrets", [["a"], "token", 5])
async def test_secrets_must_be_an_object(local: Local, secrets: Any) -> None:
    async with local() as http:
        single = await http.post(
            "/workflow_runs", json={"workflow": {"id": "workflow_processed"}, "file": {"text": "x"}, "secrets": secrets}
        )
        batch = await http.post(
            "/workflow_runs/batch",
            json={"workflow": {"id": "workflow_processed"}, "inputs": [{"file": {"text": "x"}, "secrets": secrets}]},
        )
    assert "'secrets' must be a JSON object" in single.json()["message"]
    assert "'inputs[0].secrets' must be a JSON object" in batch.json()["message"]


async def test_an_injected_429_uses_the_profile_retry_after(local: Local) -> None:
    profile = {"base": "fast", "faults": {"error_rate": 1.0, "error_statuses": [429], "retry_after_s": 7}}
    async with local() as http:
        await http.put("/_emulator/profile", json=profile)
        drawn = await http.post("/workflow_runs", json={"workflow": {"id": "workflow_invoice"}, "file": {"text": "x"}})
        forced = await http.get("/workflow_runs", headers={"x-emulator-scenario": "429"})
        log = (await http.get("/_emulator/requests")).json()
        stats = (await http.get("/_emulator/stats")).json()
    for response in (drawn, forced):
        body = _valid(ApiError, response, 429)
        assert (response.headers["retry-after"], body["code"], body["retryable"]) == ("7", "RATE_LIMIT_EXCEEDED", True)
        assert body["requestId"].startswith("req_")
    assert [(e["status"], e["retryAfter"], e["lost"]) for e in log] == [(429, 7, False), (429, 7, False)]
    assert stats["requests"] == {"POST /workflow_runs": {"429": 1}, "GET /workflow_runs": {"429": 1}}
    assert (stats["rate_limited"], stats["runs_total"], stats["dropped"], stats["lost"]) == (2, 0, 0, 0)
