"""Real Celery worker processes for end-to-end tests: started with the project's own command, stopped cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import redis

from tests.support.groups import kill_group, stop_group

_READY_MARK = "ready."


class WorkerProcess:
    """`celery -A extendq.tasks worker` in a child process, with its own environment and log file."""

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        log_path: Path,
        concurrency: int = 2,
        queues: str | None = None,
        extra_args: tuple[str, ...] = (),
        app: str = "extendq.tasks",
        program: Sequence[str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.cwd = cwd
        # `app`: another Celery app, e.g. a producer's own workers (callbacks); `program`: another command that
        # takes `worker` and Celery's options (an installed `extendq`).
        self.args = [
            *(program or (sys.executable, "-m", "celery", "-A", app)),
            "worker",
            "--loglevel",
            "INFO",
            "--concurrency",
            str(concurrency),
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
            *extra_args,
        ]
        if queues:
            self.args += ["--queues", queues]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 90.0) -> WorkerProcess:
        """Start the worker and wait until it reports ready."""
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.args, env=self.env, cwd=self.cwd, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if _READY_MARK in self.log_text()[-20000:]:
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.log_text()[-4000:]}")
            time.sleep(0.1)
        raise RuntimeError(f"worker not ready after {timeout_s}s:\n{self.log_text()[-4000:]}")

    def log_text(self) -> str:
        """Everything the worker has logged so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def child_pids(self) -> list[int]:
        """Pids of the pool's child processes."""
        if self.proc is None:
            return []
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True)
        return [int(pid) for pid in out.stdout.split()]

    def kill_child(self) -> int | None:
        """SIGKILL one pool child (as the OOM killer would); its pid."""
        pids = self.child_pids()
        if not pids:
            return None
        os.kill(pids[0], signal.SIGKILL)
        return pids[0]

    def stop(self, timeout_s: float = 15.0) -> None:
        """Warm shutdown, then kill the whole process group if it lingers."""
        stop_group(self.proc, timeout_s)
        self._close_log()

    def kill(self) -> None:
        """SIGKILL the worker and all its children at once."""
        kill_group(self.proc)
        self._close_log()

    def _close_log(self) -> None:
        log = getattr(self, "_log", None)
        if log is not None and not log.closed:
            log.close()

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


_OWNER_KEY = "pytest-claim:owner"  # outside the "extendq*" keys that tests clear between them


def _on_db(url: str, db: int) -> redis.Redis:
    return redis.Redis.from_url(f"{url.rsplit('/', 1)[0]}/{db}")


def claim_database(url: str, *, owner: str, wait_s: float = 30.0) -> int:
    """Claim an empty Redis database number for a test run; given back by `release_database`.

    A database a consumer is still blocked on (a worker's BRPOP, a relay's XREAD) is passed over even when empty: a
    worker that outlived its test would otherwise take the next test's messages. When every free database has one,
    the claim waits up to `wait_s` for one to clear, then takes an empty one regardless.
    """
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        db = _claim_once(url, owner, skip=_databases_consumed(url))
        if db is not None:
            return db
        time.sleep(0.5)
    db = _claim_once(url, owner, skip=set())
    if db is None:
        raise RuntimeError("no empty Redis database (1-15) for the test run")
    return db


def _claim_once(url: str, owner: str, *, skip: set[int]) -> int | None:
    for db in range(1, 16):
        if db in skip:
            continue
        with _on_db(url, db) as client:
            if client.set(_OWNER_KEY, owner, nx=True, ex=3600):
                if client.dbsize() == 1:
                    return db
                client.delete(_OWNER_KEY)  # not empty: somebody else's data
    return None


def _databases_consumed(url: str) -> set[int]:
    """Database numbers a connection is blocked on (flag `b`): a consumer waiting for messages there. Idle pooled
    connections a test process keeps to a database it gave back do not count."""
    with _on_db(url, 0) as client:
        return {int(c["db"]) for c in client.client_list() if "b" in c.get("flags", "") and int(c["db"]) != 0}


_EMPTY = """
local owner = redis.call('GET', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
redis.call('FLUSHDB')
if owner then redis.call('SET', KEYS[1], owner, 'PX', math.max(ttl, 1000)) end
"""


def empty_database(client: redis.Redis) -> None:
    """Delete every key of a claimed database but its claim (FLUSHDB would give the database away)."""
    client.eval(_EMPTY, 1, _OWNER_KEY)


def release_database(url: str, db: int) -> None:
    """Empty the claimed database and give it back."""
    with _on_db(url, db) as client:
        client.flushdb()
