"""The official SDK (sync and async, unchanged) against the served emulator: runs and files end to end."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from extend_ai import Extend
from extend_ai.errors import (
    BadRequestError,
    ForbiddenError,
    NotFoundError,
    PaymentRequiredError,
    UnprocessableEntityError,
)

from tests.emulator.conftest import FAST_POLL, INVOICE
from tests.support.emulator import EmulatorProcess

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
SLOW = {
    "base": "fast",
    "workflows": {"workflow_slow": {"name": "Slow", "duration_s": [5, 5], "outcomes": {"PROCESSED": 1}}},
}


def _wait_status(client: Extend, run_id: str, status: str, timeout_s: float = 5) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = client.workflow_runs.retrieve(run_id)
        if run.status == status:
            return run
        time.sleep(0.02)
    raise AssertionError(f"{run_id} never reached {status}")


@pytest.mark.parametrize(
    ("workflow", "text", "status"),
    [
        ("workflow_invoice", INVOICE, "PROCESSED"),
        ("workflow_invoice", "Invoice #: 9\nTotal: USD 25,000.00", "NEEDS_REVIEW"),
        ("workflow_receipt", "no amount at all", "FAILED"),
        ("workflow_processed", "", "PROCESSED"),
        ("workflow_failed", "", "FAILED"),
        ("workflow_review", "", "NEEDS_REVIEW"),
        ("workflow_rejected", "", "REJECTED"),
        ("workflow_cancelled", "", "CANCELLED"),
    ],
)
def test_create_and_poll_reaches_each_outcome(client: Extend, workflow: str, text: str, status: str) -> None:
    run = client.workflow_runs.create_and_poll(
        workflow={"id": workflow}, file={"text": text, "name": "doc.txt"}, polling_options=FAST_POLL
    )
    assert run.status == status
    assert run.end_time is not None and run.start_time is not None and run.usage is not None
    if status == "FAILED":
        assert run.failure_reason and run.failure_message
    else:
        assert run.step_runs[0].step_type == "EXTRACT" and run.failure_reason is None


def test_invoice_output_is_derived_from_the_text(client: Extend) -> None:
    run = client.workflow_runs.create_and_poll(
        workflow={"id": "workflow_invoice"}, file={"text": INVOICE}, polling_options=FAST_POLL
    )
    output = run.step_runs[0].result.extract_run.output  # type: ignore[union-attr]
    assert output.value == {  # type: ignore[union-attr]
        "invoice_number": "INV-2026-0042",
        "invoice_date": "2026-10-03",
        "vendor": "Acme GmbH",
        "total": 980.0,
        "currency": "EUR",
    }


@pytest.mark.parametrize(("decision", "status"), [("reject", "REJECTED"), ("approve", "PROCESSED")])
def test_review_moves_a_needs_review_run_on(
    client: Extend, emulator: EmulatorProcess, decision: str, status: str
) -> None:
    run = client.workflow_runs.create_and_poll(
        workflow={"id": "workflow_review"}, file={"text": "x"}, polling_options=FAST_POLL
    )
    emulator.review(run.id, decision, note="Totals do not add up", reviewer="ann@example.com")
    reviewed = client.workflow_runs.retrieve(run.id)
    assert (reviewed.status, reviewed.reviewed, reviewed.reviewed_by_user) == (status, True, "ann@example.com")
    assert reviewed.reviewed_at is not None
    assert reviewed.rejection_note == ("Totals do not add up" if status == "REJECTED" else None)


def test_a_run_rejected_in_review_arrives_reviewed(client: Extend) -> None:
    run = client.workflow_runs.create_and_poll(
        workflow={"id": "workflow_rejected"}, file={"text": INVOICE}, polling_options=FAST_POLL
    )
    assert (run.status, run.reviewed, run.reviewed_by_user) == ("REJECTED", True, "reviewer@example.com")
    assert run.rejection_note == "Rejected in review" and run.reviewed_at == run.end_time
    assert client.workflow_runs.list(status="REJECTED").data[0].id == run.id


def test_a_run_cancelled_in_the_dashboard_cannot_be_cancelled_again(client: Extend) -> None:
    run = client.workflow_runs.create_and_poll(
        workflow={"id": "workflow_cancelled"}, file={"text": "x"}, polling_options=FAST_POLL
    )
    assert (run.status, run.reviewed, run.failure_reason) == ("CANCELLED", False, None)
    assert run.usage is not None and run.usage.credits == 0
    with pytest.raises(BadRequestError):
        client.workflow_runs.cancel(run.id)


def test_a_profile_can_weigh_rejected_and_cancelled_with_its_own_reviewer(
    client: Extend, emulator: EmulatorProcess
) -> None:
    spec = {
        "name": "Strict",
        "duration_s": [0.05, 0.1],
        "outcomes": {"REJECTED": 1, "CANCELLED": 1},
        "reviewer": "qa@example.com",
        "rejection_note": "Vendor unknown",
    }
    emulator.set_profile({"base": "fast", "seed": 4, "workflows": {"workflow_strict": spec}})
    runs = [
        client.workflow_runs.create_and_poll(
            workflow={"id": "workflow_strict"}, file={"text": "x"}, polling_options=FAST_POLL
        )
        for _ in range(8)
    ]
    assert {run.status for run in runs} == {"REJECTED", "CANCELLED"}
    rejected = next(run for run in runs if run.status == "REJECTED")
    assert (rejected.reviewed_by_user, rejected.rejection_note) == ("qa@example.com", "Vendor unknown")


@pytest.mark.parametrize(
    ("workflow", "error", "code", "message"),
    [
        ("workflow_revoked", ForbiddenError, "FORBIDDEN", "This workflow has been revoked"),
        ("workflow_invalid", BadRequestError, "INVALID_REQUEST", "Workflow configuration is invalid"),
    ],
)
def test_refusing_workflows_raise_their_error_on_create_and_batch(
    client: Extend, emulator: EmulatorProcess, workflow: str, error: type[Exception], code: str, message: str
) -> None:
    # When a run and a batch are asked of a refusing workflow, with the SDK's default retries
    with pytest.raises(error) as single:
        client.workflow_runs.create(workflow={"id": workflow}, file={"text": "x"})
    with pytest.raises(error) as batch:
        client.workflow_runs.create_batch(workflow={"id": workflow}, inputs=[{"file": {"text": "x"}}])
    # Then both carry the workflow's error, not retryable, so the SDK asked once each and nothing exists
    for raised in (single, batch):
        body: Any = raised.value.body  # type: ignore[attr-defined]
        fields = body if isinstance(body, dict) else body.dict()
        assert (fields["code"], fields["message"], fields["retryable"]) == (code, message, False)
    assert len(emulator.requests()) == 2 and emulator.stats()["runs_total"] == 0


@pytest.mark.parametrize(
    ("status", "error"), [(402, PaymentRequiredError), (422, UnprocessableEntityError), (404, NotFoundError)]
)
def test_a_profile_workflow_can_refuse_with_any_client_error(
    client: Extend, emulator: EmulatorProcess, status: int, error: type[Exception]
) -> None:
    refusal = {"status": status, "code": "USAGE_BLOCKED", "message": "No credits left"}
    emulator.set_profile({"base": "fast", "workflows": {"workflow_broke": {"name": "B", "create_error": refusal}}})
    with pytest.raises(error) as raised:
        client.workflow_runs.create(workflow={"id": "workflow_broke"}, file={"text": "x"})
    assert raised.value.status_code == status  # type: ignore[attr-defined]
    assert client.workflow_runs.create(workflow={"id": "workflow_processed"}, file={"text": "x"}).id


def test_secrets_reach_the_emulator_but_never_come_back(client: Extend, emulator: EmulatorProcess) -> None:
    # Given a run created with secrets, and a batch with per-input secrets
    run = client.workflow_runs.create(
        workflow={"id": "workflow_processed"}, file={"text": "x"}, secrets={"erpToken": "erp-secret-1"}
    )
    client.workflow_runs.create_batch(
        workflow={"id": "workflow_processed"},
        inputs=[{"file": {"text": "a"}, "secrets": {"erpToken": "erp-secret-2"}}, {"file": {"text": "b"}}],
    )
    # Then no answer of the Extend surface shows them
    assert "erp-secret" not in run.json()
    assert "erp-secret" not in client.workflow_runs.retrieve(run.id).json()
    assert "erp-secret" not in client.workflow_runs.list().json()
    assert all("secrets" not in r for r in emulator.runs())
    # But the admin API shows what each create sent
    with httpx.Client() as http:
        full = http.get(f"{emulator.url}/_emulator/runs", params={"include": "secrets"}).json()["data"]
    assert [r["secrets"] for r in full] == [{"erpToken": "erp-secret-1"}, {"erpToken": "erp-secret-2"}, None]


def test_create_and_poll_ends_cancelled_when_the_run_is_cancelled(client: Extend, emulator: EmulatorProcess) -> None:
    emulator.set_profile(SLOW)
    with ThreadPoolExecutor(1) as pool:
        polling = pool.submit(
            client.workflow_runs.create_and_poll,
            workflow={"id": "workflow_slow"},
            file={"text": "x"},
            polling_options=FAST_POLL,
        )
        deadline = time.monotonic() + 5
        while not emulator.runs() and time.monotonic() < deadline:
            time.sleep(0.01)
        cancelling = client.workflow_runs.cancel(emulator.runs()[0]["id"])
        run = polling.result(timeout=10)
    assert cancelling.status == "CANCELLING"
    assert run.status == "CANCELLED" and run.end_time is not None
    with pytest.raises(BadRequestError):
        client.workflow_runs.cancel(run.id)


def test_upload_a_pdf_then_run_it_by_file_id(client: Extend) -> None:
    path = SAMPLES / "invoices" / "umbrella-labs-inv-88213.pdf"
    if not path.exists():
        pytest.skip("sample PDF not present")
    uploaded = client.files.upload(file=(path.name, path.read_bytes(), "application/pdf"))
    assert (uploaded.type, uploaded.metadata.page_count) == ("PDF", 1)
    fetched = client.files.retrieve(uploaded.id)
    assert fetched.presigned_url and fetched.name == path.name
    run = client.workflow_runs.create_and_poll(
        workflow={"id": "workflow_invoice"}, file={"id": uploaded.id}, polling_options=FAST_POLL
    )
    assert run.status == "PROCESSED" and run.files[0].id == uploaded.id
    assert run.step_runs[0].result.extract_run.output.value["invoice_number"] == "INV-88213"  # type: ignore[union-attr]


def test_files_list_filter_sort_page_and_delete(client: Extend) -> None:
    ids = [client.files.upload(file=(f"doc-{i}.txt", b"Total: 1")).id for i in range(3)]
    client.files.upload(file=("other.txt", b"x"))
    first = client.files.list(name_contains="DOC-", sort_dir="asc", max_page_size=2)
    second = client.files.list(
        name_contains="DOC-", sort_dir="asc", max_page_size=2, next_page_token=first.next_page_token
    )
    assert [f.id for f in first.data + second.data] == ids and second.next_page_token is None
    assert client.files.list(sort_dir="desc").data[0].name == "other.txt"
    assert client.files.delete(ids[0]).id == ids[0]
    with pytest.raises(NotFoundError):
        client.files.retrieve(ids[0])


def test_url_raw_text_and_package_inputs(client: Extend) -> None:
    by_url = client.workflow_runs.create(
        workflow={"id": "workflow_processed"}, file={"url": "https://x.test/a/inv%201.pdf"}
    )
    by_text = client.workflow_runs.create(
        workflow={"id": "workflow_processed"}, file={"text": "hi", "name": "note.txt"}
    )
    package = client.workflow_runs.create(
        workflow={"id": "workflow_processed"},
        package={"files": [{"url": "https://x.test/one.pdf"}, {"url": "https://x.test/two.pdf"}]},
    )
    assert [f.name for f in by_url.files] == ["inv 1.pdf"]
    assert [(f.name, f.type) for f in by_text.files] == [("note.txt", "TXT")]
    assert [f.name for f in package.files] == ["one.pdf", "two.pdf"]
    assert by_url.status in ("PENDING", "PROCESSING") and by_url.step_runs == []


def test_update_merges_metadata_and_delete_forgets_the_run(client: Extend) -> None:
    run = client.workflow_runs.create(
        workflow={"id": "workflow_processed"}, file={"text": "x"}, metadata={"a": 1, "b": 2}
    )
    updated = client.workflow_runs.update(run.id, metadata={"b": 3, "c": 4})
    assert updated.metadata == {"a": 1, "b": 3, "c": 4}
    assert client.workflow_runs.retrieve(run.id).metadata == {"a": 1, "b": 3, "c": 4}
    assert client.workflow_runs.delete(run.id).id == run.id
    with pytest.raises(NotFoundError):
        client.workflow_runs.retrieve(run.id)


def test_usage_tags_are_cleaned(client: Extend) -> None:
    run = client.workflow_runs.create(
        workflow={"id": "workflow_processed"},
        file={"text": "x"},
        metadata={"extend:usage_tags": ["team a!", "prod/eu-1", "ok_tag"], "other": "kept as is!"},
    )
    assert run.metadata == {"extend:usage_tags": ["teama", "prodeu-1", "ok_tag"], "other": "kept as is!"}


def _make_runs(client: Extend) -> dict[str, list[str]]:
    made: dict[str, list[str]] = {"invoice": [], "failed": []}
    for i in range(4):
        made["invoice"].append(
            client.workflow_runs.create(
                workflow={"id": "workflow_invoice"}, file={"text": INVOICE, "name": f"invoice-{i}.txt"}
            ).id
        )
        made["failed"].append(
            client.workflow_runs.create(
                workflow={"id": "workflow_failed"}, file={"text": "x", "name": f"memo-{i}.txt"}
            ).id
        )
    return made


def _all_pages(client: Extend, **query: Any) -> list[Any]:
    runs, token = [], None
    while True:
        page = client.workflow_runs.list(max_page_size=3, next_page_token=token, **query)
        runs += page.data
        token = page.next_page_token
        if not token:
            return runs


def test_list_filters_sorts_and_pages(client: Extend) -> None:
    made = _make_runs(client)
    time.sleep(0.5)
    everything = _all_pages(client, sort_by="createdAt", sort_dir="asc")
    assert [r.id for r in everything] == [
        rid for pair in zip(made["invoice"], made["failed"], strict=True) for rid in pair
    ]
    newest_first = _all_pages(client, sort_by="createdAt", sort_dir="desc")
    assert [r.id for r in newest_first] == [r.id for r in reversed(everything)]
    by_update = _all_pages(client, sort_by="updatedAt", sort_dir="desc")
    stamps = [r.updated_at for r in by_update]
    assert stamps == sorted(stamps, reverse=True) and len(by_update) == 8
    assert {r.id for r in _all_pages(client, status="FAILED")} == set(made["failed"])
    assert {r.id for r in _all_pages(client, workflow_id="workflow_invoice")} == set(made["invoice"])
    assert {r.id for r in _all_pages(client, file_name_contains="memo-")} == set(made["failed"])
    assert _all_pages(client, batch_id="batch_none") == []


def test_a_1000_input_batch_is_found_again_through_its_batch_id(client: Extend, emulator: EmulatorProcess) -> None:
    # Given a batch of 1000 inputs, each with its own metadata
    inputs: Any = [
        {"file": {"text": f"Total: {i + 1}.00", "name": f"b-{i}.txt"}, "metadata": {"i": i}} for i in range(1000)
    ]
    batch_id = client.workflow_runs.create_batch(workflow={"id": "workflow_invoice"}, inputs=inputs).batch_id
    # Then its runs are all there at once
    queued = client.workflow_runs.list(batch_id=batch_id, max_page_size=1000)
    assert len(queued.data) == 1000
    # And they all finish (at the profile's pace; the deadline is a loaded machine's)
    deadline = time.monotonic() + 60
    while emulator.stats()["runs_by_status"].get("PROCESSED", 0) < 1000:
        assert time.monotonic() < deadline, emulator.stats()["runs_by_status"]
        time.sleep(0.2)
    # And paging through the batch finds every run once, with its batchId and metadata
    listed = _all_batch_pages(client, batch_id)
    assert len({r.id for r in listed}) == 1000 and all(r.batch_id == batch_id for r in listed)
    full = {r["metadata"]["i"]: r for r in emulator.runs()}
    assert sorted(full) == list(range(1000)) and all(r["batchId"] == batch_id for r in full.values())


def _all_batch_pages(client: Extend, batch_id: str) -> list[Any]:
    runs, token = [], None
    while True:
        page = client.workflow_runs.list(
            batch_id=batch_id, max_page_size=250, next_page_token=token, sort_by="createdAt"
        )
        runs += page.data
        token = page.next_page_token
        if not token:
            return runs


@pytest.mark.anyio
async def test_async_client_runs_uploads_lists_and_cancels(
    async_client: Callable[[], Any], emulator: EmulatorProcess
) -> None:
    async with async_client() as client:
        uploaded = await client.files.upload(file=("inv.txt", INVOICE.encode()))
        run = await client.workflow_runs.create_and_poll(
            workflow={"id": "workflow_invoice"}, file={"id": uploaded.id}, polling_options=FAST_POLL
        )
        assert run.status == "PROCESSED"
        listed = await client.workflow_runs.list(workflow_id="workflow_invoice")
        assert [r.id for r in listed.data] == [run.id]
        emulator.set_profile(SLOW)
        slow = await client.workflow_runs.create(workflow={"id": "workflow_slow"}, file={"text": "x"})
        assert (await client.workflow_runs.cancel(slow.id)).status == "CANCELLING"
        updated = await client.workflow_runs.update(slow.id, metadata={"k": "v"})
        assert updated.metadata == {"k": "v"}
        with pytest.raises(NotFoundError):
            await client.workflow_runs.retrieve("workflow_run_missing")
        batch = await client.workflow_runs.create_batch(
            workflow={"id": "workflow_slow"}, inputs=[{"file": {"text": "a"}}]
        )
        assert (await client.workflow_runs.list(batch_id=batch.batch_id)).data[0].batch_id == batch.batch_id


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("workflow", "status"),
    [("workflow_invoice", "PROCESSED"), ("workflow_failed", "FAILED"), ("workflow_review", "NEEDS_REVIEW")],
)
async def test_async_create_and_poll_reaches_each_outcome(
    async_client: Callable[[], Any], emulator: EmulatorProcess, workflow: str, status: str
) -> None:
    async with async_client() as client:
        run = await client.workflow_runs.create_and_poll(
            workflow={"id": workflow}, file={"text": INVOICE}, polling_options=FAST_POLL
        )
        assert run.status == status
        if status == "NEEDS_REVIEW":
            emulator.review(run.id, "reject", note="no")
            assert (await client.workflow_runs.retrieve(run.id)).status == "REJECTED"
