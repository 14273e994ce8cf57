"""Signs and delivers `workflow_run.*` webhooks the way Extend does.

The dispatcher runs as one background task (started in the app's lifespan). The store tells it
when a run will next reach a terminal status; it sleeps until the earliest such moment, renders
the event from the run's state at that moment and posts it at once, so a delivery leaves within
a few milliseconds of the run's `endTime`. Failed deliveries (non-2xx, timeout, transport error)
are retried with exponential backoff up to `max_attempts`, with the same `eventId` and body.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import hmac
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from extendq.emulator.profiles import WebhookPolicy
from extendq.emulator.runs import RunRecord, state_at
from extendq.emulator.serialize import run_body
from extendq.emulator.statuses import EVENT_TYPES
from extendq.emulator.wire import API_VERSION, JSON_TYPE, dumps, new_id

MAX_RECORDS = 100_000
MAX_IN_FLIGHT = 32  # concurrent deliveries per receiver; more wait their turn, as a flood would overwhelm it


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Extend's signature: hex HMAC-SHA256 over `v0:{timestamp}:{body}`, keyed by the `wss_` secret as-is."""
    return hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256).hexdigest()


def signed_headers(secret: str, body: bytes, now: float) -> dict[str, str]:
    """Headers of one delivery attempt, signed with the current unix time in seconds."""
    timestamp = str(int(now))
    return {
        "content-type": JSON_TYPE,
        "x-extend-api-version": API_VERSION,
        "x-extend-request-timestamp": timestamp,
        "x-extend-request-signature": sign(secret, timestamp, body),
        "user-agent": "extendq-emulator",
    }


@dataclass(frozen=True, slots=True)
class Event:
    """One webhook event, fixed when the run reached the status: retries resend the same body."""

    event_id: str
    event_type: str
    run_id: str
    body: bytes
    signed_url: bool


class SignedUrls:
    """Run payloads parked behind short-lived unguessable URLs (the signed-URL payload variant)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._payloads: dict[str, tuple[bytes, float]] = {}

    def park(self, payload: bytes, ttl_s: float) -> str:
        """Store a payload and return its token."""
        token = secrets.token_urlsafe(24)
        self._payloads[token] = (payload, self.clock() + ttl_s)
        return token

    def fetch(self, token: str) -> bytes | None:
        """The payload, or None when the token is unknown or expired."""
        found = self._payloads.get(token)
        if found is None or found[1] < self.clock():
            self._payloads.pop(token, None)
            return None
        return found[0]

    def clear(self) -> None:
        """Forget every payload."""
        self._payloads.clear()


class WebhookDispatcher:
    """Wakes at the next due terminal time, renders events and delivers them."""

    def __init__(
        self,
        *,
        lookup: Callable[[str], RunRecord | None],
        policy: Callable[[], WebhookPolicy],
        public_url: Callable[[], str],
        clock: Callable[[], float] = time.time,
        url: str | None = None,
        secret: str | None = None,
    ) -> None:
        self.lookup = lookup
        self.policy = policy
        self.public_url = public_url
        self.clock = clock
        self.url = url
        self.secret = secret
        # Further receivers each event also goes to (a benchmark comparing receivers side by side).
        self.mirrors: tuple[str, ...] = ()
        self.signed = SignedUrls(clock)
        self.deliveries: deque[dict[str, Any]] = deque(maxlen=MAX_RECORDS)
        self._due: list[tuple[float, str]] = []
        self._wake: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None
        # Per receiver URL: a slow receiver holds up its own deliveries only, never a mirror's.
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._fired = 0

    def configure(self, url: str | None, secret: str | None, mirrors: tuple[str, ...] = ()) -> None:
        """Change where events go (None stops deliveries); `mirrors`: further URLs each event also goes to, with
        the same body and signature, delivered (and retried) on their own."""
        self.url, self.secret = url, secret
        self.mirrors = mirrors if url is not None else ()
        self._fired = 0

    def schedule(self, run_id: str, at: float) -> None:
        """Note that `run_id` may reach a terminal status at `at`."""
        heapq.heappush(self._due, (at, run_id))
        if self._wake is not None:
            self._wake.set()

    def reset(self) -> None:
        """Forget scheduled events, parked payloads and delivery records; stop deliveries in flight."""
        self._due.clear()
        self.signed.clear()
        self.deliveries.clear()
        for task in list(self._tasks):
            task.cancel()

    async def run(self) -> None:
        """The dispatcher loop; runs until cancelled."""
        self._wake = asyncio.Event()
        self._slots = {}
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=MAX_IN_FLIGHT * 4)
        async with httpx.AsyncClient(limits=limits) as client:
            self._client = client
            try:
                while True:
                    await self._sleep_until_due()
                    self._fire_due()
            finally:
                for task in list(self._tasks):
                    task.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _sleep_until_due(self) -> None:
        wake = self._wake
        assert wake is not None
        wake.clear()
        if not self._due:
            await wake.wait()
            return
        delay = self._due[0][0] - self.clock()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await wake.wait()

    def _fire_due(self) -> None:
        now = self.clock()
        while self._due and self._due[0][0] <= now:
            at, run_id = heapq.heappop(self._due)
            if self.url is None or self.secret is None:
                continue
            event = self._render(run_id, at)
            if event is not None:
                self._send(event, self.url, self.secret)

    def _send(self, event: Event, url: str, secret: str) -> None:
        targets = [url, *self.mirrors]
        # With mirrors, the first receiver posted to takes turns, so that none is always served first.
        self._fired += 1
        shift = self._fired % len(targets)
        for target in targets[shift:] + targets[:shift]:
            task = asyncio.create_task(self._deliver(event, target, secret))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _render(self, run_id: str, at: float) -> Event | None:
        """The event for the run's status at `at`, once per event type; None when there is none."""
        run = self.lookup(run_id)
        if run is None:
            return None
        state = state_at(run, at)
        event_type = EVENT_TYPES.get(state.status)
        if event_type is None or event_type in run.emitted:
            return None
        run.emitted.add(event_type)
        payload = run_body(run, state)
        event_id = new_id("event_")
        body = dumps({"eventId": event_id, "eventType": event_type, "payload": payload})
        threshold = self.policy().url_threshold_bytes
        if threshold is None or len(body) <= threshold:
            return Event(event_id, event_type, run.id, body, signed_url=False)
        token = self.signed.park(dumps(payload), self.policy().signed_url_ttl_s)
        small = {"object": "signed_data_url", "id": run.id, "data": self._signed_url(token), "metadata": run.metadata}
        body = dumps({"eventId": event_id, "eventType": event_type, "payload": small})
        return Event(event_id, event_type, run.id, body, signed_url=True)

    def _signed_url(self, token: str) -> str:
        return f"{self.public_url().rstrip('/')}/_emulator/signed/{token}"

    async def _deliver(self, event: Event, url: str, secret: str) -> None:
        """POST the event until a 2xx or `max_attempts`; best effort, never raises."""
        policy = self.policy()
        for attempt in range(1, policy.max_attempts + 1):
            if await self._attempt(event, url, secret, attempt, policy.timeout_s):
                return
            if attempt < policy.max_attempts:
                await asyncio.sleep(policy.backoff_s * 2 ** (attempt - 1))

    async def _attempt(self, event: Event, url: str, secret: str, attempt: int, timeout_s: float) -> bool:
        assert self._client is not None
        async with self._slots.setdefault(url, asyncio.Semaphore(MAX_IN_FLIGHT)):
            return await self._post(event, url, secret, attempt, timeout_s)

    async def _post(self, event: Event, url: str, secret: str, attempt: int, timeout_s: float) -> bool:
        assert self._client is not None
        at = self.clock()
        status: int | None = None
        error: str | None = None
        try:
            response = await self._client.post(
                url, content=event.body, headers=signed_headers(secret, event.body, at), timeout=timeout_s
            )
            status = response.status_code
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        self.deliveries.append(
            {
                "eventId": event.event_id,
                "eventType": event.event_type,
                "runId": event.run_id,
                "url": url,
                "attempt": attempt,
                "statusCode": status,
                "error": error,
                "signedUrl": event.signed_url,
                "at": at,
            }
        )
        return status is not None and 200 <= status < 300
