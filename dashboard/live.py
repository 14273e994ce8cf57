"""The overview, live: one reader per dashboard process follows the events stream and, when jobs changed (or
every `idle_s` for the ages and heartbeats), renders the overview once and sends it to every open page over
server-sent events. A hundred open pages cost one stream read and one render a second, not a hundred polls.

The reader starts with the first page that listens and stops with the last one, so a dashboard mounted into
another ASGI app (whose lifespan it does not get) needs no start-up hook. It renders for the mount path its
listeners came through, so the links it sends stay under that mount.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import redis

_BLOCK_MS = 1000


@dataclass(frozen=True)
class Snapshot:
    """One rendering of the overview: `version` (ms since the epoch, so pages served by different processes
    compare) and its HTML."""

    version: int
    html: str

    def sse(self) -> str:
        data = json.dumps({"version": self.version, "html": self.html}, separators=(",", ":"))
        return f"event: overview\ndata: {data}\n\n"


@dataclass(kw_only=True)
class LiveOverview:
    """Fans one stream reader's renders out to every listening page."""

    client: redis.Redis
    stream: str
    render: Callable[[str], str]  # the overview's HTML, its links under the given mount path ('' at the root)
    min_interval_s: float = 1.0
    idle_s: float = 5.0
    keepalive_s: float = 15.0
    _listeners: set[asyncio.Queue[Snapshot]] = field(default_factory=set)
    _reader: asyncio.Task[None] | None = None
    latest: Snapshot | None = None
    root: str = ""  # the mount path the listeners came through

    async def listen(self, disconnected: Callable[[], Any], *, root: str = "") -> AsyncIterator[str]:
        """The SSE text for one page (served under the mount path `root`): the newest overview at once, then each new
        one, until it goes away."""
        self.root = root
        queue: asyncio.Queue[Snapshot] = asyncio.Queue(maxsize=1)
        self._listeners.add(queue)
        self._ensure_reader()
        try:
            yield "retry: 3000\n\n"
            if self.latest is not None:
                yield self.latest.sse()
            while not await disconnected():
                try:
                    snapshot = await asyncio.wait_for(queue.get(), timeout=self.keepalive_s)
                except TimeoutError:
                    yield ": keepalive\n\n"
                    continue
                yield snapshot.sse()
        finally:
            self._listeners.discard(queue)

    def _ensure_reader(self) -> None:
        if self._reader is None or self._reader.done():
            self._reader = asyncio.get_running_loop().create_task(self._follow())

    async def _follow(self) -> None:
        last = await anyio.to_thread.run_sync(self._stream_end)
        await self._publish()
        rendered_at = time.monotonic()
        while self._listeners:
            last, changed = await anyio.to_thread.run_sync(self._read, last)
            wait = self.min_interval_s - (time.monotonic() - rendered_at)
            if not changed and time.monotonic() - rendered_at < self.idle_s:
                continue
            if wait > 0:
                await asyncio.sleep(wait)
            await self._publish()
            rendered_at = time.monotonic()

    async def _publish(self) -> None:
        html = await anyio.to_thread.run_sync(self.render, self.root)
        self.latest = Snapshot(version=int(time.time() * 1000), html=html)
        for queue in list(self._listeners):
            if queue.full():
                queue.get_nowait()  # a slow page gets the newest render, never a backlog
            queue.put_nowait(self.latest)

    def _stream_end(self) -> str:
        newest: Any = self.client.xrevrange(self.stream, count=1)
        return str(newest[0][0]) if newest else "0-0"

    def _read(self, last: str) -> tuple[str, bool]:
        """Waits up to a second for entries after `last`; the newest id read, and whether any came."""
        reply: Any = self.client.xread({self.stream: last}, count=1000, block=_BLOCK_MS)
        entries = [entry for _, batch in reply or [] for entry in batch]
        return (str(entries[-1][0]), True) if entries else (last, False)
