"""The `extendq` console script: parses options and calls the rest."""

from __future__ import annotations

import typer

app = typer.Typer(help="Run Extend workflows at scale from Celery workers.", no_args_is_help=True)


@app.callback()
def _root() -> None:
    """Run Extend workflows at scale from Celery workers."""


@app.command()
def emulator(
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8765, help="Port to bind."),
    profile: str = typer.Option("default", help="Built-in profile name, or a YAML/JSON file."),
    webhook_url: str | None = typer.Option(None, help="Where to deliver workflow_run.* webhooks."),
    webhook_secret: str | None = typer.Option(None, help="Signing secret (wss_...) for webhooks."),
    api_key: list[str] = typer.Option([], help="Accept only these API keys (repeatable); any key when unset."),  # noqa: B008
) -> None:
    """Serve the local Extend API emulator."""
    from emulator.server import serve

    serve(
        host=host,
        port=port,
        profile=profile,
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
        api_keys=list(api_key),
    )


_PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


@app.command(context_settings=_PASSTHROUGH)
def worker(ctx: typer.Context) -> None:
    """Start a Celery worker (any `celery worker` option is passed through); it runs the check dispatcher."""
    from config.celery import app as celery_app

    celery_app.worker_main(["worker", *ctx.args])


@app.command(context_settings=_PASSTHROUGH)
def beat(ctx: typer.Context) -> None:
    """Start Celery beat for the periodic jobs (any `celery beat` option is passed through)."""
    from config.celery import app as celery_app

    celery_app.start(["beat", *ctx.args])


def main() -> None:
    """Entry point of the `extendq` console script."""
    app()
