"""Tests for extendq.cli.processes: children in their own process groups, always stopped, stragglers included."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from extendq.cli.processes import ChildFailed, Supervisor, signals_as_exit

# A parent that ignores SIGTERM and leaves a sleeping grandchild in its process group.
STUBBORN = textwrap.dedent(
    """
    import signal, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    print("ready", flush=True)
    time.sleep(60)
    """
)
# A parent that exits on SIGTERM but whose grandchild (ignoring SIGTERM) would outlive it.
ORPHAN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
ORPHANING = textwrap.dedent(
    f"""
    import signal, subprocess, sys, time
    subprocess.Popen([sys.executable, "-c", {ORPHAN!r}])
    print("ready", flush=True)
    time.sleep(60)
    """
)


def live_members(pgid: int) -> list[str]:
    """Processes of the group that are not zombies (a zombie waits for its reaper, it runs nothing)."""
    out = subprocess.run(["ps", "-e", "-o", "pid=,pgid=,stat="], capture_output=True, text=True).stdout
    rows = [line.split() for line in out.splitlines()]
    return [pid for pid, group, stat in rows if int(group) == pgid and not stat.startswith("Z")]


@pytest.fixture
def supervisor(tmp_path: Path) -> Supervisor:
    return Supervisor(tmp_path, stop_timeout_s=0.5)


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_a_child_runs_in_its_own_process_group_and_is_stopped(supervisor: Supervisor) -> None:
    child = supervisor.start("sleeper", python("import time; print('up', flush=True); time.sleep(60)"), env=os.environ)
    supervisor.wait_for_log(child, "up", timeout_s=10)
    assert os.getpgid(child.pid) == child.pid != os.getpgid(0)
    assert supervisor.stop_all() == [child.pid]
    assert child.process.returncode is not None
    assert live_members(child.pid) == []


def test_a_child_ignoring_sigterm_is_killed_with_its_whole_group(supervisor: Supervisor) -> None:
    child = supervisor.start("stubborn", python(STUBBORN), env=os.environ)
    supervisor.wait_for_log(child, "ready", timeout_s=10)
    assert len(live_members(child.pid)) == 2
    supervisor.stop_all()
    assert child.process.returncode == -signal.SIGKILL
    assert live_members(child.pid) == []


def test_grandchildren_outliving_their_parent_are_killed_too(supervisor: Supervisor) -> None:
    child = supervisor.start("orphaning", python(ORPHANING), env=os.environ)
    supervisor.wait_for_log(child, "ready", timeout_s=10)
    supervisor.stop_all()
    assert child.process.returncode == -signal.SIGTERM
    assert live_members(child.pid) == []


def test_children_are_stopped_newest_first_and_only_once(supervisor: Supervisor) -> None:
    first = supervisor.start("first", python("import time; time.sleep(60)"), env=os.environ)
    second = supervisor.start("second", python("import time; time.sleep(60)"), env=os.environ)
    assert supervisor.stop_all() == [second.pid, first.pid]
    assert supervisor.stop_all() == []


def test_a_child_that_exits_early_fails_with_its_log_tail(supervisor: Supervisor) -> None:
    child = supervisor.start("broken", python("import sys; print('bad profile: nope'); sys.exit(3)"), env=os.environ)
    with pytest.raises(ChildFailed, match=r"^broken exited with code 3: bad profile: nope$"):
        supervisor.wait_for_log(child, "ready", timeout_s=10)
    supervisor.stop_all()


def test_a_child_that_never_gets_ready_times_out(supervisor: Supervisor) -> None:
    child = supervisor.start(
        "slow", python("import time; print('starting', flush=True); time.sleep(60)"), env=os.environ
    )
    with pytest.raises(ChildFailed, match=r"^slow was not ready after 0s: starting$"):
        supervisor.wait_for_log(child, "ready", timeout_s=0.3)
    supervisor.stop_all()


def test_wait_for_http_waits_until_the_child_answers(supervisor: Supervisor, tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    argv = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path)]
    child = supervisor.start("http", argv, env=os.environ)
    supervisor.wait_for_http(child, f"http://127.0.0.1:{port}/", timeout_s=10)
    supervisor.stop_all()


def test_a_command_that_cannot_start_is_child_failed(supervisor: Supervisor, tmp_path: Path) -> None:
    with pytest.raises(ChildFailed, match="cannot start nothing"):
        supervisor.start("nothing", [str(tmp_path / "no-such-binary")], env=os.environ)


def test_sigterm_becomes_keyboard_interrupt_inside_the_block() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), signals_as_exit():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)  # the handler runs at the next bytecode; this is only a guard
    assert signal.getsignal(signal.SIGTERM) == before
