"""The webhook receiver in a child process, as production runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from tests.support.asgi import answers_health, free_port
from tests.support.groups import stop_group


class ReceiverProcess:
    """`webhooks.server.serve` in a child process with its own environment (its output to `log_path`, if given)."""

    def __init__(self, env: Mapping[str, str], *, log_path: Path | None = None) -> None:
        self.env = {**os.environ, **env}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def __enter__(self) -> ReceiverProcess:
        code = f"from extendq.webhooks.server import serve; serve(host='127.0.0.1', port={self.port})"
        if self.log_path is not None:
            self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code], env=self.env, stdout=self._log, stderr=self._log, start_new_session=True
        )
        if answers_health(self.url):
            return self
        self.__exit__()
        raise RuntimeError("the receiver did not start")

    def __exit__(self, *exc: object) -> None:
        stop_group(self.proc, 10)
        if self._log is not None:
            self._log.close()

    def log_text(self) -> str:
        """What the receiver printed so far (empty without a `log_path`)."""
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""
