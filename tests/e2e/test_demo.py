"""`python -m extendq demo` end to end, as a newcomer runs it: its own emulator, worker and Redis database."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from extendq.cli.demo import KEY_PREFIX, choose_redis
from extendq.cli.redis_server import RedisServer

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = json.loads((ROOT / "samples" / "expected.json").read_text())
CHILDREN = re.compile(r"children: emulator=(?P<emulator>\d+) worker=(?P<worker>\d+) · emulator (?P<url>\S+)")
SHARED = re.compile(r"redis (?P<url>redis://\S+) \(shared Redis")


def demo_env(redis_server_url: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("EXTENDQ_", "EXTEND_API"))}
    return {**env, "EXTENDQ_REDIS_URL": f"{redis_server_url}/0", "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}


def group_alive(pgid: int) -> bool:
    """True while a process of the group (each demo child leads its own) still runs; zombies await their reaper."""
    out = subprocess.run(["ps", "-e", "-o", "pgid=,stat="], capture_output=True, text=True).stdout
    return any(int(group) == pgid and not stat.startswith("Z") for group, stat in map(str.split, out.splitlines()))


def assert_no_children_left(output: str) -> None:
    found = CHILDREN.search(output)
    assert found, output
    pids = [int(found["emulator"]), int(found["worker"])]
    # Nothing is left of either child or its process group (the worker's pool processes included)
    for pid in pids:
        assert not group_alive(pid), f"process group {pid} still has processes"
    port = found["url"].rsplit(":", 1)[1]
    leftover = subprocess.run(["pgrep", "-f", f"extendq emulator --host 127.0.0.1 --port {port}"], capture_output=True)
    assert leftover.returncode == 1, leftover.stdout
    # And a database borrowed from a shared Redis was emptied again
    shared = SHARED.search(output)
    if shared:
        with redis.Redis.from_url(shared["url"]) as client:
            assert client.dbsize() == 0


def test_demo_runs_every_sample_and_leaves_no_process(redis_server_url: str) -> None:
    # When the demo runs to the end
    done = subprocess.run(
        [sys.executable, "-m", "extendq", "demo"],
        cwd=ROOT,
        env=demo_env(redis_server_url),
        capture_output=True,
        text=True,
        timeout=90,
    )
    # Then every document reached its expected status, shown in the table with the totals
    assert done.returncode == 0, done.stdout + done.stderr
    for relative, spec in EXPECTED.items():
        row = next(line for line in done.stdout.splitlines() if relative in line)
        assert f"{spec['status']} ✓" in row, row
        if "invoice_number" in spec:
            assert spec["invoice_number"] in row
    assert "PROCESSED 18" in done.stdout and "NEEDS_REVIEW 4" in done.stdout and "FAILED 4" in done.stdout
    assert re.search(r"latency\s+p50 \d+\.\d+s · p95 \d+\.\d+s", done.stdout)
    assert re.search(r"Extend API calls\s+\d+ \(\d+\.\d per job\)", done.stdout)
    # And no child process remains
    assert_no_children_left(done.stdout)


def _as_from_a_terminal() -> None:
    """SIGINT as a shell at a terminal leaves it: a suite run in the background (`nohup make test &`) has it ignored,
    and a child would inherit that and never see the interrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.timeout(180)
def test_ctrl_c_stops_the_demo_and_every_child(redis_server_url: str, tmp_path: Path) -> None:
    # Given a demo whose children are up and whose jobs are in flight (every answer 1.5 s late: still in flight when
    # the interrupt comes, however busy the machine)
    slow = tmp_path / "slow.json"
    slow.write_text(json.dumps({"base": "default", "faults": {"latency_s": [1.5, 1.5]}}))
    demo = subprocess.Popen(
        [sys.executable, "-m", "extendq", "demo", "--profile", str(slow)],
        cwd=ROOT,
        env=demo_env(redis_server_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_as_from_a_terminal,
    )
    assert demo.stdout is not None
    seen = ""
    try:
        while "Submitting" not in seen:
            line = demo.stdout.readline()
            assert line, f"demo ended early:\n{seen}"
            seen += line
        time.sleep(1.0)
        # When it gets a SIGINT, as from Ctrl-C
        demo.send_signal(signal.SIGINT)
        rest, _ = demo.communicate(timeout=120)  # generous: a loaded machine stops the children slowly
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    # Then it says so, exits 130, and has stopped every child
    output = seen + rest
    assert demo.returncode == 130, output
    assert "interrupted" in output
    assert "Traceback" not in output
    assert_no_children_left(output)


@pytest.fixture
def shared_redis() -> Iterator[str]:
    """A Redis of these tests' own, standing for a shared one (the test run's holds other tests' connections)."""
    with RedisServer() as server:
        yield server.url


def test_the_demo_skips_a_database_a_client_is_connected_to(shared_redis: str) -> None:
    # Given the database the demo would pick, with an idle client connected to it (a worker on an emptied database)
    first = choose_redis(shared_redis)
    first.release()
    assert first.private is None, "the demo started a Redis of its own beside a shared one"
    with redis.Redis.from_url(first.url) as idle:
        idle.ping()
        # When the demo looks for a database again, then it takes another one
        second = choose_redis(shared_redis)
        try:
            assert second.url != first.url
        finally:
            second.release()


def test_release_keeps_keys_that_are_not_the_demos(shared_redis: str) -> None:
    target = choose_redis(shared_redis)
    assert target.private is None, "the demo started a Redis of its own beside a shared one"
    with redis.Redis.from_url(target.url, decode_responses=True) as client:
        # Given someone else's key next to the demo's in the claimed database
        client.set(f"{KEY_PREFIX}job:1", "x")
        client.set("someone-else:data", "keep me")
        # When the demo gives the database back, then only its own keys are gone
        target.release()
        try:
            assert client.keys("*") == ["someone-else:data"]
        finally:
            client.flushdb()
