"""Serve the dashboard with uvicorn (`extendq dashboard`)."""

from __future__ import annotations

import uvicorn
from starlette.applications import Starlette

from extendq.config.logging import configure_logging
from extendq.config.settings import get_settings
from extendq.dashboard.app import create_app


def serve(*, host: str, port: int) -> None:
    """Run the dashboard until interrupted; settings come from the environment."""
    uvicorn.run(
        "extendq.dashboard.server:served_app",
        factory=True,
        host=host,
        port=port,
        access_log=False,
        log_level="warning",
    )


def served_app() -> Starlette:
    """The dashboard as `extendq dashboard` serves it: extendq's logging, then the app."""
    configure_logging(get_settings())
    return create_app()
