"""The front door of the Extend surface (everything outside /_emulator/), as a plain ASGI middleware.

In order: log the arrival time, check `Authorization` (401) and `x-extend-api-version` (400),
apply the requests-per-second limit (429 with Retry-After), answer for a route in an outage, else
apply a forced or drawn fault (delay, error or 429, dropped connection), then hand over to the
routes; a handled request's answer may then be held back (slow answer), replaced by a 504 (late
commit) or thrown away with the connection dropped (lost response). Finally record route, status
and the faults.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from extendq.emulator.errors import ApiProblem, bad_request, error_response
from extendq.emulator.faults import (
    NO_FAULT,
    SCENARIO_HEADER,
    SCOPE_KEY,
    Fault,
    ScenarioError,
    check_route,
    drop_connection,
    parse_scenario,
)
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


class _Held:
    """An ASGI `send` that keeps the response, to send it later or not at all."""

    __slots__ = ("messages",)

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)

    async def release(self, send: Send) -> None:
        """Send the kept response."""
        for message in self.messages:
            await send(message)


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
            fault = scope.get(SCOPE_KEY, NO_FAULT)
            tags = () if fault is NO_FAULT else fault.tags
            emulator.log.record(method, route, path, status, at, recorder.retry_after, lost=fate == LOST, faults=tags)

    async def _handle(self, scope: Scope, receive: Receive, send: Send, route_key: str, at: float) -> str:
        """Serve one request; returns ANSWERED, or DROPPED / LOST when its connection was closed on purpose."""
        try:
            fault = self._admit(scope, route_key, at)
        except ApiProblem as problem:
            await problem.response()(scope, receive, send)
            return ANSWERED
        scope[SCOPE_KEY] = fault  # the endpoints read late commits and unknown statuses from here
        if fault.delay_s:
            await self.emulator.sleep(fault.delay_s)
        if fault.drop:
            await drop_connection(scope, receive, send)
            return DROPPED
        if fault.status is not None:
            await self._refusal(fault)(scope, receive, send)
        elif fault.lose or fault.slow_s or fault.late_s is not None:
            return await self._handle_held(scope, receive, send, fault)
        else:
            await self.app(scope, receive, send)
        return ANSWERED

    def _refusal(self, fault: Fault) -> ASGIApp:
        """The answer of a request refused by an injected error or an outage."""
        if fault.status == 429:
            return rate_limited(self.emulator.profile.faults.retry_after_s, "injected fault").response()
        assert fault.status is not None
        what = "outage of this route" if fault.outage else "fault"
        return error_response(fault.status, f"Injected {what} (emulator)")

    async def _handle_held(self, scope: Scope, receive: Receive, send: Send, fault: Fault) -> str:
        """Handle the request (it takes effect: a create creates, a cancel cancels), then answer after
        `slow_s`: with the response, a 504 for a late commit, or not at all for a lost answer."""
        held = _Held()
        await self.app(scope, receive, held)
        if fault.slow_s:
            await self.emulator.sleep(fault.slow_s)
        if fault.lose:
            await drop_connection(scope, receive, send)
            return LOST
        if fault.late_s is not None:
            # What a gateway that gave up says: nothing of the commit to come (the request log tells).
            await error_response(504, "Gateway timeout (injected fault, emulator)")(scope, receive, send)
        else:
            await held.release(send)
        return ANSWERED

    def _admit(self, scope: Scope, route_key: str, at: float) -> Fault:
        """Check headers and the request rate; return the fault to apply: the route's outage, else the
        scenario header's (which may start an outage), else the profile's draw.

        Raises:
            ApiProblem: 401, 400 or 429.
        """
        emulator = self.emulator
        scenario = self._check_headers(scope)
        retry_after = emulator.limiter.admit_request(at)
        if retry_after is not None:
            limit = emulator.limiter.requests.limit if emulator.limiter.requests else 0
            raise rate_limited(retry_after, f"{limit} requests per second")
        forced = None if scenario is None else self._forced(scenario, route_key, at)
        outage = emulator.outages.current(route_key, at)
        if outage is not None:
            return Fault(status=outage.status, outage=True)
        return forced if forced is not None else emulator.faults.draw(route_key)

    def _forced(self, scenario: bytes, route_key: str, at: float) -> Fault:
        """The scenario header's fault; starts the outage it asks for.

        Raises:
            ApiProblem: 400 for a scenario that cannot be understood or does not fit the route.
        """
        try:
            fault = parse_scenario(scenario.decode("latin-1"))
            check_route(fault, route_key)
        except ScenarioError as exc:
            raise bad_request(str(exc)) from None
        if fault.outage_s is not None:
            self.emulator.outages.start(route_key, fault.status or 503, at, fault.outage_s)
        return fault

    def _check_headers(self, scope: Scope) -> bytes | None:
        """Check `Authorization` and `x-extend-api-version`, learn the public URL; return the scenario header.

        Raises:
            ApiProblem: 401 or 400.
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
        return scenario

    def _check_auth(self, auth: bytes | None) -> None:
        scheme, _, key = (auth or b"").decode("latin-1").partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise ApiProblem(401, "Missing or malformed Authorization header (expected 'Bearer <API key>')")
        if self.emulator.api_keys and key not in self.emulator.api_keys:
            raise ApiProblem(401, "Invalid API key")
