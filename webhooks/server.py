"""Serve the receiver with uvicorn (`extendq webhooks`)."""

from __future__ import annotations

import signal
from types import FrameType

import uvicorn
from starlette.applications import Starlette

from extendq.config.logging import configure_logging
from extendq.config.metrics import disable_multiprocess, enable_multiprocess
from extendq.config.settings import get_settings
from extendq.webhooks.app import create_app


def serve(*, host: str, port: int, workers: int = 1) -> None:
    """Run the receiver until interrupted; settings come from the environment.

    Its processes record metrics into one sample directory (made here, before uvicorn starts them, and
    removed when it stops), so `GET /metrics` on any of them shows them all. They log as a worker does
    (EXTENDQ_LOG_LEVEL, EXTENDQ_LOG_FORMAT): the receiver finishes jobs, and writes their `finished` lines.
    """
    enable_multiprocess()
    # uvicorn hands a SIGTERM back to the process after its graceful shutdown; as an exception, not the
    # default handler's immediate exit, it lets the directory be removed below.
    signal.signal(signal.SIGTERM, _terminated)
    try:
        uvicorn.run(
            "extendq.webhooks.server:served_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            access_log=False,
            log_level="warning",
        )
    finally:
        disable_multiprocess()


def served_app() -> Starlette:
    """The receiver as `extendq webhooks` serves it, in each of its processes: extendq's logging, then the app.

    (`create_app` leaves logging alone: an app that mounts the receiver keeps its own.)
    """
    configure_logging(get_settings())
    return create_app()


def _terminated(signum: int, _: FrameType | None) -> None:
    raise SystemExit(128 + signum)
