"""Render the demo documents of tools/sample_data.py into samples/, then check them.

    python tools/make_samples.py           # write samples/ (txt, pdf, expected.json, manifests, README.md)
    python tools/make_samples.py --check   # only check what is on disk; exit 1 on any problem

The check reads each file back (PDFs through pypdf, as the emulator does) and applies the
extraction rules of the emulator's invoice and receipt workflows: an `Invoice Number:` /
`Invoice #:` / `Receipt #:` line, a `Total:` / `TOTAL` / `Total Due:` line; no total means FAILED,
a total of 10,000 or more means NEEDS_REVIEW, anything else PROCESSED.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import sys
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from fpdf import FPDF
from fpdf.enums import XPos, YPos
from pypdf import PdfReader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sample_data import DOCS, FAILED, MANIFEST, NEEDS_REVIEW, PROCESSED, README, Doc  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
REVIEW_THRESHOLD = Decimal("10000")
MAX_PDF_BYTES = 10 * 1024
_CENT = Decimal("0.01")
_NUMBER = re.compile(r"^\s*(?:invoice|receipt)\s*(?:number|no\.?|#)\s*:?\s*(\S+)\s*$", re.I | re.M)
_TOTAL = re.compile(r"^\s*total(?:\s+due)?\s*:?\s*(?:\$|[A-Z]{3}\s+)?(\d[\d,]*(?:\.\d+)?)\s*$", re.I | re.M)


def _cents(value: Decimal) -> Decimal:
    return value.quantize(_CENT, rounding=ROUND_HALF_UP)


def _money(amount: Decimal, currency: str) -> str:
    text = f"{amount:,.2f}"
    if currency == "$":
        return f"${text}"
    return f"{currency} {text}" if currency else text


def amounts(doc: Doc) -> tuple[Decimal, Decimal, Decimal]:
    """Net, tax and total of a document, in cents."""
    net = sum((_cents(Decimal(str(price)) * Decimal(str(qty))) for _, qty, price in doc.items), Decimal(0))
    tax = _cents(net * Decimal(str(doc.tax_rate)))
    return net, tax, net + tax


def total_of(doc: Doc) -> Decimal | None:
    """The total printed on the document, or None when it prints none."""
    return amounts(doc)[2] if doc.total_label else None


def _item_lines(doc: Doc) -> list[str]:
    priced = all(price >= 0 for _, _, price in doc.items)
    if not priced:
        return [f"{'Description':<44}{'Qty':>6}"] + [f"{desc:<44}{qty:>6g}" for desc, qty, _ in doc.items]
    lines = [f"{'Description':<44}{'Qty':>6}{'Unit price':>14}{'Amount':>14}"]
    for desc, qty, price in doc.items:
        line_amount = _cents(Decimal(str(price)) * Decimal(str(qty)))
        lines.append(f"{desc:<44}{qty:>6g}{price:>14,.2f}{line_amount:>14,.2f}")
    return lines


def amount_lines(doc: Doc) -> list[str]:
    """The lines under the items: net amount and tax when taxed, then the total line (if any)."""
    if not doc.total_label:
        return []
    net, tax, total = amounts(doc)
    lines = []
    if doc.tax_label:
        lines += [f"Net amount: {_money(net, doc.currency)}", f"{doc.tax_label}: {_money(tax, doc.currency)}"]
    return [*lines, f"{doc.total_label} {_money(total, doc.currency)}"]


def render_text(doc: Doc) -> str:
    """The document as plain text."""
    blocks = [list(doc.header), _item_lines(doc), amount_lines(doc), list(doc.footer)]
    return "\n\n".join("\n".join(block) for block in blocks if block) + "\n"


def render_pdf(doc: Doc) -> bytes:
    """The document as a one-page text PDF (core fonts only, so it stays a few KB)."""
    pdf = FPDF(format="A4")
    pdf.set_creation_date(datetime(2026, 10, 1, tzinfo=UTC))
    pdf.set_title(Path(doc.path).stem)
    pdf.set_author(doc.header[0])
    pdf.add_page()
    _pdf_line(pdf, doc.header[0], style="B", size=16, height=9)
    for line in doc.header[1:]:
        _pdf_line(pdf, line)
    pdf.ln(4)
    pdf.set_font("Courier", size=9)
    for line in _item_lines(doc):
        pdf.cell(0, 5, line, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(4)
    for line in amount_lines(doc):
        _pdf_line(pdf, line, style="B" if line.startswith(doc.total_label) else "")
    pdf.ln(4)
    for line in doc.footer:
        _pdf_line(pdf, line, size=9)
    return bytes(pdf.output())


def _pdf_line(pdf: FPDF, text: str, *, style: str = "", size: int = 10, height: float = 5.5) -> None:
    pdf.set_font("Helvetica", style=style, size=size)
    pdf.cell(0, height, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def expected() -> dict[str, dict[str, object]]:
    """samples/expected.json: relative path -> workflow, terminal status and the fields a run extracts."""
    table: dict[str, dict[str, object]] = {}
    for doc in DOCS:
        entry: dict[str, object] = {"workflow": doc.workflow, "status": doc.status}
        total = total_of(doc)
        if doc.status != FAILED and total is not None:
            entry.update(invoice_number=doc.number, total=float(total))
        table[doc.path] = entry
    return table


def _manifest_rows() -> list[tuple[str, str, dict[str, str]]]:
    by_path = {doc.path: doc for doc in DOCS}
    return [(path, by_path[path].workflow, by_path[path].metadata) for path in MANIFEST]


def manifest_csv() -> str:
    """samples/manifest.csv: path,workflow,metadata (a JSON object string); paths relative to samples/."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["path", "workflow", "metadata"])
    for path, workflow, metadata in _manifest_rows():
        writer.writerow([path, workflow, json.dumps(metadata, sort_keys=True)])
    return out.getvalue()


def manifest_jsonl() -> str:
    """samples/manifest.jsonl: the same rows as manifest.csv, one JSON object a line."""
    rows = [{"path": p, "workflow": w, "metadata": m} for p, w, m in _manifest_rows()]
    return "".join(json.dumps(row) + "\n" for row in rows)


def readme() -> str:
    """samples/README.md, with one table row per document."""
    rows = []
    for doc in DOCS:
        total = total_of(doc)
        shown = f"{total:,.2f}" if total is not None and doc.status != FAILED else "-"
        number = doc.number if doc.status != FAILED else "-"
        rows.append(f"| `{doc.path}` | `{doc.workflow}` | {doc.status} | {number} | {shown} | {doc.note} |")
    counts = {status: sum(d.status == status for d in DOCS) for status in (PROCESSED, NEEDS_REVIEW, FAILED)}
    return README.format(
        count=len(DOCS),
        processed=counts[PROCESSED],
        review=counts[NEEDS_REVIEW],
        failed=counts[FAILED],
        rows="\n".join(rows),
    )


def outputs() -> dict[str, str]:
    """Every text file under samples/, by relative path."""
    files = {doc.path: render_text(doc) for doc in DOCS if doc.path.endswith(".txt")}
    files["expected.json"] = json.dumps(expected(), indent=2) + "\n"
    files["manifest.csv"] = manifest_csv()
    files["manifest.jsonl"] = manifest_jsonl()
    files["README.md"] = readme()
    return files


def write_all() -> None:
    """Write every sample, expected.json, the manifests and the README."""
    for rel, text in outputs().items():
        _write(SAMPLES / rel, text.encode())
    for doc in DOCS:
        if doc.path.endswith(".pdf"):
            _write(SAMPLES / doc.path, render_pdf(doc))


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def read_back(path: Path) -> str:
    """The text a workflow sees: the file itself, or what pypdf extracts from a PDF."""
    if path.suffix == ".pdf":
        return "\n".join(page.extract_text() or "" for page in PdfReader(path).pages)
    return path.read_text()


def outcome(text: str) -> tuple[str, str | None, Decimal | None]:
    """Status, invoice number and total by the workflows' rules."""
    number = _NUMBER.search(text)
    found = _TOTAL.search(text)
    if found is None:
        return FAILED, number.group(1) if number else None, None
    total = Decimal(found.group(1).replace(",", ""))
    status = NEEDS_REVIEW if total >= REVIEW_THRESHOLD else PROCESSED
    return status, number.group(1) if number else None, total


def problems_of(doc: Doc) -> list[str]:
    """What is wrong with one document on disk (empty when it reads back as expected)."""
    path = SAMPLES / doc.path
    if not path.is_file():
        return [f"{doc.path}: missing"]
    text = read_back(path)
    found = []
    status, number, total = outcome(text)
    if status != doc.status or (status != FAILED and (number, total) != (doc.number, total_of(doc))):
        found.append(f"{doc.path}: reads as {status} {number} {total}, expected {doc.status} {doc.number}")
    lines = {line.strip() for line in text.splitlines()}
    found += [f"{doc.path}: line {want!r} not extracted" for want in _key_lines(doc) if want not in lines]
    # An unanchored `total` regex must not find a second candidate, nor one in a document that should fail.
    if sum("total" in line.lower() for line in text.splitlines()) != (1 if doc.total_label else 0):
        found.append(f"{doc.path}: the word 'total' must appear on exactly the total line")
    if path.suffix == ".pdf" and path.stat().st_size > MAX_PDF_BYTES:
        found.append(f"{doc.path}: {path.stat().st_size} bytes, over {MAX_PDF_BYTES}")
    return found


def _key_lines(doc: Doc) -> list[str]:
    labels = ("Vendor:", "Date:", "Invoice Number:", "Invoice #:", "Receipt #:")
    return [line for line in doc.header if line.startswith(labels)] + amount_lines(doc)[-1:]


def check() -> list[str]:
    """Every problem with samples/ as it is on disk."""
    found = [problem for doc in DOCS for problem in problems_of(doc)]
    for rel, text in outputs().items():
        path = SAMPLES / rel
        if not path.is_file() or path.read_text() != text:
            found.append(f"{rel}: out of date, run tools/make_samples.py")
    return found


def main(argv: list[str] | None = None) -> int:
    """Write (unless --check) and check the samples; print problems and return 1 when there are any."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="only check samples/, write nothing")
    args = parser.parse_args(argv)
    if not args.check:
        write_all()
    found = check()
    for problem in found:
        print(problem, file=sys.stderr)
    print(f"{len(DOCS)} documents, {len(found)} problems")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
