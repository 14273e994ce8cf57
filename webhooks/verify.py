"""Checking a delivery before anything else: size, signature (with the SDK, any of several secrets), JSON."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from extend_ai.wrapper.webhooks import Webhooks


@dataclass(frozen=True)
class Refusal(Exception):
    """Why a delivery was refused, as the HTTP status to answer and a short reason."""

    status: int
    reason: str


def verified_event(
    body: bytes, headers: Mapping[str, str], *, secrets: Sequence[str], max_age_s: int
) -> dict[str, Any]:
    """The event in `body` when its signature verifies with one of `secrets`; raises `Refusal` otherwise."""
    if not secrets:
        raise Refusal(503, "no webhook signing secret is configured")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Refusal(400, "body is not UTF-8") from None
    plain_headers = dict(headers)
    if not any(Webhooks().verify(text, plain_headers, secret, max_age_seconds=max_age_s) for secret in secrets):
        raise Refusal(401, "invalid, stale or missing signature")
    try:
        event = json.loads(text)
    except json.JSONDecodeError:
        raise Refusal(400, "body is not JSON") from None
    if not isinstance(event, dict) or not isinstance(event.get("eventId"), str) or not event["eventId"]:
        raise Refusal(400, "body is not an Extend event (no eventId)")
    return event
