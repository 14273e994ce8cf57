"""Serve the receiver with uvicorn (`extendq webhooks`)."""

from __future__ import annotations

import uvicorn


def serve(*, host: str, port: int, workers: int = 1) -> None:
    """Run the receiver until interrupted; settings come from the environment."""
    uvicorn.run(
        "webhooks.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        log_level="warning",
    )
