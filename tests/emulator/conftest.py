"""Fixtures of the emulator suite: one served emulator per session (reset per test), a webhook
receiver, SDK clients, and an in-process app with an injected clock (and sleep)."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from extend_ai import AsyncExtend, Extend, PollingOptions

from extendq.emulator.app import create_app
from extendq.emulator.profiles import parse_profile
from tests.support.emulator import EmulatorProcess

SECRET = "wss_test_signing_secret"
API_HEADERS = {"Authorization": "Bearer test-key", "x-extend-api-version": "2026-02-09"}
FAST_POLL = PollingOptions(fast_poll_interval_ms=40, max_wait_ms=15_000, jitter_fraction=0.0)
NO_RETRY: Any = {"max_retries": 0}
INVOICE = "Acme GmbH\nInvoice Number: INV-2026-0042\nDate: 2026-10-03\nTotal Due: EUR 980.00\n"


@dataclass(frozen=True)
class Delivery:
    """One webhook request as the receiver saw it."""

    body: bytes
    headers: dict[str, str]
    at: float


class WebhookReceiver:
    """A tiny HTTP server on loopback that records webhook requests and answers with set statuses."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self.statuses: list[int] = []  # answers to give next, then 200
        self.delays: list[float] = []  # seconds to stall before the next answers
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real webhook endpoints do

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver._record(Delivery(body, {k.lower(): v for k, v in self.headers.items()}, time.time()))
                status, delay = receiver._next_answer()
                time.sleep(delay)
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        ThreadingHTTPServer.request_queue_size = 1024
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _record(self, delivery: Delivery) -> None:
        with self._lock:
            self.deliveries.append(delivery)

    def _next_answer(self) -> tuple[int, float]:
        with self._lock:
            status = self.statuses.pop(0) if self.statuses else 200
            return status, (self.delays.pop(0) if self.delays else 0.0)

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def clear(self) -> None:
        with self._lock:
            self.deliveries.clear()
            self.statuses.clear()
            self.delays.clear()

    def wait_for(self, count: int, timeout_s: float = 5.0) -> list[Delivery]:
        """The first `count` deliveries, waiting for them to arrive."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.deliveries) >= count:
                    return list(self.deliveries)
            time.sleep(0.01)
        raise AssertionError(f"expected {count} webhook deliveries, got {len(self.deliveries)}")


@pytest.fixture(scope="session")
def receiver() -> Iterator[WebhookReceiver]:
    hooks = WebhookReceiver().start()
    yield hooks
    hooks.stop()


@pytest.fixture(scope="session")
def served(receiver: WebhookReceiver) -> Iterator[EmulatorProcess]:
    with EmulatorProcess(profile="fast", webhook_url=receiver.url, webhook_secret=SECRET) as process:
        yield process


@pytest.fixture
def emulator(served: EmulatorProcess, receiver: WebhookReceiver) -> EmulatorProcess:
    """The served emulator, reset to the `fast` profile with webhooks going to `receiver`."""
    served.set_profile({"base": "fast"})
    served.set_webhook(receiver.url, SECRET)
    served.reset()
    receiver.clear()
    return served


@pytest.fixture
def client(emulator: EmulatorProcess) -> Iterator[Extend]:
    """The official sync SDK client pointed at the served emulator."""
    with httpx.Client(timeout=30) as http:
        yield Extend(token="test-key", base_url=emulator.url, httpx_client=http)


@pytest.fixture
def async_client(emulator: EmulatorProcess) -> Callable[[], Any]:
    """Returns an async context manager yielding the official async SDK client."""

    @asynccontextmanager
    async def make() -> AsyncIterator[AsyncExtend]:
        async with httpx.AsyncClient(timeout=30) as http:
            yield AsyncExtend(token="test-key", base_url=emulator.url, httpx_client=http)

    return make


@pytest.fixture
def raw(emulator: EmulatorProcess) -> Iterator[httpx.Client]:
    """A plain httpx client with the API headers, for raw responses."""
    with httpx.Client(base_url=emulator.url, headers=API_HEADERS, timeout=30) as http:
        yield http


class FakeClock:
    """A settable unix clock for in-process apps."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class FakeSleep:
    """An injected `sleep` for in-process apps: notes each wait and moves the clock on instead of waiting."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.clock.advance(seconds)


@dataclass
class InProcess:
    """The official async SDK on an in-process app driven by a FakeClock and a FakeSleep; `http`
    reaches the same app with the API headers (the admin API included)."""

    client: AsyncExtend
    http: httpx.AsyncClient
    clock: FakeClock
    sleep: FakeSleep

    async def admin_runs(self) -> list[dict[str, Any]]:
        """Every run the app holds, committed or not (`GET /_emulator/runs`)."""
        return list((await self.http.get("/_emulator/runs")).json()["data"])

    async def stats(self) -> dict[str, Any]:
        """`GET /_emulator/stats`."""
        return dict((await self.http.get("/_emulator/stats")).json())

    async def requests(self) -> list[dict[str, Any]]:
        """`GET /_emulator/requests`."""
        return list((await self.http.get("/_emulator/requests")).json())


@pytest.fixture
def in_process(clock: FakeClock) -> Callable[..., AbstractAsyncContextManager[InProcess]]:
    """Returns an async context manager: the SDK on `create_app(profile, clock=clock, sleep=FakeSleep(clock))`;
    `profile` may be a dict (`{"base": "fast", ...}`)."""

    @asynccontextmanager
    async def make(profile: Any = "fast", **kwargs: Any) -> AsyncIterator[InProcess]:
        sleep = FakeSleep(clock)
        loaded = parse_profile(profile) if isinstance(profile, dict) else profile
        app = create_app(loaded, clock=clock, sleep=sleep, **kwargs)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://emu", headers=API_HEADERS) as http:
            yield InProcess(AsyncExtend(token="test-key", base_url="http://emu", httpx_client=http), http, clock, sleep)

    return make


@pytest.fixture
def local(clock: FakeClock) -> Callable[..., Any]:
    """Returns an async context manager: an httpx client on an in-process app driven by `clock`."""

    @asynccontextmanager
    async def make(profile: Any = "fast", **kwargs: Any) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(profile, clock=clock, **kwargs)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://emu", headers=API_HEADERS) as http:
            yield http

    return make
