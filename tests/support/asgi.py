"""Serve an ASGI app with uvicorn in a background thread on a free loopback port, for real-HTTP tests."""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn


def free_port() -> int:
    """A TCP port nobody listens on right now, below the kernel's ephemeral range.

    A port the kernel hands out for `bind(0)` comes from the range it also gives outgoing connections: between this
    check and the server's own bind, a client connecting anywhere could take it (`Address already in use`). Ports
    below that range are only ever taken by a listener that asks for them.
    """
    low, _ = _ephemeral_range()
    for _ in range(200):
        port = random.randrange(10_000, min(low, 32_768))
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32_768, 60_999


@contextmanager
def served(app: Any, *, timeout_s: float = 10.0) -> Iterator[str]:
    """The base URL of `app`, served until the block ends."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the app did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout_s)


def answers_health(url: str, timeout_s: float = 20.0) -> bool:
    """Whether `url`/health answers 200 within `timeout_s` (a server just started in another process)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=0.5).status_code == 200:
                return True
        except httpx.TransportError:
            time.sleep(0.05)
    return False
