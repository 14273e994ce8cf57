"""Injected faults on the Extend surface: errors (429/5xx/408), added latency, dropped connections,
lost responses, slow answers, late commits and runs ending with a status the SDK does not know.

The profile sets the rates; the request header `x-emulator-scenario` forces faults on one request:
a status (`500`, `502`, `503`, `504`, `408`, `429`), `drop`, `lose`, `delay=<s>`, `slow=<s>`,
`late=<s>`, `status=<STATUS>` or `outage=<s>`, comma-separated to combine (e.g. `delay=0.5,503`).
Outage windows of whole routes live in emulator.outages.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Any

from starlette.types import Receive, Scope, Send

from extendq.emulator.profiles import CREATE_ROUTES, ERROR_STATUSES, MAX_WAIT_S, Faults
from extendq.emulator.statuses import check_unknown_status

SCENARIO_HEADER = b"x-emulator-scenario"
SCOPE_KEY = "extendq.emulator.fault"  # where the gateway leaves a request's fault for the endpoints
FORCEABLE = frozenset(ERROR_STATUSES)
_TIMED = {"delay": "delay_s", "slow": "slow_s", "late": "late_s", "outage": "outage_s"}


@dataclass(frozen=True, slots=True)
class Fault:
    """What to do to one request.

    Before handling: wait `delay_s`; then `status` answers that error instead of handling it and
    `drop` closes the connection without handling it. A handled request may then wait `slow_s`
    before its answer goes out, lose its answer (`lose`: the connection is closed instead), or,
    on a create, commit its runs `late_s` later and answer 504 (a gateway that gave up). Runs it
    creates end with `run_status` when set. `outage_s` (forced only) starts an outage of the
    route; `outage` marks the answer of a route in an outage.
    """

    delay_s: float = 0.0
    status: int | None = None
    drop: bool = False
    lose: bool = False
    slow_s: float = 0.0
    late_s: float | None = None
    run_status: str | None = None
    outage_s: float | None = None
    outage: bool = False

    @property
    def handled(self) -> bool:
        """True when the request reaches the endpoints."""
        return self.status is None and not self.drop

    @property
    def tags(self) -> tuple[str, ...]:
        """The late, slow and outage faults on this request, for the request log and stats."""
        marks = (("late", self.late_s is not None), ("slow", self.slow_s > 0), ("outage", self.outage))
        return tuple(tag for tag, on in marks if on)


NO_FAULT = Fault()


class ScenarioError(ValueError):
    """An `x-emulator-scenario` header that cannot be understood."""


def parse_scenario(value: str) -> Fault:
    """The fault forced by an `x-emulator-scenario` header value.

    Raises:
        ScenarioError: unknown token, or a fault that needs the request handled (`lose`, `slow`,
            `late`, `status=`) combined with one that refuses it (`drop`, an error status, `outage`).
    """
    fields: dict[str, Any] = {}
    for token in filter(None, (t.strip() for t in value.split(","))):
        name, has_value, argument = token.partition("=")
        fields.update(_valued(name.lower(), argument, token) if has_value else _flag(token.lower()))
    fault = Fault(**fields)
    _check_combination(fault)
    return fault


def _flag(token: str) -> dict[str, Any]:
    if token in ("drop", "lose"):
        return {token: True}
    if token.isdigit() and int(token) in FORCEABLE:
        return {"status": int(token)}
    raise ScenarioError(
        f"unknown scenario {token!r}: use drop, lose, delay=<s>, slow=<s>, late=<s>, outage=<s>, "
        f"status=<STATUS> or one of {sorted(FORCEABLE)}"
    )


def _valued(name: str, argument: str, token: str) -> dict[str, Any]:
    if name in _TIMED:
        return {_TIMED[name]: _seconds(argument, token)}
    if name == "status":
        try:
            return {"run_status": check_unknown_status(argument.strip().upper())}
        except ValueError as exc:
            raise ScenarioError(f"{exc} in scenario {token!r}") from None
    return _flag(token.lower())


def _seconds(text: str, token: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ScenarioError(f"bad number of seconds in scenario {token!r}") from None
    if not 0 <= value <= MAX_WAIT_S:
        raise ScenarioError(f"seconds must be within 0..{MAX_WAIT_S:g} in {token!r}")
    return value


def _check_combination(fault: Fault) -> None:
    needs_handling = [
        name
        for name, on in (
            ("lose", fault.lose),
            ("slow", fault.slow_s > 0),
            ("late", fault.late_s is not None),
            ("status=", fault.run_status is not None),
        )
        if on
    ]
    refused = fault.drop or fault.status is not None or fault.outage_s is not None
    if needs_handling and refused:
        raise ScenarioError(
            f"'{needs_handling[0]}' needs the request handled: it cannot be combined with drop, outage or a status"
        )
    if fault.drop and fault.outage_s is not None:
        raise ScenarioError("'outage' answers a status: it cannot be combined with drop")


def check_route(fault: Fault, route_key: str) -> None:
    """Refuse create-only faults (`late=`, `status=`) on other routes.

    Raises:
        ScenarioError: `late=` or `status=` on a route that creates no runs.
    """
    if (fault.late_s is not None or fault.run_status is not None) and route_key not in CREATE_ROUTES:
        raise ScenarioError(f"'late=' and 'status=' apply only to {' and '.join(CREATE_ROUTES)}, not {route_key}")


def scope_fault(scope: Scope) -> Fault:
    """The fault the gateway chose for this request (NO_FAULT when none)."""
    fault: Fault = scope.get(SCOPE_KEY, NO_FAULT)
    return fault


class FaultInjector:
    """Draws faults at the profile's rates, for the routes it names (all when none are named)."""

    def __init__(self, faults: Faults, rng: random.Random) -> None:
        self.faults = faults
        self.rng = rng
        self._replace_rate = faults.rate_limited_rate + faults.error_rate
        self.active = bool(
            self._replace_rate or faults.drop_rate or faults.lose_rate or faults.latency_s[1] or faults.late_commit_rate
        )

    def draw(self, route_key: str) -> Fault:
        """The fault for one request to `route_key` (e.g. `GET /workflow_runs/{id}`).

        In order: drop (its own draw); then one draw shared by a 429 (`rate_limited_rate`) and an
        error (`error_rate`), so each happens at exactly its rate; then, for a request that will
        be handled, a lost response and (on creates) a late commit, each its own draw; these obey
        `routes`. Last, a slow answer on the `slow_routes` (a draw only when `slow_rate` < 1). A
        rate of 0 draws nothing, so seeded sequences do not depend on the faults left unused.
        """
        faults = self.faults
        applies = self.active and (faults.routes is None or route_key in faults.routes)
        fault = self._draw(route_key) if applies else NO_FAULT
        slow_s = faults.slow_routes.get(route_key)
        if slow_s and fault.handled and (faults.slow_rate >= 1 or self._hit(faults.slow_rate)):
            return replace(fault, slow_s=slow_s)
        return fault

    def _draw(self, route_key: str) -> Fault:
        faults = self.faults
        rng = self.rng
        delay = rng.uniform(*faults.latency_s) if faults.latency_s[1] else 0.0
        if self._hit(faults.drop_rate):
            return Fault(delay_s=delay, drop=True)
        if self._replace_rate:
            share = rng.random()
            if share < faults.rate_limited_rate:
                return Fault(delay_s=delay, status=429)
            if share < self._replace_rate:
                return Fault(delay_s=delay, status=rng.choice(faults.error_statuses))
        lose = self._hit(faults.lose_rate)
        late = route_key in CREATE_ROUTES and self._hit(faults.late_commit_rate)
        return Fault(delay_s=delay, lose=lose, late_s=faults.late_commit_s if late else None)

    def draw_run_status(self, workflow_id: str) -> str | None:
        """The unknown status one new run of `workflow_id` is to end with, or None for its own outcome."""
        unknown = self.faults.unknown_status
        if unknown is None or (unknown.workflows is not None and workflow_id not in unknown.workflows):
            return None
        return unknown.status if unknown.rate >= 1 or self._hit(unknown.rate) else None

    def _hit(self, rate: float) -> bool:
        """One draw at `rate`; none at all when the rate is 0."""
        return bool(rate) and self.rng.random() < rate


async def drop_connection(scope: Scope, receive: Receive, send: Send) -> None:
    """Start a response and stop mid-body: the server closes the connection and the client gets a
    transport error (uvicorn closes any connection whose response was left incomplete)."""
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4096")]})
    await send({"type": "http.response.body", "body": b'{"object":', "more_body": True})
