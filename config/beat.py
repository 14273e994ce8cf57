"""The beat schedule: named periodic jobs, built-in defaults changed by EXTENDQ_BEAT_SCHEDULE or EXTENDQ_BEAT_FILE.

An entry is `{"task": NAME, "every": "30s" | 30 | "5m" | "1h" | "1d"}` or `{"task": NAME, "cron": "*/5 * * * *"}`
(five fields, UTC), with optional `args`, `kwargs` and `enabled`. An entry named like a built-in one changes
only the keys it gives (`{"reconcile": {"every": "10s"}}`); `null` or `"enabled": false` turns it off. The
file (YAML) is applied first, then the environment variable (JSON).

Beat runs on celery-redbeat: the schedule and each entry's last run live in Redis, and only the beat
holding redbeat's Redis lock fires, so two beats (for availability) still fire each entry once per period.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import redis
import yaml
from celery.schedules import crontab, schedule
from redbeat import RedBeatScheduler

from extendq.config.settings import Settings, get_settings
from extendq.errors import ConfigError

log = logging.getLogger("extendq.beat")
_REDIS_RETRY_S = 0.5

RECONCILE = "extendq.reconcile"
FOLLOW_REVIEWS = "extendq.follow_reviews"
INGEST = "extendq.ingest"
ROLL_UP_USAGE = "extendq.roll_up_usage"

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_EVERY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_KEYS = frozenset({"task", "every", "cron", "args", "kwargs", "enabled"})


def default_specs(settings: Settings) -> dict[str, dict[str, Any]]:
    """The built-in periodic jobs; folder ingestion only when a folder is configured."""
    specs: dict[str, dict[str, Any]] = {
        "reconcile": {"task": RECONCILE, "every": 60},
        "review": {"task": FOLLOW_REVIEWS, "every": min(60.0, settings.review_interval_s)},
        "usage": {"task": ROLL_UP_USAGE, "every": 300},
    }
    if settings.ingest_dir:
        specs["ingest"] = {"task": INGEST, "every": 30}
    return specs


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Celery's `beat_schedule` from settings; a bad entry raises `ConfigError` naming it and its source."""
    specs = default_specs(settings)
    for source, overrides in _overrides(settings):
        for name, spec in overrides.items():
            specs = _merged(specs, str(name), spec, source)
    return {name: _entry(spec) for name, spec in specs.items()}


def parse_every(value: object) -> float:
    """Seconds from `30`, `"30s"`, `"500ms"`, `"5m"`, `"1h"` or `"1d"`; ValueError otherwise."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _EVERY.match(str(value))
        if match is None:
            raise ValueError(f"'every' must be seconds or a number with ms/s/m/h/d, not {value!r}")
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if seconds <= 0:
        raise ValueError("'every' must be more than zero")
    return seconds


def parse_cron(value: object) -> crontab:
    """A crontab from five fields (minute hour day-of-month month day-of-week, UTC); ValueError otherwise."""
    fields = str(value).split()
    if len(fields) != 5:
        raise ValueError(f"'cron' needs five fields (minute hour day month weekday), not {value!r}")
    minute, hour, day_of_month, month_of_year, day_of_week = fields
    return crontab(
        minute=minute, hour=hour, day_of_month=day_of_month, month_of_year=month_of_year, day_of_week=day_of_week
    )


def _overrides(settings: Settings) -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if settings.beat_file:
        path = Path(settings.beat_file)
        try:
            found.append(("EXTENDQ_BEAT_FILE", _mapping(yaml.safe_load(path.read_text()), "EXTENDQ_BEAT_FILE")))
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"EXTENDQ_BEAT_FILE: cannot read {path}: {exc}") from None
    if settings.beat_schedule:
        try:
            loaded = json.loads(settings.beat_schedule)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"EXTENDQ_BEAT_SCHEDULE is not JSON: {exc}") from None
        found.append(("EXTENDQ_BEAT_SCHEDULE", _mapping(loaded, "EXTENDQ_BEAT_SCHEDULE")))
    return found


def _mapping(value: object, source: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: must map entry names to entries")
    return value


def _merged(specs: dict[str, dict[str, Any]], name: str, spec: object, source: str) -> dict[str, dict[str, Any]]:
    specs = dict(specs)
    if spec is None or (isinstance(spec, dict) and spec.get("enabled") is False):
        specs.pop(name, None)
        return specs
    if not isinstance(spec, dict) or not set(spec) <= _KEYS:
        unknown = sorted(set(spec) - _KEYS) if isinstance(spec, dict) else []
        raise ConfigError(f"{source}: entry {name!r} must be an object with keys {sorted(_KEYS)} (got {unknown})")
    merged = {**specs.get(name, {}), **spec}
    if "cron" in spec and "every" not in spec:
        merged.pop("every", None)
    if "every" in spec and "cron" not in spec:
        merged.pop("cron", None)
    specs[name] = _checked(name, merged, source)
    return specs


def _checked(name: str, spec: dict[str, Any], source: str) -> dict[str, Any]:
    try:
        _entry(spec)
    except ValueError as exc:
        raise ConfigError(f"{source}: entry {name!r}: {exc}") from None
    return spec


def _entry(spec: dict[str, Any]) -> dict[str, Any]:
    task = spec.get("task")
    if not isinstance(task, str) or not task:
        raise ValueError("'task' must name a task, e.g. extendq.reconcile")
    if ("every" in spec) == ("cron" in spec):
        raise ValueError("give exactly one of 'every' or 'cron'")
    entry: dict[str, Any] = {"task": task, "args": tuple(spec.get("args") or ()), "kwargs": spec.get("kwargs") or {}}
    if "every" in spec:
        seconds = parse_every(spec["every"])
        entry["schedule"] = schedule(timedelta(seconds=seconds))
        # A firing nobody ran within its period is dropped, so a stopped pool is not flooded when it comes back.
        entry["options"] = {"expires": seconds}
    else:
        entry["schedule"] = parse_cron(spec["cron"])
    return entry


class Scheduler(RedBeatScheduler):  # type: ignore[misc]
    """celery-redbeat's scheduler with the schedule built from settings when beat starts (not at import), that waits
    out a Redis that does not answer (a failover, a restart) instead of exiting."""

    def setup_schedule(self) -> None:
        self.app.conf.beat_schedule = beat_schedule(get_settings())
        super().setup_schedule()

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """One pass over the schedule; while Redis does not answer, a pass again a moment later. (A lock another beat
        took meanwhile still ends this beat, as redbeat has it: `LockNotOwnedError` is no connection error.)"""
        try:
            return float(super().tick(*args, **kwargs))
        except (redis.ConnectionError, redis.TimeoutError) as exc:  # a Sentinel's MasterNotFoundError too
            log.warning("beat: Redis does not answer (%s); trying again in %.1fs", exc, _REDIS_RETRY_S)
            return _REDIS_RETRY_S
