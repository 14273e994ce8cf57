"""Fields derived from document text: numbers, dates, totals, vendors, and the sample documents."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from extendq.emulator.extraction import extract_fields, parse_amount, parse_date, pdf_text
from extendq.emulator.files import read_upload
from extendq.emulator.profiles import load_profile
from extendq.emulator.store import decide_outcome

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


@pytest.mark.parametrize(
    ("line", "number"),
    [
        ("Invoice Number: INV-2026-0042", "INV-2026-0042"),
        ("Invoice #: 1042", "1042"),
        ("Receipt #: R-88", "R-88"),
        ("invoice no. 5531", "5531"),
        ("Invoice notes: call us", None),
        ("Invoice Date: 2026-10-03", None),
    ],
)
def test_invoice_number_lines(line: str, number: str | None) -> None:
    assert extract_fields(line).invoice_number == number


@pytest.mark.parametrize(
    ("text", "iso"),
    [
        ("Date: 2026-10-03", "2026-10-03"),
        ("Date: 03/10/2026", "2026-10-03"),
        ("Date: October 3, 2026", "2026-10-03"),
        ("Date: 3 Oct 2026", "2026-10-03"),
        ("Date: 12/25/2026", "2026-12-25"),
        ("Date: 05.11.2026", "2026-11-05"),
        ("Printed 2026-01-02\nInvoice Date: 2026-02-03", "2026-02-03"),
        ("no date here", None),
    ],
)
def test_dates_in_common_formats(text: str, iso: str | None) -> None:
    assert extract_fields(text).invoice_date == iso


@pytest.mark.parametrize(
    ("line", "total", "currency"),
    [
        ("Total: $1,234.50", 1234.5, "USD"),
        ("TOTAL 12.30", 12.3, None),
        ("Total Due: EUR 980.00", 980.0, "EUR"),
        ("Total: 1.234,50 EUR (incl. VAT)", 1234.5, "EUR"),
        ("Grand Total: £99", 99.0, "GBP"),
        ("Subtotal: 50.00", None, None),
        ("Total items: 3 boxes", None, None),
    ],
)
def test_totals_and_currencies(line: str, total: float | None, currency: str | None) -> None:
    found = extract_fields(line)
    assert (found.total, found.currency) == (total, currency)


def test_a_qualified_total_wins_over_a_plain_total_line() -> None:
    text = "Total: 100.00\nTax: 19.00\nTotal Due: 119.00\n"
    assert extract_fields(text).total == 119.0


def test_vendor_from_a_vendor_line_or_the_first_line() -> None:
    assert extract_fields("INVOICE\nVendor: Acme GmbH\nTotal: 1").vendor == "Acme GmbH"
    assert extract_fields("\n  INVOICE\nNorthwind Traders\nTotal: 1").vendor == "Northwind Traders"
    assert extract_fields("").vendor is None


@pytest.mark.parametrize(
    ("raw", "value"),
    [("1,234.50", 1234.5), ("1.234,50", 1234.5), ("1 234,50", 1234.5), ("12.30", 12.3), ("1.234.567", 1234567.0)],
)
def test_amounts_in_common_notations(raw: str, value: float) -> None:
    assert parse_amount(raw) == value


def test_parse_date_ignores_impossible_dates() -> None:
    assert parse_date("31/02/2026") is None


def test_output_value_and_confidence_name_every_field() -> None:
    found = extract_fields("Acme\nInvoice #: 7\nTotal: $5")
    assert set(found.value()) == {"invoice_number", "invoice_date", "vendor", "total", "currency"}
    assert found.confidence()["total"]["ocrConfidence"] > 0
    assert found.confidence()["invoice_date"] == {"logprobsConfidence": 0.0}


def test_pdf_text_reads_a_generated_pdf() -> None:
    fpdf = pytest.importorskip("fpdf")
    pdf = fpdf.FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    for line in ("Umbrella Labs", "Invoice Number: INV-9", "Total: $12.00"):
        pdf.cell(0, 10, line, new_x="LMARGIN", new_y="NEXT")
    text, pages = pdf_text(bytes(pdf.output()))
    assert pages == 1
    assert extract_fields(text).total == 12.0


def test_a_corrupt_pdf_has_no_text() -> None:
    assert pdf_text(b"%PDF-1.7 garbage") == ("", 0)


def _samples() -> list[tuple[str, dict[str, object]]]:
    path = SAMPLES / "expected.json"
    return sorted(json.loads(path.read_text()).items()) if path.exists() else []


@pytest.mark.parametrize(("relative", "expected"), _samples())
def test_sample_documents_reach_their_expected_outcome(relative: str, expected: dict[str, object]) -> None:
    path = SAMPLES / relative
    _, text, _ = read_upload(path.name, path.read_bytes())
    found = extract_fields(text)
    spec = load_profile("default").workflows[str(expected["workflow"])]
    assert decide_outcome(spec, found, random.Random(0))[0] == expected["status"]
    for field in ("invoice_number", "total"):
        if field in expected:
            assert getattr(found, field) == expected[field]
