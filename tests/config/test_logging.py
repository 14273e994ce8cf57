"""Logging: readable text by default; JSON lines carry a job's structured fields and nothing else attached."""

from __future__ import annotations

import json
import logging

from extendq.config.logging import JsonFormatter, logging_config
from extendq.config.settings import Settings


def _record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord("extendq.jobs", logging.INFO, __file__, 1, "job %s finished", ("j1",), None)
    record.__dict__.update(extra)
    return record


def test_json_lines_have_the_job_fields_as_keys() -> None:
    line = JsonFormatter().format(
        _record(event="finished", job_id="j1", run_id="r1", status="PROCESSED", elapsed_s=1.5)
    )
    entry = json.loads(line)
    assert entry["message"] == "job j1 finished" and entry["level"] == "INFO" and entry["logger"] == "extendq.jobs"
    assert (entry["event"], entry["job_id"], entry["run_id"], entry["status"], entry["elapsed_s"]) == (
        "finished",
        "j1",
        "r1",
        "PROCESSED",
        1.5,
    )


def test_json_lines_drop_what_libraries_attach() -> None:
    # Celery attaches a task's arguments (secrets, documents) as `data` to its own records
    line = JsonFormatter().format(_record(data={"kwargs": "{'secrets': 'sealed'}"}, password="hunter2"))
    assert (
        "sealed" not in line
        and "hunter2" not in line
        and set(json.loads(line))
        == {
            "ts",
            "level",
            "logger",
            "process",
            "message",
        }
    )


def test_text_by_default_and_json_when_asked() -> None:
    assert "()" not in logging_config(Settings.from_env({}))["formatters"]["default"]
    json_config = logging_config(Settings.from_env({"EXTENDQ_LOG_FORMAT": "json"}))
    assert json_config["formatters"]["default"]["()"].endswith("JsonFormatter")


def test_celery_pool_never_logs_task_arguments_even_at_debug() -> None:
    # Its DEBUG line repeats each task message's arguments: a secret sent unsealed would be written down
    debug = logging_config(Settings.from_env({"EXTENDQ_LOG_LEVEL": "DEBUG"}))
    assert debug["root"]["level"] == "DEBUG"
    assert debug["loggers"]["celery.pool"]["level"] == logging.INFO
    assert debug["loggers"]["httpx"]["level"] == logging.WARNING


def test_quieter_loggers_follow_a_level_above_their_floor() -> None:
    loggers = logging_config(Settings.from_env({"EXTENDQ_LOG_LEVEL": "error"}))["loggers"]
    assert {config["level"] for config in loggers.values()} == {logging.ERROR}
