"""The `extendq` package: its public names, imports without side effects, and imports that run one way."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import typing
from pathlib import Path

import extendq
import extendq.errors
import extendq.tasks

ROOT = Path(__file__).resolve().parents[1]
PUBLIC = {
    "submit",
    "submit_many",
    "cancel",
    "result",
    "submit_async",
    "result_async",
    "typed_run",
    "extraction",
    "seal_secrets",
    "callback_id",
    "__version__",
}


def test_the_root_exports_the_producer_surface_and_every_name_exists() -> None:
    assert PUBLIC <= set(extendq.__all__)
    for name in extendq.__all__:
        assert getattr(extendq, name) is not None, name
    assert extendq.submit is extendq.tasks.submit


def test_every_public_error_is_under_the_project_base() -> None:
    errors = [getattr(extendq.errors, name) for name in extendq.errors.__all__]
    classes = [error for error in errors if isinstance(error, type)]
    assert {cls.__name__ for cls in classes} >= {"ExtendqError", "ConfigError", "InvalidJobRequest", "JobFailed"}
    assert all(issubclass(cls, extendq.errors.ExtendqError) for cls in classes)
    # The base's name before 0.2 still catches everything
    assert extendq.errors.WorkerError is extendq.errors.ExtendqError
    assert set(extendq.tasks.__all__) <= set(dir(extendq.tasks))


def test_submit_declares_its_keywords_with_types() -> None:
    # `submit(**spec: Unpack[JobSpec])`: editors and mypy check every keyword of a call
    hints = typing.get_type_hints(extendq.tasks.JobSpec)
    assert {"workflow", "file", "package", "metadata", "job_key", "secrets", "tenant", "needs_review"} <= set(hints)
    assert "workflow" in extendq.tasks.JobSpec.__required_keys__
    for function in (extendq.tasks.submit, extendq.tasks.submit_async):
        spec = inspect.signature(function).parameters["spec"]
        assert (spec.kind, spec.annotation) == (inspect.Parameter.VAR_KEYWORD, "Unpack[JobSpec]")


def test_importing_the_producer_helpers_has_no_side_effects() -> None:
    # Given a fresh interpreter that imports everything a web backend would
    probe = """
import json, logging, sys, threading
import celery._state
from celery import signals
from extendq import submit, submit_many, cancel, result, submit_async, result_async, typed_run, extraction
from extendq import seal_secrets, callback_id, __version__
import extendq.errors, extendq.tasks, extendq.webhooks
receivers = [signal.receivers for signal in (signals.setup_logging, signals.worker_ready, signals.worker_init)]
print(json.dumps({
    "apps": len(celery._state._apps),
    "receivers": sum(len(r or []) for r in receivers),
    "threads": threading.active_count(),
    "root_handlers": len(logging.getLogger().handlers),
    "env_read": "extendq.config.settings" in sys.modules and
        sys.modules["extendq.config.settings"].get_settings.cache_info().currsize,
}))
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env={"PATH": ""}, check=True)
    # Then no Celery app was made, no signal connected, no thread started, no logging configured, no setting read
    assert json.loads(done.stdout) == {"apps": 0, "receivers": 0, "threads": 1, "root_handlers": 0, "env_read": 0}


def test_imports_run_one_way_and_without_circles() -> None:
    # import-linter's contracts in pyproject.toml: cli, webhooks -> tasks -> worker -> config -> errors; the
    # emulator imports nothing of the rest; no circle between the modules of a package; no bare folder names.
    lint_imports = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout
