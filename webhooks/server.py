"""Serve the receiver with uvicorn (`extendq webhooks`)."""

from __future__ import annotations

import signal
from types import FrameType

import uvicorn

from extendq.config.metrics import disable_multiprocess, enable_multiprocess


def serve(*, host: str, port: int, workers: int = 1) -> None:
    """Run the receiver until interrupted; settings come from the environment.

    Its processes record metrics into one sample directory (made here, before uvicorn starts them, and
    removed when it stops), so `GET /metrics` on any of them shows them all.
    """
    enable_multiprocess()
    # uvicorn hands a SIGTERM back to the process after its graceful shutdown; as an exception, not the
    # default handler's immediate exit, it lets the directory be removed below.
    signal.signal(signal.SIGTERM, _terminated)
    try:
        uvicorn.run(
            "extendq.webhooks.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            access_log=False,
            log_level="warning",
        )
    finally:
        disable_multiprocess()


def _terminated(signum: int, _: FrameType | None) -> None:
    raise SystemExit(128 + signum)
