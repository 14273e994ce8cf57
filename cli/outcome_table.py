"""The table of followed jobs (`extendq demo`, `extendq submit --wait`), laid out for the terminal's width.

Numbers are never cut: the state, run status, total and time columns keep their full width. When the
table does not fit, the date, then the invoice number, then the vendor column are left out, and the
document and note columns wrap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from rich import box
from rich.cells import cell_len
from rich.table import Table
from rich.text import Text

from extendq.cli.console import STYLES, Outcome

__all__ = ["outcomes_table"]

# Left out in this order while the table is too wide for the terminal.
_OPTIONAL = ("date", "invoice #", "vendor")
_VENDOR_MAX = 24
_DOCUMENT_MIN = 16
_NOTE_MIN = 12


@dataclass(frozen=True)
class _Column:
    name: str
    justify: Literal["left", "right"] = "left"
    wraps: bool = False  # folds onto more lines rather than keeping one


_COLUMNS = (
    _Column("document", wraps=True),
    _Column("state"),
    _Column("run status"),
    _Column("invoice #"),
    _Column("date"),
    _Column("vendor"),
    _Column("total", justify="right"),
    _Column("time", justify="right"),
    _Column("note", wraps=True),
)


def outcomes_table(outcomes: Sequence[Outcome], *, title: str | None = None, width: int | None = None) -> Table:
    """One row per job: document, state, run status, invoice number, date, vendor, total, time to result, note.

    `width`: the terminal's columns; None lays every column out at its full width.
    """
    rows = [_row(outcome) for outcome in outcomes]
    names = [column.name for column in _COLUMNS if column.name != "note" or any(row[-1] for row in rows)]
    cells = {name: [row[index] for row in rows] for index, name in enumerate(column.name for column in _COLUMNS)}
    natural = {name: max([cell_len(name), *(cell_len(_plain(cell)) for cell in cells[name])]) for name in names}
    natural["vendor"] = min(natural["vendor"], _VENDOR_MAX)
    widths = _fit(names, natural, width)
    table = Table(
        title=title,
        title_justify="left",
        caption="✓ ended as expected   ✗ did not" if any(outcome.expected for outcome in outcomes) else None,
        caption_justify="left",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        pad_edge=False,
    )
    shown = [column for column in _COLUMNS if column.name in widths]
    for column in shown:
        overflow: Literal["fold", "ellipsis"] = "fold" if column.wraps else "ellipsis"
        table.add_column(
            column.name, justify=column.justify, width=widths[column.name], no_wrap=not column.wraps, overflow=overflow
        )
    for index in range(len(rows)):
        table.add_row(*(cells[column.name][index] for column in shown))
    return table


def _fit(names: list[str], natural: dict[str, int], width: int | None) -> dict[str, int]:
    """Each shown column's width: optional columns left out until the rest fits in `width`."""
    names = list(names)
    for dropped in (None, *_OPTIONAL):
        if dropped is not None:
            names.remove(dropped)
        widths = {name: natural[name] for name in names}
        if width is None:
            return widths
        # Two characters a column: the box's edge or divider, and one space of padding (rich collapses the rest).
        room = width - 2 * len(names) - sum(w for name, w in widths.items() if name not in ("document", "note"))
        if _share(widths, room):
            return widths
    return widths


def _share(widths: dict[str, int], room: int) -> bool:
    """Give the document and note columns `room` (updating `widths`); False when they would be too narrow."""
    document, note = widths["document"], widths.get("note", 0)
    if document + note <= room:
        return True
    least_document = min(document, _DOCUMENT_MIN)
    if "note" not in widths:
        widths["document"] = max(least_document, room)
        return room >= least_document
    least_note = min(note, _NOTE_MIN)
    note_width = min(note, max(least_note, room - document))  # the document keeps what it can
    document_width = min(document, room - note_width)
    note_width = min(note, room - document_width)
    widths.update(document=document_width, note=note_width)
    return document_width >= least_document and note_width >= least_note


def _plain(cell: str | Text) -> str:
    return cell.plain if isinstance(cell, Text) else cell


def _row(outcome: Outcome) -> list[str | Text]:
    fields = outcome.fields
    state = outcome.state.value if outcome.done else f"{outcome.state.value}…"
    mark = "" if outcome.expected is None else (" ✓" if outcome.as_expected else " ✗")
    run_status = Text(outcome.run_status or "", style=STYLES.get(outcome.run_status or "", ""))
    return [
        outcome.label,
        Text(state, style=STYLES.get(outcome.state.value, "dim")),
        run_status + Text(mark, style="green" if outcome.as_expected else "red"),
        str(fields.get("invoice_number") or ""),
        str(fields.get("invoice_date") or ""),
        str(fields.get("vendor") or ""),
        _money(fields.get("total"), fields.get("currency")),
        "" if outcome.latency_s is None else f"{outcome.latency_s:.1f}s",
        outcome.note or "",
    ]


def _money(total: Any, currency: Any) -> str:
    if not isinstance(total, int | float):
        return ""
    return f"{total:,.2f} {currency or ''}".rstrip()
