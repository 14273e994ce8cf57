"""Injected faults on the Extend surface: errors (5xx/408), added latency and dropped connections.

The profile sets the rates; the request header `x-emulator-scenario` forces one fault on one
request: a status (`500`, `502`, `503`, `504`, `408`, `429`), `drop`, or `delay=<seconds>`
(comma-separated to combine, e.g. `delay=0.5,503`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from starlette.types import Receive, Scope, Send

from emulator.profiles import Faults

SCENARIO_HEADER = b"x-emulator-scenario"
FORCEABLE = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class Fault:
    """What to do to one request; `status` is an error to answer instead of handling it."""

    delay_s: float = 0.0
    status: int | None = None
    drop: bool = False


NO_FAULT = Fault()


class ScenarioError(ValueError):
    """An `x-emulator-scenario` header that cannot be understood."""


def parse_scenario(value: str) -> Fault:
    """The fault forced by an `x-emulator-scenario` header value.

    Raises:
        ScenarioError: unknown token.
    """
    delay, status, drop = 0.0, None, False
    for token in filter(None, (t.strip().lower() for t in value.split(","))):
        if token == "drop":
            drop = True
        elif token.startswith("delay="):
            delay = _number(token[6:], token)
        elif token.isdigit() and int(token) in FORCEABLE:
            status = int(token)
        else:
            raise ScenarioError(f"unknown scenario {token!r}: use drop, delay=<s> or one of {sorted(FORCEABLE)}")
    return Fault(delay_s=delay, status=status, drop=drop)


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
        self.active = bool(faults.error_rate or faults.drop_rate or faults.latency_s[1])

    def draw(self, route_key: str) -> Fault:
        """The fault for one request to `route_key` (e.g. `GET /workflow_runs/{id}`)."""
        faults = self.faults
        if not self.active or (faults.routes is not None and route_key not in faults.routes):
            return NO_FAULT
        rng = self.rng
        delay = rng.uniform(*faults.latency_s) if faults.latency_s[1] else 0.0
        if faults.drop_rate and rng.random() < faults.drop_rate:
            return Fault(delay_s=delay, drop=True)
        if faults.error_rate and rng.random() < faults.error_rate:
            return Fault(delay_s=delay, status=rng.choice(faults.error_statuses))
        return Fault(delay_s=delay)


async def drop_connection(scope: Scope, receive: Receive, send: Send) -> None:
    """Start a response and stop mid-body: the server closes the connection and the client gets a
    transport error (uvicorn closes any connection whose response was left incomplete)."""
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4096")]})
    await send({"type": "http.response.body", "body": b'{"object":', "more_body": True})
