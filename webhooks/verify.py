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


_TIMESTAMP = "x-extend-request-timestamp"
_SIGNATURE = "x-extend-request-signature"
_BAD_SIGNATURE = "invalid, stale or missing signature"


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
    plain_headers = _signature_headers(headers)
    if not any(Webhooks().verify(text, plain_headers, secret, max_age_seconds=max_age_s) for secret in secrets):
        raise Refusal(401, _BAD_SIGNATURE)
    try:
        event = json.loads(text)
    except json.JSONDecodeError:
        raise Refusal(400, "body is not JSON") from None
    if not isinstance(event, dict) or not isinstance(event.get("eventId"), str) or not event["eventId"]:
        raise Refusal(400, "body is not an Extend event (no eventId)")
    return event


def _signature_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The two signature headers, refused (401) unless both are plain ASCII and the timestamp is digits.

    The SDK's check compares with `hmac.compare_digest`, which raises on non-ASCII text, and reads the
    timestamp with `int()`, which takes other scripts' digits: a malformed header must be a refusal, not a 500.
    """
    named = {name.lower(): value for name, value in headers.items()}
    timestamp, signature = named.get(_TIMESTAMP, ""), named.get(_SIGNATURE, "")
    if not (timestamp.isascii() and timestamp.isdigit() and signature.isascii() and signature):
        raise Refusal(401, _BAD_SIGNATURE)
    return {_TIMESTAMP: timestamp, _SIGNATURE: signature}
