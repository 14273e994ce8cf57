"""The workflow run statuses Extend documents, and the check of a status it does not (an injected fault)."""

from __future__ import annotations

import re

PENDING, PROCESSING, CANCELLING = "PENDING", "PROCESSING", "CANCELLING"
PROCESSED, FAILED, NEEDS_REVIEW = "PROCESSED", "FAILED", "NEEDS_REVIEW"
REJECTED, CANCELLED = "REJECTED", "CANCELLED"
STATUSES = (PENDING, PROCESSING, NEEDS_REVIEW, REJECTED, PROCESSED, FAILED, CANCELLED, CANCELLING)
EVENT_TYPES = {
    PROCESSED: "workflow_run.completed",
    FAILED: "workflow_run.failed",
    NEEDS_REVIEW: "workflow_run.needs_review",
    REJECTED: "workflow_run.rejected",
    CANCELLED: "workflow_run.cancelled",
}
_UPPER_SNAKE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")


def check_unknown_status(value: str) -> str:
    """`value` when it can stand for a status Extend might add: UPPER_SNAKE and none of the documented ones.

    Raises:
        ValueError: otherwise.
    """
    if not _UPPER_SNAKE.fullmatch(value):
        raise ValueError(f"{value!r} is not an UPPER_SNAKE status (e.g. ARCHIVED)")
    if value in STATUSES:
        raise ValueError(f"{value!r} is a documented status; an unknown one is needed (e.g. ARCHIVED)")
    return value
