"""Worker crashes, Redis restarts and API storms, at a size the test suite can afford (bench/chaos.py runs them big).

Each scenario runs on a private redis-server and its own workers; the emulator is the session's.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.chaos import STORM_FAULTS, crashes, redis_restart, storm
from bench.common import API_KEY
from tests.support.emulator import EmulatorProcess

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorProcess]:
    """An emulator of this module's own: the scenarios change its profile and faults freely."""
    with EmulatorProcess(profile="fast", api_keys=(API_KEY,)) as served:
        yield served


def test_killed_and_stopped_workers_lose_nothing_and_duplicate_nothing(
    emulator: EmulatorProcess, tmp_path: Path
) -> None:
    # Given 40 jobs, while workers are SIGKILLed (whole process groups) every second and restarted, one SIGTERMed
    figures = crashes(emulator, 40, tmp_path, disturb=True, duration=(2.0, 6.0))
    # Then every job finished and each job key has exactly one Extend run
    assert figures.notes["sigkill"] >= 1 and figures.notes["sigterm"] == 1
    assert (figures.lost, figures.finished, figures.duplicate_runs) == (0, 40, 0), figures


def test_redis_restart_with_the_append_only_file_loses_nothing(emulator: EmulatorProcess, tmp_path: Path) -> None:
    figures = redis_restart(emulator, 15, tmp_path, appendonly=True)
    assert (figures.lost, figures.finished, figures.duplicate_runs) == (0, 15, 0), figures


def test_redis_restart_without_persistence_recovers_every_job_whose_run_exists(
    emulator: EmulatorProcess, tmp_path: Path
) -> None:
    # Given 10 jobs whose Redis restarts without persistence mid-run (records, queue and results gone)
    figures = redis_restart(emulator, 10, tmp_path, appendonly=False)
    # Then every job whose run exists on Extend has its result again under its own id, no run was made twice,
    # and only jobs that never had a run are missing
    assert figures.duplicate_runs == 0, figures
    assert figures.notes["recovered"] == figures.notes["runs on Extend"] == 10 - figures.notes["not recoverable"]
    assert figures.lost == figures.notes["not recoverable"], figures


def test_api_storm_ends_with_every_job_done_and_the_limit_kept(emulator: EmulatorProcess, tmp_path: Path) -> None:
    # Given the benchmark's storm (30 % 5xx/408, 10 % 429 with Retry-After, 5 % dropped connections), less latency
    faults = {**STORM_FAULTS, "latency_s": [0.0, 0.3]}
    figures = storm(emulator, 20, tmp_path, rps=20, faults=faults, timeout_s=120)
    # Then every job finished in time, with one run each, and no second ever held more than the limit
    assert (figures.lost, figures.finished, figures.duplicate_runs) == (0, 20, 0), figures
    assert figures.notes["arrivals over the limit"] == figures.above_limit == 0, figures
