"""`extendq worker` and `extendq beat` as real processes: Celery's help under ours, and short refusals."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from extendq.cli.main import Exit

# Each test starts Python, Celery and the CLI afresh: seconds each on a busy machine.
pytestmark = pytest.mark.timeout(60)


def extendq(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m extendq ...` in a process of its own (Celery parses its options there), nothing listening."""
    environ = {**os.environ, "EXTENDQ_REDIS_URL": "redis://127.0.0.1:1/0", "COLUMNS": "100", **env}
    command = [sys.executable, "-m", "extendq", *args]
    return subprocess.run(command, env=environ, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize(
    ("args", "named"),
    [(("worker", "--concurency", "2"), "--concurency"), (("beat", "--bogus"), "--bogus")],
)
def test_a_mistyped_option_is_at_most_three_lines_and_exit_2(args: tuple[str, ...], named: str) -> None:
    done = extendq(*args)
    assert done.returncode == Exit.BAD_INPUT, done.stderr
    lines = done.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 3 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith("Error: ") and named in lines[0]
    assert done.stdout == ""


def test_a_mistyped_worker_option_suggests_the_right_one() -> None:
    assert "Did you mean '--concurrency'?" in extendq("worker", "--concurency", "2").stderr


@pytest.mark.parametrize(
    ("daemon", "flag", "options"),
    [
        ("worker", "--help", ("--concurrency", "--loglevel", "--queues", "--pool")),
        ("worker", "-h", ("--concurrency",)),
        ("beat", "--help", ("--max-interval", "--loglevel")),
        ("beat", "-h", ("--max-interval",)),
    ],
)
def test_help_lists_celerys_own_options_with_ours(daemon: str, flag: str, options: tuple[str, ...]) -> None:
    done = extendq(daemon, flag)
    assert done.returncode == Exit.OK, done.stderr
    assert f"Usage: extendq {daemon}" in done.stdout
    for option in options:
        assert option in done.stdout
    assert "EXTENDQ_" in done.stdout and "Exit codes: 0 ok" in done.stdout


@pytest.mark.parametrize("daemon", ["worker", "beat"])
def test_a_bad_setting_is_one_line_and_exit_2(daemon: str) -> None:
    done = extendq(daemon, EXTENDQ_POLL_BACKOFF="abc")
    assert done.returncode == Exit.BAD_INPUT
    assert done.stderr.strip().splitlines() == [
        "Error: invalid settings: EXTENDQ_POLL_BACKOFF: Input should be a valid number, unable to parse string as a "
        "number"
    ]


def test_version_prints_the_packages_version() -> None:
    from extendq import __version__

    done = extendq("--version")
    assert (done.returncode, done.stdout) == (Exit.OK, f"extendq {__version__}\n")
