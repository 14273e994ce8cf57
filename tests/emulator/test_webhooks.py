"""Webhooks signed as Extend signs them, checked with the SDK's own verifier."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pydantic
import pytest
from extend_ai import Extend
from extend_ai.types import WebhookEvent
from extend_ai.wrapper.errors import (
    SignedUrlNotAllowedError,
    WebhookPayloadFetchError,
    WebhookSignatureVerificationError,
)
from extend_ai.wrapper.webhooks import Webhooks

from extendq.emulator.webhooks import sign, signed_headers
from tests.emulator.conftest import FAST_POLL, SECRET, Delivery, WebhookReceiver
from tests.support.emulator import EmulatorProcess

EVENTS: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(WebhookEvent)
SLOW = {
    "base": "fast",
    "workflows": {"workflow_slow": {"name": "Slow", "duration_s": [5, 5], "outcomes": {"PROCESSED": 1}}},
}


SIGNED_TTL_S = 4.0


def _event(delivery: Delivery) -> dict[str, Any]:
    return dict(json.loads(delivery.body))


def _by_type(deliveries: list[Delivery]) -> dict[str, Delivery]:
    return {_event(d)["eventType"]: d for d in deliveries}


def _verified(client: Extend, delivery: Delivery) -> Any:
    return client.webhooks.verify_and_parse(delivery.body, delivery.headers, SECRET)


def test_signature_is_what_the_sdk_verifies() -> None:
    body = b'{"eventId":"event_1","eventType":"workflow_run.completed","payload":{"caf\xc3\xa9":1}}'
    headers = signed_headers(SECRET, body, time.time())
    assert Webhooks().verify(body, headers, SECRET)
    assert not Webhooks().verify(body, headers, SECRET.removeprefix("wss_"))
    assert not Webhooks().verify(body + b" ", headers, SECRET)
    assert headers["x-extend-request-signature"] == sign(SECRET, headers["x-extend-request-timestamp"], body)
    assert headers["x-extend-request-timestamp"].isdigit() and len(headers["x-extend-request-timestamp"]) == 10


def test_every_terminal_event_is_delivered_signed_and_parses(
    client: Extend, emulator: EmulatorProcess, receiver: WebhookReceiver
) -> None:
    # Given runs that end in each terminal status
    for workflow in ("workflow_processed", "workflow_failed", "workflow_review"):
        client.workflow_runs.create_and_poll(workflow={"id": workflow}, file={"text": "x"}, polling_options=FAST_POLL)
    review = client.workflow_runs.list(status="NEEDS_REVIEW").data[0]
    emulator.review(review.id, "reject", note="wrong vendor")
    emulator.set_profile(SLOW)
    slow = client.workflow_runs.create(workflow={"id": "workflow_slow"}, file={"text": "x"})
    client.workflow_runs.cancel(slow.id)
    # When the webhooks arrive
    deliveries = _by_type(receiver.wait_for(5))
    # Then each one verifies with the right secret, parses as a typed event and carries the full run
    expected = {
        "workflow_run.completed": "PROCESSED",
        "workflow_run.failed": "FAILED",
        "workflow_run.needs_review": "NEEDS_REVIEW",
        "workflow_run.rejected": "REJECTED",
        "workflow_run.cancelled": "CANCELLED",
    }
    assert set(deliveries) == set(expected)
    for event_type, delivery in deliveries.items():
        event: Any = client.webhooks.verify_and_parse(delivery.body, delivery.headers, SECRET)
        assert (event.event_type, event.payload.status) == (event_type, expected[event_type])
        assert event.event_id.startswith("event_") and event.payload.step_runs is not None
        EVENTS.validate_json(delivery.body)
        assert delivery.headers["content-type"] == "application/json"
        with pytest.raises(WebhookSignatureVerificationError):
            client.webhooks.verify_and_parse(delivery.body, delivery.headers, "wss_wrong")
    assert _event(deliveries["workflow_run.rejected"])["payload"]["rejectionNote"] == "wrong vendor"


def test_rejected_and_cancelled_outcomes_send_their_events_only(
    client: Extend, emulator: EmulatorProcess, receiver: WebhookReceiver
) -> None:
    # Given one run that ends REJECTED and one that ends CANCELLED on their own, with secrets
    rejected = client.workflow_runs.create(
        workflow={"id": "workflow_rejected"}, file={"text": "x"}, secrets={"token": "hook-secret"}
    )
    cancelled = client.workflow_runs.create(workflow={"id": "workflow_cancelled"}, file={"text": "x"})
    # When their webhooks arrive (and nothing more follows)
    deliveries = receiver.wait_for(2)
    time.sleep(0.2)
    # Then each sent exactly its terminal event, signed, with the run as it ended and no secrets
    by_type = _by_type(receiver.deliveries)
    assert set(by_type) == {"workflow_run.rejected", "workflow_run.cancelled"} and len(receiver.deliveries) == 2
    reject: Any = _verified(client, by_type["workflow_run.rejected"])
    cancel: Any = _verified(client, by_type["workflow_run.cancelled"])
    assert (reject.payload.id, reject.payload.status, reject.payload.reviewed) == (rejected.id, "REJECTED", True)
    assert reject.payload.reviewed_by_user == "reviewer@example.com"
    assert reject.payload.rejection_note == "Rejected in review"
    assert (cancel.payload.id, cancel.payload.status) == (cancelled.id, "CANCELLED")
    assert all(b"hook-secret" not in d.body for d in deliveries)


def test_approving_a_review_sends_completed(
    client: Extend, emulator: EmulatorProcess, receiver: WebhookReceiver
) -> None:
    run = client.workflow_runs.create_and_poll(
        workflow={"id": "workflow_review"}, file={"text": "x"}, polling_options=FAST_POLL
    )
    emulator.review(run.id, "approve")
    deliveries = _by_type(receiver.wait_for(2))
    payload = _event(deliveries["workflow_run.completed"])["payload"]
    assert (payload["status"], payload["reviewed"]) == ("PROCESSED", True)


def test_events_leave_right_when_the_run_ends(
    client: Extend, emulator: EmulatorProcess, receiver: WebhookReceiver
) -> None:
    ids = [client.workflow_runs.create(workflow={"id": "workflow_processed"}, file={"text": "x"}).id for _ in range(10)]
    receiver.wait_for(10)
    runs = {r["id"]: r for r in emulator.runs()}
    for attempt in emulator.webhooks():
        end = datetime.fromisoformat(runs[attempt["runId"]]["endTime"]).timestamp()
        # Sent once the run ended, not a poll cycle later (the bench measures how soon: ~10 ms; endTime is in ms)
        assert -0.001 <= attempt["at"] - end < 5.0
    assert {a["runId"] for a in emulator.webhooks()} == set(ids)


def test_failed_deliveries_are_retried_with_the_same_event(
    client: Extend, emulator: EmulatorProcess, receiver: WebhookReceiver
) -> None:
    receiver.statuses = [500, 503]
    client.workflow_runs.create(workflow={"id": "workflow_processed"}, file={"text": "x"})
    deliveries = receiver.wait_for(3)
    time.sleep(0.1)
    assert len(receiver.deliveries) == 3
    assert len({d.body for d in deliveries}) == 1 and len({_event(d)["eventId"] for d in deliveries}) == 1
    attempts = emulator.webhooks()
    assert [(a["attempt"], a["statusCode"]) for a in attempts] == [(1, 500), (2, 503), (3, 200)]
    assert attempts[2]["at"] - attempts[0]["at"] >= 0.05 + 0.1  # backoff 0.05 s, then 0.1 s


def test_attempts_are_bounded_and_timeouts_count_as_failures(
    client: Extend, emulator: EmulatorProcess, receiver: WebhookReceiver
) -> None:
    emulator.set_profile({"base": "fast", "webhooks": {"max_attempts": 3, "backoff_s": 0.01, "timeout_s": 0.2}})
    receiver.delays = [0.5]
    receiver.statuses = [200, 500, 500, 500]
    client.workflow_runs.create(workflow={"id": "workflow_processed"}, file={"text": "x"})
    receiver.wait_for(3)
    time.sleep(0.7)
    attempts = emulator.webhooks()
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert attempts[0]["statusCode"] is None and "Timeout" in attempts[0]["error"]
    assert [a["statusCode"] for a in attempts[1:]] == [500, 500]


def test_large_payloads_arrive_as_a_signed_url(
    client: Extend, emulator: EmulatorProcess, receiver: WebhookReceiver
) -> None:
    emulator.set_profile({"base": "fast", "webhooks": {"url_threshold_bytes": 300}})
    run = client.workflow_runs.create_and_poll(
        workflow={"id": "workflow_processed"}, file={"text": "x"}, metadata={"env": "test"}, polling_options=FAST_POLL
    )
    (delivery,) = receiver.wait_for(1)
    assert len(delivery.body) < 600
    with pytest.raises(SignedUrlNotAllowedError):
        client.webhooks.verify_and_parse(delivery.body, delivery.headers, SECRET)
    event: Any = client.webhooks.verify_and_parse(delivery.body, delivery.headers, SECRET, allow_signed_url=True)
    assert client.webhooks.is_signed_url_event(event)
    assert (event.payload.id, event.payload.metadata) == (run.id, {"env": "test"})
    full: Any = client.webhooks.fetch_signed_payload_sync(event)
    assert (full.event_type, full.event_id, full.payload.id, full.payload.status) == (
        "workflow_run.completed",
        event.event_id,
        run.id,
        "PROCESSED",
    )
    assert emulator.webhooks()[0]["signedUrl"] is True


@pytest.mark.anyio
async def test_signed_urls_expire(
    client: Extend, emulator: EmulatorProcess, receiver: WebhookReceiver, async_client: Callable[[], Any]
) -> None:
    # Long enough for the first fetch on a loaded machine; the second comes after it, whenever the first came
    emulator.set_profile({"base": "fast", "webhooks": {"url_threshold_bytes": 0, "signed_url_ttl_s": SIGNED_TTL_S}})
    client.workflow_runs.create(workflow={"id": "workflow_failed"}, file={"text": "x"})
    (delivery,) = receiver.wait_for(1)
    async with async_client() as async_sdk:
        event: Any = async_sdk.webhooks.verify_and_parse(delivery.body, delivery.headers, SECRET, allow_signed_url=True)
        assert (await async_sdk.webhooks.fetch_signed_payload(event)).payload.status == "FAILED"
        time.sleep(SIGNED_TTL_S + 0.1)
        with pytest.raises(WebhookPayloadFetchError):
            await async_sdk.webhooks.fetch_signed_payload(event)


def test_webhooks_can_be_redirected_or_stopped(
    client: Extend, emulator: EmulatorProcess, receiver: WebhookReceiver
) -> None:
    emulator.set_webhook(None)
    client.workflow_runs.create_and_poll(
        workflow={"id": "workflow_processed"}, file={"text": "x"}, polling_options=FAST_POLL
    )
    time.sleep(0.1)
    assert receiver.deliveries == [] and emulator.webhooks() == []
    emulator.set_webhook(receiver.url, "wss_other_secret")
    client.workflow_runs.create(workflow={"id": "workflow_processed"}, file={"text": "x"})
    (delivery,) = receiver.wait_for(1)
    assert client.webhooks.verify(delivery.body, delivery.headers, "wss_other_secret")


def test_a_run_deleted_before_it_ends_sends_nothing(
    client: Extend, receiver: WebhookReceiver, emulator: EmulatorProcess
) -> None:
    run = client.workflow_runs.create(workflow={"id": "workflow_processed"}, file={"text": "x"})
    client.workflow_runs.delete(run.id)
    time.sleep(0.5)  # the fast profile ends runs within 0.35 s
    assert receiver.deliveries == [] and emulator.webhooks() == []
