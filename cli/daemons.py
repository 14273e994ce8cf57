"""`extendq worker` and `extendq beat`: Celery's own commands, started with extendq's app.

Every option after the command goes to Celery's `worker` or `beat` command unchanged. Their help is
Celery's, under a line of ours; a mistyped option is Celery's one-line message and exit 2, not a traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import click
from celery.bin.beat import beat as celery_beat
from celery.bin.celery import celery as celery_group
from celery.bin.worker import worker as celery_worker

__all__ = ["HELP_FLAGS", "celery_help", "run_celery"]

Daemon = Literal["worker", "beat"]
HELP_FLAGS = frozenset({"-h", "--help"})
_COMMANDS: dict[str, click.Command] = {"worker": celery_worker, "beat": celery_beat}
_ABOUT = {
    "worker": "Start a Celery worker of extendq's app: it runs the jobs' tasks and the check dispatcher.",
    "beat": "Start Celery beat for extendq's periodic jobs (one beat per pool: it holds a lock in Redis).",
}


def celery_help(daemon: Daemon, *, epilog: str) -> str:
    """Our line on the command, then Celery's help of its own command (every option it passes through)."""
    parent = click.Context(celery_group, info_name="extendq")
    context = click.Context(_COMMANDS[daemon], info_name=daemon, parent=parent)
    own = _COMMANDS[daemon].get_help(context).replace("%%", "%")
    return "\n".join(
        [
            _ABOUT[daemon],
            f"Every option below is Celery's own, passed through to `celery {daemon}`; the app, broker and result",
            "backend (Celery's global -A, -b and --result-backend) come from EXTENDQ_* environment variables.",
            "",
            own,
            "",
            epilog,
        ]
    )


def run_celery(daemon: Daemon, args: Sequence[str]) -> int:
    """Run Celery's `worker` or `beat` with `args`; its exit code.

    Raises `click.UsageError` when Celery refuses an option, before anything started.
    """
    from extendq.tasks.celery import get_app

    celery_app = get_app()
    code: Any = celery_app.start([daemon, *args])
    return int(code or 0)
