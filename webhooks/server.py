"""Serve the receiver with uvicorn (`extendq webhooks`)."""

from __future__ import annotations

import uvicorn

from config.metrics import disable_multiprocess, enable_multiprocess


def serve(*, host: str, port: int, workers: int = 1) -> None:
    """Run the receiver until interrupted; settings come from the environment.

    Its processes record metrics into one sample directory (made here, before uvicorn starts them, and
    removed when it stops), so `GET /metrics` on any of them shows them all.
    """
    enable_multiprocess()
    try:
        uvicorn.run(
            "webhooks.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            access_log=False,
            log_level="warning",
        )
    finally:
        disable_multiprocess()
