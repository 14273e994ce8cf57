"""config/beat.py: the schedule of periodic jobs from settings, and beat's wiring in the Celery config."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from celery.schedules import crontab, schedule

from extendq.config.beat import beat_schedule, parse_every
from extendq.config.settings import Settings
from extendq.errors import ConfigError
from extendq.tasks.celery import celery_config


def _schedule(**env: Any) -> dict[str, dict[str, Any]]:
    return beat_schedule(Settings.from_env({f"EXTENDQ_{k.upper()}": v for k, v in env.items()}))


def _seconds(entry: dict[str, Any]) -> float:
    assert isinstance(entry["schedule"], schedule)
    return float(entry["schedule"].run_every.total_seconds())


def test_defaults_reconcile_every_minute_and_ingest_only_with_a_folder() -> None:
    plain = _schedule()
    assert {name: entry["task"] for name, entry in plain.items()} == {
        "reconcile": "extendq.reconcile",
        "review": "extendq.follow_reviews",
        "usage": "extendq.roll_up_usage",
    }
    assert (_seconds(plain["reconcile"]), _seconds(plain["review"]), _seconds(plain["usage"])) == (60, 60, 300)
    assert plain["reconcile"]["options"] == {"expires": 60}
    with_folder = _schedule(ingest_dir="/shared/inbox", ingest_workflow="workflow_invoice", review_interval_s="5")
    assert with_folder["ingest"]["task"] == "extendq.ingest" and _seconds(with_folder["ingest"]) == 30
    assert _seconds(with_folder["review"]) == 5


def test_entries_change_by_name_turn_off_and_new_ones_join() -> None:
    overrides = {
        "reconcile": {"every": "2s"},
        "usage": {"cron": "30 2 * * *"},
        "review": None,
        "nightly": {"task": "extendq.roll_up_usage", "cron": "0 3 * * 1-5", "kwargs": {"x": 1}},
    }
    got = _schedule(beat_schedule=json.dumps(overrides))
    assert sorted(got) == ["nightly", "reconcile", "usage"]
    assert (got["reconcile"]["task"], _seconds(got["reconcile"])) == ("extendq.reconcile", 2)
    assert got["usage"]["schedule"] == crontab(minute="30", hour="2")
    assert got["nightly"]["kwargs"] == {"x": 1} and "options" not in got["nightly"]


def test_the_file_applies_first_then_the_variable(tmp_path: Path) -> None:
    path = tmp_path / "beat.yaml"
    path.write_text("reconcile:\n  every: 10m\nusage:\n  enabled: false\n")
    got = _schedule(beat_file=str(path), beat_schedule='{"reconcile": {"every": "90s"}}')
    assert sorted(got) == ["reconcile", "review"] and _seconds(got["reconcile"]) == 90


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not json", "EXTENDQ_BEAT_SCHEDULE is not JSON"),
        ('["reconcile"]', "must map entry names"),
        ('{"reconcile": {"every": "soon"}}', "entry 'reconcile': 'every' must be"),
        ('{"reconcile": {"cron": "* * *"}}', "five fields"),
        ('{"usage": {"cron": "61 * * * *"}}', "entry 'usage'"),
        ('{"new": {"every": 5}}', "'task' must name a task"),
        ('{"new": {"task": "t", "every": 5, "cron": "* * * * *"}}', "exactly one of 'every' or 'cron'"),
        ('{"reconcile": {"evry": 5}}', "['evry']"),
    ],
)
def test_a_bad_entry_names_itself_and_its_source(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match="EXTENDQ_BEAT_SCHEDULE") as raised:
        _schedule(beat_schedule=value)
    assert message in str(raised.value)


def test_every_accepts_numbers_and_units() -> None:
    assert [parse_every(v) for v in (30, 2.5, "45", "500ms", "2s", "5m", "1h", "1d")] == [
        30,
        2.5,
        45,
        0.5,
        2,
        300,
        3600,
        timedelta(days=1).total_seconds(),
    ]
    for bad in (0, "-1s", "1w", True):
        with pytest.raises(ValueError):
            parse_every(bad)


def test_celery_config_runs_beat_on_redbeat_under_the_key_prefix() -> None:
    settings = Settings.from_env({"EXTENDQ_REDIS_URL": "redis://r:6379/3", "EXTENDQ_KEY_PREFIX": "acme:"})
    config = celery_config(settings)
    assert config["beat_scheduler"] == "extendq.config.beat:Scheduler"
    assert (config["redbeat_redis_url"], config["redbeat_key_prefix"]) == ("redis://r:6379/3", "acme:beat:")
    assert config["redbeat_lock_timeout"] == 60
    assert config["task_routes"]["extendq.reconcile"] == {"queue": "extendq.checks"}
    assert "extendq.ingest" not in config["task_routes"]  # it submits new jobs: the submissions' queue


def test_the_lock_must_outlast_beat_s_sleep_and_ingest_needs_a_workflow() -> None:
    with pytest.raises(ConfigError, match="EXTENDQ_BEAT_LOCK_TIMEOUT_S"):
        Settings.from_env({"EXTENDQ_BEAT_LOCK_TIMEOUT_S": "5", "EXTENDQ_BEAT_MAX_LOOP_INTERVAL_S": "5"})
    with pytest.raises(ConfigError, match="EXTENDQ_INGEST_WORKFLOW"):
        Settings.from_env({"EXTENDQ_INGEST_DIR": "/shared/inbox"})
