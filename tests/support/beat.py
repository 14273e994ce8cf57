"""Real Celery beat processes for end-to-end tests: `celery -A extendq.tasks beat`, as `extendq beat` starts it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from tests.support.groups import kill_group, stop_group

_STARTED_MARK = "beat: Starting..."
_LEADING_MARK = "beat: Acquired lock"


class BeatProcess:
    """`celery -A extendq.tasks beat` in a child process, with its own environment and log file."""

    def __init__(self, env: Mapping[str, str], *, log_path: Path) -> None:
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.args = [sys.executable, "-m", "celery", "-A", "extendq.tasks", "beat", "--loglevel", "INFO"]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 90.0) -> BeatProcess:
        """Start beat and wait until it runs (leading, or waiting for the lock another beat holds)."""
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.args, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if _STARTED_MARK in self.log_text():
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"beat exited early:\n{self.log_text()[-4000:]}")
            time.sleep(0.1)
        raise RuntimeError(f"beat did not start within {timeout_s}s:\n{self.log_text()[-4000:]}")

    @property
    def leading(self) -> bool:
        """Whether this beat holds the lock (and so is the one that fires)."""
        return _LEADING_MARK in self.log_text()

    @property
    def last_firing(self) -> str:
        """The timestamp of the last task this beat sent ('' for none): the beat holding the lock sent the latest."""
        firings = [line[:23] for line in self.log_text().splitlines() if "Sending due task" in line]
        return firings[-1] if firings else ""

    def log_text(self) -> str:
        """Everything beat has logged so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM (beat releases its lock), then kill the whole process group if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        stop_group(self.proc, timeout_s)
        self._log.close()

    def kill(self) -> None:
        """SIGKILL beat, as a crash would: its lock stays until it times out."""
        if self.proc is not None and self.proc.poll() is None:
            kill_group(self.proc)
            self._log.close()

    def __enter__(self) -> BeatProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
