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


def main() -> None:
    """Entry point of the `extendq` console script."""
    app()
