"""Hostile deliveries to the webhook receiver over real HTTP: none is accepted and none changes anything in Redis;
a burst of 1,000 genuine events is taken exactly once, and sending it again adds nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import redis

from extendq.config.settings import Settings
from extendq.tasks.celery import create_app as create_celery
from extendq.webhooks import create_app
from extendq.webhooks.app import EVENTS_QUEUE
from extendq.worker.events import EventApplier, Outcome
from extendq.worker.jobs import JobRunner
from extendq.worker.keys import Keys
from extendq.worker.models import JOB_ID_KEY, JobRequest
from extendq.worker.store import RedisJobStore, open_store
from tests.chaos.apps import close_app
from tests.chaos.snapshot import changed_keys, snapshot
from tests.chaos.test_state_machine import RecordingPublisher
from tests.support.asgi import served

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(120)]

SECRET = "wss_chaos_signing_secret_4d2f"
PATH = "/webhooks/extend"
TEN_MB = 10 * 1024 * 1024  # ten times the default EXTENDQ_WEBHOOK_MAX_BODY_BYTES
COUNTERS = "extendq:counters"
BURST = 1000


def sign(body: bytes, secret: str = SECRET, ts: float | None = None) -> dict[str, str]:
    """Headers Extend sends: unix-seconds timestamp, hex HMAC-SHA256 of `v0:{ts}:{body}`."""
    stamp = str(int(time.time() if ts is None else ts))
    digest = hmac.new(secret.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
    return {"x-extend-request-timestamp": stamp, "x-extend-request-signature": digest}


def event(event_id: str, run_id: str = "workflow_run_chaos", status: str = "PROCESSED", **run: Any) -> bytes:
    payload = {"object": "workflow_run", "id": run_id, "status": status, "metadata": {}, **run}
    return json.dumps({"eventId": event_id, "eventType": "workflow_run.completed", "payload": payload}).encode()


def queued_event_ids(client: redis.Redis) -> list[str]:
    """The event ids handed on to the workers, in queue order."""
    messages = [json.loads(raw) for raw in client.lrange(EVENTS_QUEUE, 0, -1)]
    return [json.loads(base64.b64decode(m["body"]))[0][0]["eventId"] for m in messages]


@dataclass(frozen=True)
class Answer:
    """The receiver's answer to one delivery."""

    status: int
    text: str

    @property
    def accepted(self) -> bool:
        return self.status == 200 and '"accepted"' in self.text


@dataclass(frozen=True)
class Attack:
    """One hostile delivery: how it is sent, and the status it must get."""

    name: str
    send: Callable[[httpx.Client], Answer]
    status: int


def _post(body: bytes, headers: Callable[[bytes], dict[str, str]]) -> Callable[[httpx.Client], Answer]:
    def send(client: httpx.Client) -> Answer:
        response = client.post(PATH, content=body, headers={"content-type": "application/json", **headers(body)})
        return Answer(response.status_code, response.text)

    return send


def _huge(*, chunked: bool) -> Callable[[httpx.Client], Answer]:
    """A signed 10 MB event, its length declared or sent in chunks (then only counting the bytes can stop it).

    Over a plain socket, the answer read while the body is still being written: the receiver answers 413
    without reading the rest and closes, which would reset a client that only reads once it has sent it all.
    """

    def send(client: httpx.Client) -> Answer:
        body = event("event_huge", padding="x" * TEN_MB)
        framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}"
        signature = "".join(f"{name}: {value}\r\n" for name, value in sign(body).items())
        head = f"POST {PATH} HTTP/1.1\r\nHost: {client.base_url.host}\r\n{framing}\r\n{signature}\r\n"
        pieces = [body[i : i + 65536] for i in range(0, len(body), 65536)]
        if chunked:
            pieces = [b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces] + [b"0\r\n\r\n"]
        sock = socket.create_connection((client.base_url.host, client.base_url.port), timeout=30)
        writer = threading.Thread(target=_write, args=(sock, [head.encode(), *pieces]), daemon=True)
        writer.start()
        try:
            return _read_answer(sock)
        finally:
            sock.shutdown(socket.SHUT_RDWR)  # wakes the writer if the receiver stopped reading
            writer.join(30)
            sock.close()

    return send


def _write(sock: socket.socket, pieces: list[bytes]) -> None:
    try:
        for piece in pieces:
            sock.sendall(piece)
    except OSError:
        pass  # the receiver closed the connection: it refused the rest


def _read_answer(sock: socket.socket) -> Answer:
    data = b""
    while b"\r\n\r\n" not in data and (chunk := sock.recv(65536)):
        data += chunk
    head, _, text = data.partition(b"\r\n\r\n")
    declared = re.search(rb"(?im)^content-length: *(\d+)", head)
    while declared and len(text) < int(declared.group(1)) and (chunk := sock.recv(65536)):
        text += chunk
    return Answer(int(head.split()[1]), text.decode(errors="replace"))


def _flip(signature: str) -> str:
    return ("0" if signature[0] != "0" else "1") + signature[1:]


def _only(headers: dict[str, str], name: str) -> dict[str, str]:
    return {name: headers[name]}


GOOD = event("event_attack")
NOW = time.time


ATTACKS = [
    Attack("wrong secret", _post(GOOD, lambda b: sign(b, "wss_someone_elses_secret")), 401),
    Attack("signature of another body", _post(GOOD, lambda b: sign(b.replace(b"PROCESSED", b"FAILED"))), 401),
    Attack("missing signature", _post(GOOD, lambda b: _only(sign(b), "x-extend-request-timestamp")), 401),
    Attack("missing timestamp", _post(GOOD, lambda b: _only(sign(b), "x-extend-request-signature")), 401),
    Attack("no headers at all", _post(GOOD, lambda b: {}), 401),
    Attack("empty signature", _post(GOOD, lambda b: {**sign(b), "x-extend-request-signature": ""}), 401),
    Attack(
        "truncated signature",
        _post(GOOD, lambda b: {**sign(b), "x-extend-request-signature": sign(b)["x-extend-request-signature"][:32]}),
        401,
    ),
    Attack(
        "signature with one digit changed",
        _post(GOOD, lambda b: {**sign(b), "x-extend-request-signature": _flip(sign(b)["x-extend-request-signature"])}),
        401,
    ),
    Attack("stale timestamp (301 s old)", _post(GOOD, lambda b: sign(b, ts=NOW() - 301)), 401),
    Attack("future timestamp (61 s ahead)", _post(GOOD, lambda b: sign(b, ts=NOW() + 61)), 401),
    Attack("timestamp in milliseconds", _post(GOOD, lambda b: sign(b, ts=NOW() * 1000)), 401),
    Attack("timestamp not a number", _post(GOOD, lambda b: {**sign(b), "x-extend-request-timestamp": "soon"}), 401),
    Attack(
        "signature in non-ASCII bytes",
        _post(GOOD, lambda b: {**sign(b), "x-extend-request-signature": "é".encode() * 32}),  # type: ignore[dict-item]
        401,
    ),
    Attack("signed body that is not JSON", _post(b"<xml>not json</xml>", sign), 400),
    Attack("signed empty body", _post(b"", sign), 400),
    Attack("signed body that is not UTF-8", _post(b'{"eventId": "\xff\xfe"}', sign), 400),
    Attack("signed JSON without an eventId", _post(b'{"eventType": "workflow_run.completed"}', sign), 400),
    Attack("signed JSON array", _post(b'[{"eventId": "event_in_a_list"}]', sign), 400),
    Attack("body of 10 MB", _huge(chunked=False), 413),
    Attack("body of 10 MB without Content-Length", _huge(chunked=True), 413),
    Attack("GET instead of POST", lambda client: Answer(client.get(PATH).status_code, ""), 405),
]


@pytest.fixture(scope="module")
def receiver_settings(module_redis_url: str) -> Settings:
    return Settings.from_env({"EXTENDQ_REDIS_URL": module_redis_url, "EXTENDQ_WEBHOOK_SECRETS": SECRET})


@pytest.fixture(scope="module")
def base_url(receiver_settings: Settings) -> Iterator[str]:
    celery_app, store = create_celery(receiver_settings), open_store(receiver_settings)
    with served(create_app(receiver_settings, celery_app=celery_app, store=store)) as url:
        yield url
    close_app(celery_app)
    store.client.close()


@pytest.fixture
def db(module_redis: redis.Redis) -> redis.Redis:
    """The receiver's database, with extendq's keys (and its queue) cleared before and after."""
    return module_redis


@pytest.fixture
def client(base_url: str, db: redis.Redis) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as http:
        # One genuine delivery first: the broker's bindings exist, and a replay has something to replay.
        first = http.post(PATH, content=GOOD, headers=sign(GOOD))
        assert (first.status_code, first.json()) == (200, {"status": "accepted"})
        yield http


@dataclass
class Tally:
    """What the hostile deliveries achieved."""

    statuses: Counter[int] = field(default_factory=Counter)
    accepted: int = 0
    changed: list[str] = field(default_factory=list)

    def record(self, answer: Answer, changed: list[str]) -> None:
        self.statuses[answer.status] += 1
        self.accepted += answer.accepted
        self.changed += changed


def attacked(attack: Attack, client: httpx.Client, db: redis.Redis, tally: Tally) -> Answer:
    before = snapshot(db)
    answer = attack.send(client)
    tally.record(answer, changed_keys(before, snapshot(db)))
    return answer


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda attack: attack.name)
def test_hostile_delivery_is_refused_and_changes_nothing(attack: Attack, client: httpx.Client, db: redis.Redis) -> None:
    tally = Tally()
    answer = attacked(attack, client, db, tally)
    assert answer.status == attack.status, answer.text
    assert (tally.accepted, tally.changed) == (0, [])
    assert queued_event_ids(db) == ["event_attack"]


def test_replayed_event_is_dropped_and_only_counted(client: httpx.Client, db: redis.Redis) -> None:
    # Given the event accepted once (the client fixture delivered it)
    before = snapshot(db)
    # When it is delivered again, freshly signed, ten times
    answers = [client.post(PATH, content=GOOD, headers=sign(GOOD)).json() for _ in range(10)]
    # Then every replay is a duplicate, still queued once, and the only change is the replay counter
    assert answers == [{"status": "duplicate"}] * 10
    assert queued_event_ids(db) == ["event_attack"]
    assert changed_keys(before, snapshot(db)) == [COUNTERS]
    assert db.hget(COUNTERS, "webhook_redelivered") == "10"


class _NoCalls:
    """An Extend API that must not be called: applying a webhook needs no API call."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"Extend API called: {name}")


def test_events_for_unknown_runs_are_counted_and_change_no_job(
    client: httpx.Client, db: redis.Redis, receiver_settings: Settings
) -> None:
    # Given a job of ours whose run is known
    store = RedisJobStore(db, keys=Keys(receiver_settings.key_prefix), result_ttl_s=receiver_settings.result_ttl_s)
    request = JobRequest.parse({"workflow": "workflow_processed", "file": {"text": "x"}})
    store.create("job_ours", request, now=time.time(), lease_s=60, secrets=None)
    store.record_run("job_ours", "workflow_run_ours", submitted_at=time.time())
    publisher = RecordingPublisher()
    applier = EventApplier(runner=JobRunner(api=_NoCalls(), store=store, publisher=publisher))
    # When genuine events arrive for a run nobody knows, and for another run claiming our job in its metadata
    strangers = [
        event("event_stranger", run_id="workflow_run_stranger"),
        event("event_claims_ours", run_id="workflow_run_other", metadata={JOB_ID_KEY: "job_ours"}),
    ]
    for body in strangers:
        assert client.post(PATH, content=body, headers=sign(body)).json() == {"status": "accepted"}
    before = snapshot(db)
    outcomes = [applier.apply(json.loads(body)) for body in strangers]
    # Then the receiver took them (they are genuine), and the worker counts them without touching any job
    assert outcomes == [Outcome.UNKNOWN_RUN, Outcome.UNKNOWN_RUN]
    assert changed_keys(before, snapshot(db)) == [COUNTERS]
    assert db.hget(COUNTERS, "webhook_unknown_run") == "2"
    assert dict(publisher.calls) == {}
    record = store.load("job_ours")
    assert record is not None and not record.finished and record.run_id == "workflow_run_ours"


def test_summary_of_hostile_deliveries(client: httpx.Client, db: redis.Redis) -> None:
    tally = Tally()
    rows = [(attack.name, attacked(attack, client, db, tally).status) for attack in ATTACKS]
    replays = [attacked(Attack("replay", _post(GOOD, sign), 200), client, db, tally) for _ in range(5)]
    rows.append(("replay of a valid event (x5)", replays[-1].status))
    width = max(len(name) for name, _ in rows)
    print(f"\n{'attack':<{width}}  status")
    for name, status in rows:
        print(f"{name:<{width}}  {status}")
    state_changes = [key for key in tally.changed if key != COUNTERS]
    print(
        f"{len(ATTACKS) + len(replays)} hostile deliveries: statuses {dict(sorted(tally.statuses.items()))}; "
        f"accepted: {tally.accepted}; state changed: {len(state_changes)} keys "
        f"(the replay counter counted {db.hget(COUNTERS, 'webhook_redelivered')} replays)"
    )
    assert tally.accepted == 0
    assert state_changes == []
    assert queued_event_ids(db) == ["event_attack"]


def burst(base_url: str, bodies: list[bytes]) -> tuple[Counter[str], float]:
    """Deliver every body at once from 32 threads (fresh connections); the answers counted, and the seconds."""
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    with httpx.Client(base_url=base_url, timeout=60, limits=limits) as http, ThreadPoolExecutor(32) as pool:

        def deliver(body: bytes) -> str:
            response = http.post(PATH, content=body, headers=sign(body))
            return f"{response.status_code} {response.json().get('status')}"

        started = time.perf_counter()
        answers = Counter(pool.map(deliver, bodies))
        return answers, time.perf_counter() - started


def test_burst_of_1000_events_is_taken_exactly_once(base_url: str, db: redis.Redis) -> None:
    bodies = [event(f"event_burst_{i:04d}", run_id=f"workflow_run_burst_{i:04d}") for i in range(BURST)]
    # When 1,000 distinct genuine events arrive at once
    first, first_s = burst(base_url, bodies)
    # Then each is accepted and queued exactly once
    assert first == {"200 accepted": BURST}
    ids = queued_event_ids(db)
    assert db.llen(EVENTS_QUEUE) == BURST and len(set(ids)) == BURST
    # When all of them are delivered again, at once
    before = snapshot(db)
    again, again_s = burst(base_url, bodies)
    # Then every one is a duplicate and nothing was added
    assert again == {"200 duplicate": BURST}
    assert db.llen(EVENTS_QUEUE) == BURST
    assert changed_keys(before, snapshot(db)) == [COUNTERS]
    print(
        f"\nburst: {BURST} events in {first_s:.2f} s ({BURST / first_s:.0f}/s), accepted {first['200 accepted']}, "
        f"queued {db.llen(EVENTS_QUEUE)}; again in {again_s:.2f} s: duplicates {again['200 duplicate']}, queued +0"
    )
