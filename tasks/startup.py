"""The worker's start, in its main process before it takes any message (`celery -A extendq.tasks worker` and
`extendq worker` alike): it refuses a configuration it cannot run with, then logs one line saying what it will do.

A refusal is one line on stderr, `extendq worker: <what to fix>`, and exit status 2 (a setting) or 3 (Redis did not
answer), before the banner, the pool or the consumer start: a job queued meanwhile stays queued for a worker that
can run it. The checks themselves are `extendq.worker.preflight`.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, NoReturn

from celery.apps.worker import Worker

from extendq.errors import ConfigError
from extendq.worker.preflight import check_values, keyless_emulator, start_line, wait_for_redis

log = logging.getLogger("extendq.worker")
EXIT_CONFIG = 2
EXIT_REDIS = 3


def refuse(line: str, code: int) -> NoReturn:
    """Print `line` (one line) on stderr and exit with `code`: what a process does with a setting it cannot use."""
    print(line.replace("\n", " "), file=sys.stderr, flush=True)
    raise SystemExit(code)


class CheckedWorker(Worker):
    """Celery's worker program for extendq's app (`ExtendqApp.Worker`): checked before it starts, and telling."""

    def on_before_init(self, quiet: bool = False, **kwargs: Any) -> None:
        super().on_before_init(quiet=quiet, **kwargs)
        settings = self.app.settings
        try:
            check_values(settings)
            keyless = keyless_emulator(settings)
        except ConfigError as exc:
            refuse(f"extendq worker: {exc}", EXIT_CONFIG)
        try:
            wait_for_redis(settings)
        except ConfigError as exc:
            refuse(f"extendq worker: {exc}", EXIT_REDIS)
        # Read by the runner of every pool process (forked after this): its key is the emulator's stand-in.
        self.app.keyless_emulator = keyless

    def on_start(self) -> None:
        super().on_start()  # the banner, printed before the line below
        queues = list(self.app.amqp.queues.consume_from)
        log.info(start_line(self.app.settings, queues=queues, keyless=self.app.keyless_emulator))
