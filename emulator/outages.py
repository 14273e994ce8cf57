"""Outage windows: a route answers one error status, without handling its requests, until a set time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from extendq.emulator.wire import iso


@dataclass(frozen=True, slots=True)
class Window:
    """`route` answers `status` until `until` (unix time)."""

    route: str
    status: int
    until: float

    def to_dict(self) -> dict[str, Any]:
        """The window as the admin API shows it."""
        return {"route": self.route, "status": self.status, "until": self.until, "untilIso": iso(self.until)}


class Outages:
    """At most one window per route; a new one replaces it, and one of 0 seconds ends it."""

    def __init__(self) -> None:
        self._by_route: dict[str, Window] = {}

    def start(self, route: str, status: int, at: float, for_s: float) -> Window:
        """Make `route` answer `status` from `at` for `for_s` seconds."""
        window = Window(route, status, at + for_s)
        if for_s > 0:
            self._by_route[route] = window
        else:
            self._by_route.pop(route, None)
        return window

    def current(self, route: str, at: float) -> Window | None:
        """The window `route` is in at `at`, if any (windows that ended are forgotten)."""
        window = self._by_route.get(route)
        if window is None or at < window.until:
            return window
        del self._by_route[route]
        return None

    def active(self, at: float) -> list[Window]:
        """Every window not yet ended at `at`, by route."""
        return [w for route in sorted(self._by_route) if (w := self.current(route, at)) is not None]

    def clear(self) -> None:
        """End every window."""
        self._by_route.clear()
