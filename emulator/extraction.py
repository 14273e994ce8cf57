"""Derive invoice/receipt fields from a document's text, and read the text of a PDF.

Field names of the extraction output: `invoice_number`, `invoice_date` (ISO `YYYY-MM-DD`),
`vendor`, `total` (a number) and `currency` (ISO 4217 code). Absent fields are None.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from dataclasses import asdict, dataclass
from typing import Any

FIELDS = ("invoice_number", "invoice_date", "vendor", "total", "currency")
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "invoice_number": {"type": ["string", "null"]},
        "invoice_date": {"type": ["string", "null"], "format": "date"},
        "vendor": {"type": ["string", "null"]},
        "total": {"type": ["number", "null"]},
        "currency": {"type": ["string", "null"]},
    },
}

_SYMBOLS = {"$": "USD", "€": "EUR", "£": "GBP", "¥": "JPY"}
_CUR = r"(?:(?-i:[A-Z]{3})\b|[$€£¥])"
_AMOUNT = r"-?\d[\d,.' ]*\d|\d"
_NUMBER_RE = re.compile(
    r"^[ \t]*(?:invoice|receipt|bill|order)[ \t]*(?:number|no\.?|num\.?|#|id)(?![a-z])"
    r"[ \t]*[:#.]?[ \t]*(?P<v>[A-Za-z0-9][\w\-/.]*)",
    re.IGNORECASE | re.MULTILINE,
)
_TOTAL_RE = re.compile(
    rf"^[ \t]*(?P<label>(?:grand[ \t]+)?total(?:[ \t]+(?:due|amount|payable))?|amount[ \t]+due|balance[ \t]+due)"
    rf"[ \t]*[:=\-]?[ \t]*(?P<c1>{_CUR})?[ \t]*(?P<amt>{_AMOUNT})[ \t]*(?P<c2>{_CUR})?(?:[ \t]+[^\d\n]*)?[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)
_VENDOR_RE = re.compile(
    r"^[ \t]*(?:vendor|seller|supplier|merchant|company|from|sold[ \t]+by)[ \t]*:[ \t]*(?P<v>\S.*?)[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)
_CURRENCY_RE = re.compile(r"^[ \t]*currency[ \t]*:[ \t]*(?P<v>[A-Z]{3})\b", re.IGNORECASE | re.MULTILINE)
_DATE_LINE_RE = re.compile(
    r"^[ \t]*(?:invoice[ \t]+|receipt[ \t]+|issue[ \t]+)?date[ \t]*[:\-]?[ \t]*(?P<v>.+)$", re.IGNORECASE | re.MULTILINE
)
_MONTHS = {
    m: i for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)
}
_ISO_DATE = re.compile(r"\b(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})\b")
_NUMERIC_DATE = re.compile(r"\b(?P<a>\d{1,2})[/.](?P<b>\d{1,2})[/.](?P<y>\d{4})\b")
_MONTH_FIRST = re.compile(r"\b(?P<mon>[A-Za-z]{3,9})\.?[ \t]+(?P<d>\d{1,2})(?:st|nd|rd|th)?,?[ \t]+(?P<y>\d{4})\b")
_DAY_FIRST = re.compile(r"\b(?P<d>\d{1,2})(?:st|nd|rd|th)?[ \t]+(?P<mon>[A-Za-z]{3,9})\.?,?[ \t]+(?P<y>\d{4})\b")
_HEADING = re.compile(r"^(?:tax[ \t]+)?(?:invoice|receipt|bill)s?$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Extraction:
    """The fields found in a document; None where nothing was found."""

    invoice_number: str | None = None
    invoice_date: str | None = None
    vendor: str | None = None
    total: float | None = None
    currency: str | None = None

    def value(self) -> dict[str, Any]:
        """The `output.value` object of the EXTRACT step."""
        return asdict(self)

    def confidence(self) -> dict[str, dict[str, float]]:
        """The `output.metadata` object: high confidence where a field was found, zero elsewhere."""
        found = {"ocrConfidence": 0.99, "logprobsConfidence": 0.97}
        return {
            name: (dict(found) if value is not None else {"logprobsConfidence": 0.0})
            for name, value in asdict(self).items()
        }


def extract_fields(text: str) -> Extraction:
    """Find invoice number, date, vendor, total and currency in a document's text."""
    total, currency = _total(text)
    currency_line = _CURRENCY_RE.search(text)
    if currency is None and currency_line:
        currency = currency_line["v"].upper()
    number = _NUMBER_RE.search(text)
    return Extraction(
        invoice_number=number["v"] if number else None,
        invoice_date=_date(text),
        vendor=_vendor(text),
        total=total,
        currency=currency,
    )


def parse_amount(raw: str) -> float | None:
    """`1,234.50`, `1.234,50`, `1 234,50` and `12.30` as numbers; None if it is not one."""
    digits = raw.replace(" ", "").replace("'", "")
    if "," in digits and "." in digits:
        decimal = "," if digits.rfind(",") > digits.rfind(".") else "."
        digits = digits.replace("." if decimal == "," else ",", "").replace(decimal, ".")
    elif "," in digits:
        head, _, tail = digits.rpartition(",")
        digits = f"{head.replace(',', '')}.{tail}" if len(tail) == 2 else digits.replace(",", "")
    elif digits.count(".") > 1:
        digits = digits.replace(".", "")
    try:
        return float(digits)
    except ValueError:
        return None


def _total(text: str) -> tuple[float | None, str | None]:
    """The document's total: a qualified label (total due, grand total) wins, else the last total line."""
    matches = list(_TOTAL_RE.finditer(text))
    if not matches:
        return None, None
    qualified = [m for m in matches if m["label"].strip().lower() != "total"]
    best = (qualified or matches)[-1]
    code = best["c1"] or best["c2"]
    return parse_amount(best["amt"]), (_SYMBOLS.get(code, code.upper()) if code else None)


def _vendor(text: str) -> str | None:
    labelled = _VENDOR_RE.search(text)
    if labelled:
        return labelled["v"]
    for line in text.splitlines():
        line = line.strip()
        if line and not _HEADING.match(line) and not _is_field_line(line):
            return line
    return None


def _is_field_line(line: str) -> bool:
    return any(p.match(line) for p in (_NUMBER_RE, _TOTAL_RE, _DATE_LINE_RE, _CURRENCY_RE))


def _date(text: str) -> str | None:
    """The labelled date if there is one, else the first date anywhere in the text."""
    for line in _DATE_LINE_RE.finditer(text):
        found = parse_date(line["v"])
        if found:
            return found
    return parse_date(text)


def parse_date(text: str) -> str | None:
    """The first date in `text` as `YYYY-MM-DD`: ISO, `DD/MM/YYYY` (or `MM/DD/YYYY` when unambiguous) or month names."""
    candidates: list[tuple[int, dt.date]] = []
    for pattern, build in ((_ISO_DATE, _iso), (_NUMERIC_DATE, _numeric), (_MONTH_FIRST, _named), (_DAY_FIRST, _named)):
        for match in pattern.finditer(text):
            date = build(match)
            if date is not None:
                candidates.append((match.start(), date))
                break
    return min(candidates)[1].isoformat() if candidates else None


def _safe_date(year: int, month: int, day: int) -> dt.date | None:
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None


def _iso(match: re.Match[str]) -> dt.date | None:
    return _safe_date(int(match["y"]), int(match["m"]), int(match["d"]))


def _numeric(match: re.Match[str]) -> dt.date | None:
    first, second, year = int(match["a"]), int(match["b"]), int(match["y"])
    if second > 12 >= first:  # only a month-first reading is possible (US style)
        return _safe_date(year, first, second)
    return _safe_date(year, second, first)


def _named(match: re.Match[str]) -> dt.date | None:
    month = _MONTHS.get(match["mon"][:3].lower())
    return _safe_date(int(match["y"]), month, int(match["d"])) if month else None


def pdf_text(data: bytes) -> tuple[str, int]:
    """The text layer and page count of a PDF; empty text when it has none or cannot be read."""
    from pypdf import PdfReader  # imported lazily: only uploads of PDFs need it

    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [page.extract_text() or "" for page in reader.pages]
    except Exception:  # a corrupt PDF is a file without text, not an emulator crash
        return "", 0
    return "\n".join(pages), len(pages)
