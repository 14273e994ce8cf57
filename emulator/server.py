"""Serve the emulator with uvicorn; the only emulator module that reads the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping

import uvicorn
from starlette.applications import Starlette

from extendq.emulator.app import create_app
from extendq.emulator.profiles import ProfileError

ENV_PREFIX = "EXTENDQ_EMULATOR_"


def serve(
    *,
    host: str,
    port: int,
    profile: str,
    webhook_url: str | None,
    webhook_secret: str | None,
    api_keys: list[str],
) -> None:
    """Serve the emulator until interrupted (what `extendq emulator` runs).

    Raises:
        SystemExit: the profile or webhook options are invalid.
    """
    try:
        app = create_app(profile=profile, webhook_url=webhook_url, webhook_secret=webhook_secret, api_keys=api_keys)
    except (ProfileError, ValueError) as exc:
        raise SystemExit(f"extendq emulator: {exc}") from None
    # The emulator keeps its own request log (/_emulator/requests); uvicorn's access log would
    # cost more than the request itself on the polling hot path.
    uvicorn.run(app, host=host, port=port, access_log=False, timeout_graceful_shutdown=5)


def create_app_from_env(environ: Mapping[str, str] | None = None) -> Starlette:
    """`uvicorn --factory emulator.server:create_app_from_env`: options from EXTENDQ_EMULATOR_* variables.

    PROFILE (name or file), WEBHOOK_URL, WEBHOOK_SECRET, API_KEYS (comma-separated).
    """
    env = os.environ if environ is None else environ
    keys = [k.strip() for k in env.get(f"{ENV_PREFIX}API_KEYS", "").split(",") if k.strip()]
    return create_app(
        profile=env.get(f"{ENV_PREFIX}PROFILE", "default"),
        webhook_url=env.get(f"{ENV_PREFIX}WEBHOOK_URL") or None,
        webhook_secret=env.get(f"{ENV_PREFIX}WEBHOOK_SECRET") or None,
        api_keys=keys,
    )
