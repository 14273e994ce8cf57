"""Child processes the demo supervises: started in their own process groups, always stopped on the way out.

`Supervisor.start()` runs a command in a new session (so a Ctrl-C in the terminal reaches only
the parent, which then stops its children in order) with its output in a log file.
`Supervisor.stop_all()` sends SIGTERM to each child, waits, then SIGKILLs the child's whole process
group (a Celery worker's pool processes included). An `atexit` hook and `signals_as_exit()` make sure
this also happens on SIGTERM and at interpreter exit.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO

import httpx

__all__ = ["Child", "ChildFailed", "Supervisor", "sigint_blocked", "signals_as_exit"]


class ChildFailed(RuntimeError):
    """A child exited or did not become ready in time; the message quotes the end of its log."""


@dataclass
class Child:
    """One supervised process."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        """True while the process has not exited."""
        return self.process.poll() is None

    def log_text(self) -> str:
        """Everything the child has written so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 5) -> str:
        """The last lines of the log, joined with ' | ' to fit on one line."""
        tail = [line.strip() for line in self.log_text().strip().splitlines()[-lines:] if line.strip()]
        return " | ".join(tail) or "no output"


class Supervisor:
    """Starts children and stops every one of them, once, however the parent leaves."""

    def __init__(self, log_dir: Path, *, stop_timeout_s: float = 10.0) -> None:
        self._log_dir = log_dir
        self._stop_timeout_s = stop_timeout_s
        self._children: list[Child] = []
        atexit.register(self.stop_all)

    @property
    def children(self) -> list[Child]:
        return list(self._children)

    def start(self, name: str, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path | None = None) -> Child:
        """Run `argv` in its own session and process group, with stdout and stderr in `<log_dir>/<name>.log`."""
        log_path = self._log_dir / f"{name}.log"
        log_file = log_path.open("ab")
        try:
            process = subprocess.Popen(
                list(argv),
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            log_file.close()
            raise ChildFailed(f"cannot start {name}: {exc}") from exc
        child = Child(name, process, log_path, log_file)
        self._children.append(child)
        return child

    def wait_for_log(self, child: Child, mark: str, *, timeout_s: float) -> None:
        """Wait until `mark` shows up in the child's log."""
        self._wait(child, lambda: mark in child.log_text(), timeout_s)

    def wait_for_http(self, child: Child, url: str, *, timeout_s: float) -> None:
        """Wait until a GET of `url` answers 200."""
        self._wait(child, lambda: _answers(url), timeout_s)

    def _wait(self, child: Child, ready: Callable[[], bool], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if ready():
                return
            if not child.running():
                raise ChildFailed(f"{child.name} exited with code {child.process.returncode}: {child.log_tail()}")
            time.sleep(0.05)
        raise ChildFailed(f"{child.name} was not ready after {timeout_s:.0f}s: {child.log_tail()}")

    def stop_all(self) -> list[int]:
        """Stop every child, newest first, ignoring Ctrl-C meanwhile; the pids that were stopped."""
        stopped: list[int] = []
        with _signals_ignored():
            while self._children:
                child = self._children.pop()
                _stop(child, self._stop_timeout_s)
                stopped.append(child.pid)
        atexit.unregister(self.stop_all)
        return stopped


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


def _stop(child: Child, timeout_s: float) -> None:
    """SIGTERM the child, SIGKILL its process group if it lingers, then SIGKILL any leftovers of the group."""
    process = child.process
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(process.pid)
            process.wait(timeout=5)
    # Pool processes can outlive their parent for a moment; the group still names them.
    _kill_group(process.pid)
    child.log_file.close()


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@contextmanager
def _signals_ignored() -> Iterator[None]:
    """Ignore SIGINT and SIGTERM while children are being stopped, so a second Ctrl-C cannot orphan one."""
    try:
        previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: signals cannot be touched, nor can they arrive here
        yield
        return
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def sigint_blocked() -> Iterator[None]:
    """Block SIGINT in this thread for the block: a process spawned meanwhile inherits the mask and so
    ignores the terminal's Ctrl-C, leaving it to us to stop it in order. A Ctrl-C meanwhile is held, not lost.
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextmanager
def signals_as_exit() -> Iterator[None]:
    """Turn SIGTERM into `KeyboardInterrupt` (like SIGINT) for the block, so `finally` clauses stop children."""

    def _interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, _interrupt)
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
