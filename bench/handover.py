"""Benchmark: how long a worker crash holds up the jobs it held, against the same jobs undisturbed.

    .venv/bin/python bench/handover.py [--jobs 200] [--kills 2] [--workers 2] [--min-s 1] [--max-s 3] [--wait-s 400]

Jobs of 1-3 s runs on the emulator go through a pool of workers on the default leases (claim lease 120 s, step
lease 10 s); in the disturbed run one worker (main process and pool, as a crash) is SIGKILLed at equal parts of the
undisturbed run's time after the submission (two kills: at a third and two thirds of it), and a new one started, as
a supervisor does. The jobs in hand at a kill are those in flight at that moment (a superset of the killed worker's:
its steps, its messages and, when it was the sweeper, the runs its list sweeps watched). For them, and for every job,
it prints the extra seconds to result, p50/p99/max: each job's time from enqueue to result, less its run's own time
on Extend, less the median of that same overhead in the undisturbed run. It also prints every job finished and the
Extend runs per job (exactly 1 each). `crash_scenario` is what another bench imports.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Pool, chaos_profile, redis_database, runs_per_job, wait_results  # noqa: E402
from extendq.worker.store import open_store  # noqa: E402
from tests.support.emulator import EmulatorProcess  # noqa: E402

# The leases under test are the defaults; the pool's other settings are those of the chaos benches.
_SETTINGS = {"EXTENDQ_CLAIM_LEASE_S": "120", "EXTENDQ_STEP_LEASE_S": "10"}


@dataclass
class Run:
    """One run of the scenario: what finished, the runs per job, each job's overhead, and the jobs in hand at kills."""

    name: str
    jobs: int
    finished: int = 0
    seconds: float = 0.0
    runs: Counter[str] = field(default_factory=Counter)
    overhead_s: dict[str, float] = field(default_factory=dict)  # enqueue to result, less the run's own time
    held: set[str] = field(default_factory=set)
    kills: int = 0

    @property
    def runs_exactly_one(self) -> bool:
        return len(self.runs) == self.jobs and set(self.runs.values()) == {1}


def crash_scenario(
    emulator: EmulatorProcess,
    jobs: int,
    logs: Path,
    *,
    kills: int = 2,
    workers: int = 2,
    duration: tuple[float, float] = (1.0, 3.0),
    wait_s: float = 400.0,
    settings: dict[str, str] | None = None,
) -> tuple[Run, Run]:
    """The same jobs undisturbed, then with `kills` SIGKILLs of a worker (each restarted); (undisturbed, crashed)."""
    env = {**_SETTINGS, **(settings or {})}
    common: dict[str, Any] = {"workers": workers, "duration": duration, "wait_s": wait_s, "env": env}
    calm = _run("undisturbed", emulator, jobs, logs / "undisturbed", kill_at_s=[], **common)
    # The kills split the undisturbed run's time in equal parts (each after the previous worker's replacement is up).
    kill_at_s = [calm.seconds * (index + 1) / (kills + 1) for index in range(kills)]
    hurt = _run("worker kills", emulator, jobs, logs / "kills", kill_at_s=kill_at_s, **common)
    return calm, hurt


def extra_s(calm: Run, hurt: Run) -> list[float]:
    """For each job in hand at a kill, the seconds its result took beyond the undisturbed run's median overhead."""
    base = statistics.median(calm.overhead_s.values()) if calm.overhead_s else 0.0
    return sorted(hurt.overhead_s[job] - base for job in hurt.held if job in hurt.overhead_s)


def report(calm: Run, hurt: Run) -> list[str]:
    """The figures as printed lines."""
    lines = [f"{'run':<14}{'jobs':>6}{'finished':>9}{'runs/job':>10}{'seconds':>9}{'kills':>7}{'in hand':>9}"]
    for run in (calm, hurt):
        per_job = "1 each" if run.runs_exactly_one else _spread(run.runs, run.jobs)
        row = f"{run.name:<14}{run.jobs:>6}{run.finished:>9}{per_job:>10}{run.seconds:>9.1f}{run.kills:>7}"
        lines.append(f"{row}{len(run.held):>9}")
    extra = extra_s(calm, hurt)
    if extra:
        p50, p99, top = _pct(extra, 50), _pct(extra, 99), extra[-1]
        lines.append(f"extra seconds to result of jobs in hand at a kill: p50 {p50:.1f}  p99 {p99:.1f}  max {top:.1f}")
    else:
        lines.append("extra seconds to result of jobs in hand at a kill: no job was in hand at a kill")
    base = statistics.median(calm.overhead_s.values()) if calm.overhead_s else 0.0
    every_extra = sorted(late - base for late in hurt.overhead_s.values())
    if every_extra:
        p50, p99, top = _pct(every_extra, 50), _pct(every_extra, 99), every_extra[-1]
        lines.append(f"extra seconds to result of every job:              p50 {p50:.1f}  p99 {p99:.1f}  max {top:.1f}")
    slowest = sorted((hurt.overhead_s[job] - base, job) for job in hurt.held if job in hurt.overhead_s)[-3:]
    lines.append("slowest in hand: " + "  ".join(f"{job} +{late:.1f}s" for late, job in reversed(slowest)))
    every = hurt.finished == hurt.jobs and calm.finished == calm.jobs
    lines.append(f"{'PASS' if every else 'FAIL'}  every job finished")
    lines.append(f"{'PASS' if calm.runs_exactly_one and hurt.runs_exactly_one else 'FAIL'}  exactly one run per job")
    lines.append(f"{'PASS' if every_extra and every_extra[-1] < 15 else 'FAIL'}  longest extra delay under 15 s")
    return lines


def _run(
    name: str,
    emulator: EmulatorProcess,
    jobs: int,
    logs: Path,
    *,
    kill_at_s: list[float],
    workers: int,
    duration: tuple[float, float],
    wait_s: float,
    env: dict[str, str],
) -> Run:
    emulator.set_profile(chaos_profile(duration))
    emulator.reset()
    run = Run(name, jobs)
    with redis_database() as url:
        pool = Pool(url, emulator.url, logs, **env)
        try:
            pool.start(workers)
            started = time.monotonic()
            job_ids = pool.submit(jobs, f"handover-{name.replace(' ', '-')}")
            for at_s in kill_at_s:
                time.sleep(max(0.0, started + at_s - time.monotonic()))
                _kill_one(pool, job_ids, run)
            results = wait_results(url, job_ids, wait_s)
            run.seconds = time.monotonic() - started
            run.finished = sum(1 for meta in results.values() if meta.get("status") == "SUCCESS")
            run.runs = runs_per_job(emulator, job_ids)
            run.overhead_s = _overheads(pool, emulator, job_ids)
        finally:
            pool.stop()
    return run


def _kill_one(pool: Pool, job_ids: list[str], run: Run) -> None:
    """SIGKILL the oldest worker (noting the jobs in hand), and start another as a supervisor does."""
    run.held |= _in_hand(pool, job_ids)
    victim = pool.workers.pop(0)
    victim.kill()
    run.kills += 1
    pool.start(1)


def _in_hand(pool: Pool, job_ids: list[str]) -> set[str]:
    """The jobs in flight: any may be in the killed worker's hands (its steps, its messages, or its list sweeps,
    which notice runs ending while checks wait as safety nets)."""
    return set(open_store(pool.settings).unfinished(job_ids))


def _overheads(pool: Pool, emulator: EmulatorProcess, job_ids: list[str]) -> dict[str, float]:
    """Per finished job: enqueue to finish, less its run's own time on Extend (created to last update)."""
    store = open_store(pool.settings)
    own = {str(r["metadata"].get("extendq:job_id", "")): _run_seconds(r) for r in emulator.runs()}
    found: dict[str, float] = {}
    for job_id in job_ids:
        record = store.load(job_id)
        if record is not None and record.finished_at is not None and job_id in own:
            found[job_id] = record.finished_at - record.enqueued_at - own[job_id]
    return found


def _run_seconds(run: dict[str, Any]) -> float:
    return (_when(run["updatedAt"]) - _when(run["createdAt"])) if run.get("updatedAt") else 0.0


def _when(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _pct(values: list[float], pct: float) -> float:
    return values[min(len(values) - 1, round(pct / 100 * (len(values) - 1)))]


def _spread(runs: Counter[str], jobs: int) -> str:
    none = jobs - len(runs)
    more = sum(1 for count in runs.values() if count > 1)
    return f"{none}x0,{more}x2+"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--kills", type=int, default=2, help="SIGKILLs of a worker during the disturbed run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--min-s", type=float, default=1.0, help="shortest run on Extend")
    parser.add_argument("--max-s", type=float, default=3.0, help="longest run on Extend")
    parser.add_argument("--wait-s", type=float, default=400.0, help="longest wait for each run's results")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # leave through the `finally` blocks
    logs = Path(tempfile.mkdtemp(prefix="extendq-handover-"))
    with EmulatorProcess(profile=chaos_profile((args.min_s, args.max_s))) as emulator:
        calm, hurt = crash_scenario(
            emulator,
            args.jobs,
            logs,
            kills=args.kills,
            workers=args.workers,
            duration=(args.min_s, args.max_s),
            wait_s=args.wait_s,
        )
    for line in report(calm, hurt):
        print(line, flush=True)
    print(f"worker logs: {logs}")


if __name__ == "__main__":
    main()
