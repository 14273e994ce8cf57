"""Logging for every extendq process: readable text by default, one JSON object per line when configured."""

from __future__ import annotations

import json
import logging
import logging.config
from typing import Any

from extendq.config.settings import Settings

_TEXT = "%(asctime)s %(levelname)s %(name)s [%(processName)s] %(message)s"
# The structured fields a log call may attach with `extra=` (a job's state change: worker/joblog.py). Only these
# become JSON keys: libraries attach other things (Celery attaches a task's arguments), which must never reach
# the logs.
FIELDS = ("event", "job_id", "run_id", "workflow_id", "state", "status", "error", "via", "elapsed_s", "checks")
# Loggers kept at or above these levels whatever the configured one: HTTP clients are chatty, and Celery's pool
# logs each task message's arguments at DEBUG ("TaskPool: Apply ... kwargsrepr"), where a secret a producer sent
# unsealed (refused by the worker) would be written down.
QUIETER = {
    "httpx": logging.WARNING,
    "httpcore": logging.WARNING,
    "extend_ai": logging.WARNING,
    "celery.pool": logging.INFO,
}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the structured `FIELDS` given, the exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "process": record.processName,
            "message": record.getMessage(),
        }
        entry.update((name, record.__dict__[name]) for name in FIELDS if name in record.__dict__)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def logging_config(settings: Settings) -> dict[str, Any]:
    """A dictConfig for `settings`: the format and level, with the `QUIETER` loggers kept at their floor."""
    formatter: dict[str, Any] = (
        {"()": f"{__name__}.JsonFormatter"} if settings.log_format == "json" else {"format": _TEXT}
    )
    level = logging.getLevelNamesMapping().get(settings.log_level.upper(), logging.INFO)
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "default"}},
        "root": {"handlers": ["console"], "level": settings.log_level.upper()},
        "loggers": {name: {"level": max(level, floor)} for name, floor in QUIETER.items()},
    }


def configure_logging(settings: Settings) -> None:
    """Apply `logging_config(settings)`; called from Celery's `setup_logging` signal and by the CLI."""
    logging.config.dictConfig(logging_config(settings))
