"""Typed results: runs as the SDK's `WorkflowRun`, extraction outputs as the producer's models."""

from __future__ import annotations

import copy
import time
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from extendq.emulator.app import create_app
from extendq.tasks.results import ExtractionMismatch, ResultMismatch, extraction, typed_run
from tests.support.asgi import served

HEADERS = {"Authorization": "Bearer test-key", "x-extend-api-version": "2026-02-09"}


class Invoice(BaseModel):
    invoice_number: str
    vendor: str
    total: float
    currency: str


class Strict(BaseModel):
    invoice_number: int
    po_number: str


@pytest.fixture(scope="module")
def invoice_run() -> dict[str, Any]:
    """A PROCESSED run of the emulator's invoice workflow, exactly as the API returns it."""
    with served(create_app(profile="fast")) as url, httpx.Client(base_url=url, headers=HEADERS) as client:
        text = "ACME Corp\nInvoice #: INV-7\nTotal: $120.00\n"
        body = {"workflow": {"id": "workflow_invoice"}, "file": {"text": text, "name": "inv.txt"}}
        run: dict[str, Any] = client.post("/workflow_runs", json=body).json()
        deadline = time.monotonic() + 10
        while run["status"] not in ("PROCESSED", "FAILED") and time.monotonic() < deadline:
            time.sleep(0.05)
            run = client.get(f"/workflow_runs/{run['id']}").json()
    assert run["status"] == "PROCESSED"
    return run


def test_a_run_becomes_the_sdks_workflow_run(invoice_run: dict[str, Any]) -> None:
    run = typed_run(invoice_run)
    assert run.id == invoice_run["id"] and run.status == "PROCESSED"
    assert run.step_runs[0].step_type == "EXTRACT"


def test_the_extraction_step_output_validates_into_the_producers_model(invoice_run: dict[str, Any]) -> None:
    invoice = extraction(invoice_run, Invoice)
    assert invoice == Invoice(invoice_number="INV-7", vendor="ACME Corp", total=120.0, currency="USD")
    step = invoice_run["stepRuns"][0]
    assert extraction(invoice_run, Invoice, step=step["step"]["name"]) == invoice
    assert extraction(invoice_run, Invoice, step=step["id"]) == invoice


def test_an_output_that_does_not_fit_raises_with_the_raw_run(invoice_run: dict[str, Any]) -> None:
    with pytest.raises(ExtractionMismatch, match="does not fit Strict") as caught:
        extraction(invoice_run, Strict)
    mismatch = caught.value
    assert mismatch.run == invoice_run and mismatch.step == invoice_run["stepRuns"][0]["step"]["name"]
    assert {error["loc"] for error in mismatch.errors} == {("invoice_number",), ("po_number",)}
    assert isinstance(mismatch, ResultMismatch) and isinstance(mismatch, ValueError)


def test_a_missing_or_ambiguous_extraction_step_is_named(invoice_run: dict[str, Any]) -> None:
    with pytest.raises(ExtractionMismatch, match="has no extraction step 'Classify' with a result"):
        extraction(invoice_run, Invoice, step="Classify")
    failed = {**copy.deepcopy(invoice_run), "status": "FAILED"}
    failed["stepRuns"][0]["result"]["extractRun"]["output"] = None
    with pytest.raises(ExtractionMismatch, match="has no output") as caught:
        extraction(failed, Invoice)
    assert caught.value.run["status"] == "FAILED"
    twice = copy.deepcopy(invoice_run)
    twice["stepRuns"].append({**copy.deepcopy(twice["stepRuns"][0]), "step": {"name": "Second", "id": "s2"}})
    with pytest.raises(ExtractionMismatch, match="several extraction steps"):
        extraction(twice, Invoice)
    assert extraction(twice, Invoice, step="Second").invoice_number == "INV-7"


def test_a_run_that_does_not_fit_the_sdk_model_raises_with_the_raw_run(invoice_run: dict[str, Any]) -> None:
    broken = {key: value for key, value in invoice_run.items() if key != "workflow"}
    with pytest.raises(ResultMismatch, match="does not fit WorkflowRun: workflow: Field required") as caught:
        typed_run(broken)
    assert caught.value.run == broken
