"""The receiver refuses every bad delivery without changing state, and hands on each good one exactly once."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import redis

from extendq.config.settings import Settings
from extendq.tasks.celery import create_app as create_celery
from extendq.webhooks import create_app
from extendq.worker.store import open_store
from tests.support.asgi import free_port, served
from tests.support.groups import kill_group
from tests.support.receiver import ReceiverProcess

SECRET = "wss_current_secret_1234"
OLD_SECRET = "wss_previous_secret_5678"


def sign(body: bytes, secret: str = SECRET, ts: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if ts is None else ts)
    digest = hmac.new(secret.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
    return {
        "x-extend-request-timestamp": stamp,
        "x-extend-request-signature": digest,
        "content-type": "application/json",
    }


def event_body(event_id: str = "event_1", **payload: Any) -> bytes:
    run = {"object": "workflow_run", "id": "workflow_run_1", "status": "PROCESSED", "metadata": {}, **payload}
    return json.dumps({"eventId": event_id, "eventType": "workflow_run.completed", "payload": run}).encode()


@pytest.fixture
def receiver_settings(module_redis_url: str) -> Settings:
    return Settings.from_env(
        {
            "EXTENDQ_REDIS_URL": module_redis_url,
            "EXTENDQ_WEBHOOK_SECRETS": f"{SECRET},{OLD_SECRET}",
            "EXTENDQ_WEBHOOK_MAX_BODY_BYTES": "65536",
        }
    )


@pytest.fixture
def queue_redis(module_redis: redis.Redis) -> redis.Redis:
    """The receiver's database (its queue included), cleared before and after."""
    return module_redis


@pytest.fixture
def client(receiver_settings: Settings, queue_redis: redis.Redis) -> Iterator[httpx.Client]:
    app = create_app(
        receiver_settings, celery_app=create_celery(receiver_settings), store=open_store(receiver_settings)
    )
    with served(app) as url, httpx.Client(base_url=url) as test_client:
        yield test_client


def queued(queue_redis: redis.Redis) -> list[dict[str, Any]]:
    """The events handed on, as the worker will receive them."""
    messages = [json.loads(raw) for raw in queue_redis.lrange("extendq.checks", 0, -1)]
    bodies = [json.loads(base64.b64decode(m["body"])) for m in messages]
    return [body[0][0] for body in bodies]


def state(queue_redis: redis.Redis) -> list[str]:
    return sorted(queue_redis.scan_iter("extendq*"))


def test_signed_event_is_accepted_and_queued_once(client: httpx.Client, queue_redis: redis.Redis) -> None:
    body = event_body()
    first = client.post("/webhooks/extend", content=body, headers=sign(body))
    again = client.post("/webhooks/extend", content=body, headers=sign(body))
    assert (first.status_code, first.json()) == (200, {"status": "accepted"})
    assert (again.status_code, again.json()) == (200, {"status": "duplicate"})
    assert [event["eventId"] for event in queued(queue_redis)] == ["event_1"]


def test_previous_secret_still_accepted_during_rotation(client: httpx.Client, queue_redis: redis.Redis) -> None:
    body = event_body("event_rotated")
    assert client.post("/webhooks/extend", content=body, headers=sign(body, OLD_SECRET)).status_code == 200


def _tampered(body: bytes) -> dict[str, str]:
    return sign(body.replace(b"PROCESSED", b"FAILED"))


@pytest.mark.parametrize(
    ("case", "headers_for", "status"),
    [
        ("wrong secret", lambda body: sign(body, "wss_not_ours"), 401),
        ("secret without prefix", lambda body: sign(body, SECRET.removeprefix("wss_")), 401),
        ("missing signature", lambda body: {"x-extend-request-timestamp": str(int(time.time()))}, 401),
        (
            "missing timestamp",
            lambda body: {"x-extend-request-signature": sign(body)["x-extend-request-signature"]},
            401,
        ),
        (
            "truncated signature",
            lambda body: {**sign(body), "x-extend-request-signature": sign(body)["x-extend-request-signature"][:32]},
            401,
        ),
        ("stale timestamp", lambda body: sign(body, ts=int(time.time()) - 301), 401),
        ("future timestamp", lambda body: sign(body, ts=int(time.time()) + 61), 401),
        ("millisecond timestamp", lambda body: sign(body, ts=int(time.time() * 1000)), 401),
        ("tampered body", _tampered, 401),
    ],
)
def test_bad_signatures_are_refused_without_state_change(
    case: str, headers_for: Any, status: int, client: httpx.Client, queue_redis: redis.Redis
) -> None:
    before = state(queue_redis)
    body = event_body(f"event_{case.replace(' ', '_')}")
    response = client.post("/webhooks/extend", content=body, headers=headers_for(body))
    assert response.status_code == status, case
    assert state(queue_redis) == before
    assert queued(queue_redis) == []


def _raw_headers(body: bytes, **replaced: bytes) -> list[tuple[bytes, bytes]]:
    """Signed headers as raw bytes, with some values replaced by bytes no str header could carry."""
    headers = {name.encode(): value.encode() for name, value in sign(body).items()}
    return list({**headers, **{name.replace("_", "-").encode(): value for name, value in replaced.items()}}.items())


@pytest.mark.parametrize(
    ("case", "replaced"),
    [
        ("non-ASCII signature (UTF-8)", {"x_extend_request_signature": "é".encode() * 32}),
        ("non-ASCII signature (Latin-1)", {"x_extend_request_signature": "é".encode("latin-1") * 64}),
        ("signature bytes that are no text", {"x_extend_request_signature": b"\xff\xfe" * 32}),
        ("non-ASCII timestamp", {"x_extend_request_timestamp": "١٧٠٠٠٠٠٠٠٠".encode()}),
        ("timestamp bytes that are no text", {"x_extend_request_timestamp": b"\xff\xfe"}),
    ],
)
def test_malformed_signature_headers_are_refused_401_without_state_change(
    case: str, replaced: dict[str, bytes], client: httpx.Client, queue_redis: redis.Redis
) -> None:
    before = state(queue_redis)
    body = event_body(f"event_{len(case)}")
    response = client.post("/webhooks/extend", content=body, headers=_raw_headers(body, **replaced))
    assert (response.status_code, response.text) == (401, '{"error":"invalid, stale or missing signature"}'), case
    assert state(queue_redis) == before
    assert queued(queue_redis) == []


def test_signed_non_json_is_400(client: httpx.Client, queue_redis: redis.Redis) -> None:
    body = b"this is not json"
    assert client.post("/webhooks/extend", content=body, headers=sign(body)).status_code == 400
    body = b'{"eventType": "workflow_run.completed"}'
    assert client.post("/webhooks/extend", content=body, headers=sign(body)).status_code == 400
    assert queued(queue_redis) == []


def test_oversized_body_is_413_before_anything_else(client: httpx.Client, queue_redis: redis.Redis) -> None:
    body = event_body("event_big", padding="x" * 70_000)
    response = client.post("/webhooks/extend", content=body, headers=sign(body))
    assert response.status_code == 413
    assert queued(queue_redis) == [] and state(queue_redis) == []


def test_no_secret_configured_refuses_everything(module_redis_url: str, queue_redis: redis.Redis) -> None:
    settings = Settings.from_env({"EXTENDQ_REDIS_URL": module_redis_url})
    with served(create_app(settings)) as url, httpx.Client(base_url=url) as test_client:
        body = event_body()
        assert test_client.post("/webhooks/extend", content=body, headers=sign(body)).status_code == 503


def test_broker_down_is_503_remembers_nothing_and_the_redelivery_is_taken(
    receiver_settings: Settings, client: httpx.Client, queue_redis: redis.Redis
) -> None:
    # Given a receiver whose broker refuses connections
    port = free_port()
    down = receiver_settings.model_copy(update={"broker_url": f"redis://127.0.0.1:{port}/0"})
    body = event_body("event_broker_down")
    with served(create_app(down, celery_app=create_celery(down), store=open_store(down))) as url:
        # When the event arrives
        refused = httpx.post(f"{url}/webhooks/extend", content=body, headers=sign(body), timeout=60)
    # Then it is refused 503 and its id is not remembered, so the re-delivery is taken
    assert refused.status_code == 503 and state(queue_redis) == []
    again = client.post("/webhooks/extend", content=body, headers=sign(body))
    assert again.json() == {"status": "accepted"}
    assert [event["eventId"] for event in queued(queue_redis)] == ["event_broker_down"]


@contextmanager
def silent_broker() -> Iterator[tuple[str, threading.Event]]:
    """A broker URL whose server takes connections and reads but never answers; the event is set once it has
    been written to (someone is handing a message on).
    """
    listener = socket.create_server(("127.0.0.1", 0))
    heard = threading.Event()
    taken: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # closed: the test is over
            taken.append(conn)
            if conn.recv(65536):
                heard.set()

    threading.Thread(target=serve, name="silent-broker", daemon=True).start()
    try:
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0", heard
    finally:
        listener.close()
        for conn in taken:
            conn.close()


def _deliver_unanswered(url: str, body: bytes) -> None:
    try:
        httpx.post(f"{url}/webhooks/extend", content=body, headers=sign(body), timeout=60)
    except httpx.TransportError:
        pass  # the receiver died before answering: Extend sees no answer and delivers again later


def test_redelivery_after_a_hand_off_lost_with_its_receiver_is_taken(
    module_redis_url: str, queue_redis: redis.Redis
) -> None:
    env = {"EXTENDQ_REDIS_URL": module_redis_url, "EXTENDQ_WEBHOOK_SECRETS": SECRET}
    body = event_body("event_lost_hand_off")
    # Given a receiver that is handing an event on to a broker that never answers
    with silent_broker() as (broker_url, heard), ReceiverProcess({**env, "EXTENDQ_BROKER_URL": broker_url}) as dying:
        first = threading.Thread(target=_deliver_unanswered, args=(dying.url, body), daemon=True)
        first.start()
        assert heard.wait(30), "the receiver never tried to hand the event on"
        # When the receiver dies mid-hand-off, before answering
        kill_group(dying.proc)
        first.join(30)
    assert queued(queue_redis) == []
    # Then Extend's re-delivery, to a receiver that can hand it on, is taken; the one after it is a duplicate
    with ReceiverProcess(env) as receiver, httpx.Client(base_url=receiver.url) as client:
        answers = [client.post("/webhooks/extend", content=body, headers=sign(body)).json() for _ in range(2)]
    assert answers == [{"status": "accepted"}, {"status": "duplicate"}]
    assert [event["eventId"] for event in queued(queue_redis)] == ["event_lost_hand_off"]


def test_health(client: httpx.Client) -> None:
    assert client.get("/health").json() == {"status": "ok"}
