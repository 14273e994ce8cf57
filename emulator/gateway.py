"""The front door of the Extend surface (everything outside /_emulator/), as a plain ASGI middleware.

In order: log the arrival time, check `Authorization` (401) and `x-extend-api-version` (400),
apply the requests-per-second limit (429 with Retry-After), apply a forced or drawn fault (delay,
error or 429, dropped connection), then hand over to the routes (throwing the answer away and
dropping the connection when the fault is a lost response); finally record route and status.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from extendq.emulator.errors import ApiProblem, bad_request, error_response
from extendq.emulator.faults import SCENARIO_HEADER, Fault, ScenarioError, discard, drop_connection, parse_scenario
from extendq.emulator.state import Emulator

ADMIN_PREFIX = "/_emulator"
UNMATCHED = "<unmatched>"
ANSWERED, DROPPED, LOST = "answered", "dropped", "lost"  # what became of a request's answer


class RouteTable:
    """Maps a request to its route template, e.g. `/workflow_runs/{id}`, for logs and stats."""

    def __init__(self, routes: Sequence[tuple[str, str, re.Pattern[str]]]) -> None:
        self._routes = routes  # (method, template, compiled path regex)

    def template(self, method: str, path: str) -> str:
        """The template of the route that serves `method path`; else of one matching the path; else UNMATCHED."""
        fallback = UNMATCHED
        for route_method, template, regex in self._routes:
            if regex.match(path):
                if route_method == method:
                    return template
                if fallback is UNMATCHED:
                    fallback = template
        return fallback


class _Recorder:
    """Wraps `send` to learn the status and Retry-After of the response."""

    __slots__ = ("send", "status", "retry_after")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.status: int | None = None
        self.retry_after: int | None = None

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            if self.status == 429:
                for name, value in message.get("headers", ()):
                    if name.lower() == b"retry-after":
                        self.retry_after = int(value)
        await self.send(message)


def rate_limited(retry_after: int, what: str) -> ApiProblem:
    """429 RATE_LIMIT_EXCEEDED with an integer Retry-After."""
    return ApiProblem(429, f"Rate limit exceeded: {what}", headers={"retry-after": str(retry_after)})


class ExtendGateway:
    """Auth, version header, rate limit, faults and accounting for every Extend-surface request."""

    def __init__(self, app: ASGIApp, *, emulator: Emulator, routes: RouteTable) -> None:
        self.app = app
        self.emulator = emulator
        self.routes = routes
        self._host = b""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(ADMIN_PREFIX):
            await self.app(scope, receive, send)
            return
        emulator = self.emulator
        at = emulator.clock()
        method, path = scope["method"], scope["path"]
        route = self.routes.template(method, path)
        recorder = _Recorder(send)
        fate = ANSWERED
        try:
            fate = await self._handle(scope, receive, recorder, f"{method} {route}", at)
        finally:
            status = recorder.status if fate == ANSWERED else None
            emulator.log.record(method, route, path, status, at, recorder.retry_after, lost=fate == LOST)

    async def _handle(self, scope: Scope, receive: Receive, send: Send, route_key: str, at: float) -> str:
        """Serve one request; returns ANSWERED, or DROPPED / LOST when its connection was closed on purpose."""
        try:
            fault = self._admit(scope, route_key, at)
        except ApiProblem as problem:
            await problem.response()(scope, receive, send)
            return ANSWERED
        if fault.delay_s:
            await asyncio.sleep(fault.delay_s)
        if fault.drop:
            await drop_connection(scope, receive, send)
            return DROPPED
        if fault.status == 429:
            retry_after = self.emulator.profile.faults.retry_after_s
            await rate_limited(retry_after, "injected fault").response()(scope, receive, send)
        elif fault.status is not None:
            await error_response(fault.status, "Injected fault (emulator)")(scope, receive, send)
        elif fault.lose:
            # The request takes effect (a create creates, a cancel cancels); only its answer is lost.
            await self.app(scope, receive, discard)
            await drop_connection(scope, receive, send)
            return LOST
        else:
            await self.app(scope, receive, send)
        return ANSWERED

    def _admit(self, scope: Scope, route_key: str, at: float) -> Fault:
        """Check headers and the request rate; return the fault to apply.

        Raises:
            ApiProblem: 401, 400 or 429.
        """
        emulator = self.emulator
        auth = version = scenario = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                auth = value
            elif name == b"x-extend-api-version":
                version = value
            elif name == SCENARIO_HEADER:
                scenario = value
            elif name == b"host" and value != self._host:
                self._host = value
                emulator.learn_public_url(scope.get("scheme", "http"), value.decode("latin-1"))
        self._check_auth(auth)
        if not version:
            raise bad_request("Missing x-extend-api-version header")
        retry_after = emulator.limiter.admit_request(at)
        if retry_after is not None:
            limit = emulator.limiter.requests.limit if emulator.limiter.requests else 0
            raise rate_limited(retry_after, f"{limit} requests per second")
        if scenario is not None:
            try:
                return parse_scenario(scenario.decode("latin-1"))
            except ScenarioError as exc:
                raise bad_request(str(exc)) from None
        return emulator.faults.draw(route_key)

    def _check_auth(self, auth: bytes | None) -> None:
        scheme, _, key = (auth or b"").decode("latin-1").partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise ApiProblem(401, "Missing or malformed Authorization header (expected 'Bearer <API key>')")
        if self.emulator.api_keys and key not in self.emulator.api_keys:
            raise ApiProblem(401, "Invalid API key")
