"""Injected faults on the Extend surface: errors (429/5xx/408), added latency, dropped connections and
lost responses.

The profile sets the rates; the request header `x-emulator-scenario` forces one fault on one
request: a status (`500`, `502`, `503`, `504`, `408`, `429`), `drop`, `lose`, or `delay=<seconds>`
(comma-separated to combine, e.g. `delay=0.5,503`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from starlette.types import Receive, Scope, Send

from extendq.emulator.profiles import ERROR_STATUSES, Faults

SCENARIO_HEADER = b"x-emulator-scenario"
FORCEABLE = frozenset(ERROR_STATUSES)


@dataclass(frozen=True, slots=True)
class Fault:
    """What to do to one request.

    `status` is an error to answer instead of handling it; `drop` closes the connection without
    handling it; `lose` handles it, then closes the connection instead of answering.
    """

    delay_s: float = 0.0
    status: int | None = None
    drop: bool = False
    lose: bool = False


NO_FAULT = Fault()


class ScenarioError(ValueError):
    """An `x-emulator-scenario` header that cannot be understood."""


def parse_scenario(value: str) -> Fault:
    """The fault forced by an `x-emulator-scenario` header value.

    Raises:
        ScenarioError: unknown token, or `lose` combined with `drop` or a status.
    """
    delay, status, drop, lose = 0.0, None, False, False
    for token in filter(None, (t.strip().lower() for t in value.split(","))):
        if token == "drop":
            drop = True
        elif token == "lose":
            lose = True
        elif token.startswith("delay="):
            delay = _number(token[6:], token)
        elif token.isdigit() and int(token) in FORCEABLE:
            status = int(token)
        else:
            raise ScenarioError(f"unknown scenario {token!r}: use drop, lose, delay=<s> or one of {sorted(FORCEABLE)}")
    if lose and (drop or status is not None):
        raise ScenarioError("'lose' needs the request handled: it cannot be combined with drop or a status")
    return Fault(delay_s=delay, status=status, drop=drop, lose=lose)


def _number(text: str, token: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ScenarioError(f"bad delay in scenario {token!r}") from None
    if not 0 <= value <= 120:
        raise ScenarioError(f"delay must be within 0..120 s in {token!r}")
    return value


class FaultInjector:
    """Draws faults at the profile's rates, for the routes it names (all when none are named)."""

    def __init__(self, faults: Faults, rng: random.Random) -> None:
        self.faults = faults
        self.rng = rng
        self._replace_rate = faults.rate_limited_rate + faults.error_rate
        self.active = bool(self._replace_rate or faults.drop_rate or faults.lose_rate or faults.latency_s[1])

    def draw(self, route_key: str) -> Fault:
        """The fault for one request to `route_key` (e.g. `GET /workflow_runs/{id}`).

        In order: drop (its own draw); then one draw shared by a 429 (`rate_limited_rate`) and an
        error (`error_rate`), so each happens at exactly its rate; then, for a request that will
        be handled, a lost response (its own draw). A rate of 0 draws nothing, so seeded
        sequences do not depend on the faults left unused.
        """
        faults = self.faults
        if not self.active or (faults.routes is not None and route_key not in faults.routes):
            return NO_FAULT
        rng = self.rng
        delay = rng.uniform(*faults.latency_s) if faults.latency_s[1] else 0.0
        if faults.drop_rate and rng.random() < faults.drop_rate:
            return Fault(delay_s=delay, drop=True)
        if self._replace_rate:
            share = rng.random()
            if share < faults.rate_limited_rate:
                return Fault(delay_s=delay, status=429)
            if share < self._replace_rate:
                return Fault(delay_s=delay, status=rng.choice(faults.error_statuses))
        if faults.lose_rate and rng.random() < faults.lose_rate:
            return Fault(delay_s=delay, lose=True)
        return Fault(delay_s=delay)


async def drop_connection(scope: Scope, receive: Receive, send: Send) -> None:
    """Start a response and stop mid-body: the server closes the connection and the client gets a
    transport error (uvicorn closes any connection whose response was left incomplete)."""
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4096")]})
    await send({"type": "http.response.body", "body": b'{"object":', "more_body": True})


async def discard(message: object) -> None:
    """An ASGI `send` that throws the response away (the response of a request whose answer is lost)."""
