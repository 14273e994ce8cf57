"""Benchmark: what extendq does on its worst day, as figures (the chaos tests run the same at a smaller size).

    .venv/bin/python bench/chaos.py [--only crashes,redis,storm,late,batch-outage,slow-steps,failover] [--jobs 500]
        [--storm-jobs 1000] [--late-jobs 300] [--late-commit-s 5] [--batch-files 2000] [--outage-s 150]
        [--slow-jobs 300] [--slow-s 4] [--failover-jobs 1000] [--wait-s 600]

- crashes: jobs with 1-10 s runs while a worker is SIGKILLed (whole process group) every few seconds and
  restarted, and another gets SIGTERM mid-run; against the same jobs undisturbed.
- redis: a private redis-server with the append-only file on is restarted mid-run; then the same without
  persistence, where the data (queue, job records, results) is gone and only what Extend holds remains.
- storm: the emulator answers 30 % 5xx/408, 10 % 429 with Retry-After, 0-2 s latency and 5 % dropped
  connections; the pool is held to the emulator's rate limit.
- late: 30 % of the creates answer 504 while Extend commits their run `--late-commit-s` later; the landing window
  is set above that.
- batch-outage: `--batch-files` files through `submit_many` while the batch endpoint answers 503 for `--outage-s`
  seconds from the hand-over, on the workers' default lease, landing window and request timeout.
- slow-steps: 30 % of the creates and fetches answer `--slow-s` late, longer than the job lock (2 s, set with
  EXTENDQ_JOB_LOCK_S) and the claim lease (3 s), so a slow step's job is taken up again while it waits.
- failover: `--failover-jobs` jobs of 2-5 s runs on a primary, a replica and three Sentinels; the primary is SIGKILLed
  under load; then again with the replica lagging so that writes are lost and recovery adopts their runs
  (bench/chaos_failover.py): also prints the runs adopted, and seconds from the kill to the new primary and to the
  pool working again.
Each prints jobs finished and lost, duplicate runs (Extend runs per job beyond the first), requests the emulator
refused for its own rate limit (above limit; "-" when it had none), API calls per job and the time it took, then a
PASS/FAIL line per promise. The fault scenarios (bench/chaos_faults.py) also check that each job's terminal result
was published exactly once. Every wait is bounded: jobs not finished in time are counted lost.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.chaos_failover import failover, failover_lagging  # noqa: E402
from bench.chaos_faults import batch_outage, late, slow_steps  # noqa: E402
from bench.common import (  # noqa: E402
    HEADER,
    Figures,
    Pool,
    chaos_profile,
    job_seconds,
    judge,
    measure,
    over_limit,
    private_redis,
    runs_per_job,
    wait_results,
)
from tests.support.emulator import EmulatorProcess  # noqa: E402

SCENARIOS = ("crashes", "redis", "storm", "late", "batch-outage", "slow-steps", "failover")

STORM_FAULTS = {
    "error_rate": 0.3,
    "rate_limited_rate": 0.1,
    "retry_after_s": 1,
    "latency_s": [0.0, 2.0],
    "drop_rate": 0.05,
}


def crashes(
    emulator: EmulatorProcess, jobs: int, logs: Path, disturb: bool, duration: tuple[float, float] = (1.0, 10.0)
) -> Figures:
    """Jobs of 1-10 s runs on two workers; when `disturb`, SIGKILL one every second (and SIGTERM one) until 90 % are
    done."""
    emulator.set_profile(chaos_profile(duration))
    emulator.reset()
    with private_redis(appendonly=False) as server:
        pool = Pool(server.url, emulator.url, logs)
        pool.start(2)
        started, prefix = time.monotonic(), f"crash-{disturb}"
        job_ids = pool.submit(jobs, prefix)
        notes = {"sigkill": 0, "sigterm": 0}
        if disturb:
            _disturb(pool, notes, until=lambda: len(wait_results(server.url, job_ids, 0)) >= jobs * 0.9)
        figures = measure(
            "worker crashes" if disturb else "undisturbed",
            emulator,
            server.url,
            job_ids,
            started,
            timeout_s=300,
        )
        figures.notes.update(notes)
        pool.stop()
    return judge(figures)


def _disturb(pool: Pool, notes: dict[str, int], until: Callable[[], bool]) -> None:
    """Kill a worker (main process and pool) every second and start a new one; the second time, a warm SIGTERM
    (the worker finishes its tasks in hand while the disturbances go on). The first two rounds always happen: on a
    loaded machine a worker takes seconds to start, and the jobs could otherwise be done before the SIGTERM."""
    stopping = []
    for round_ in range(120):
        time.sleep(1)
        if round_ >= 2 and until():
            break
        victim = pool.workers.pop(0)
        assert victim.proc is not None
        if round_ == 1:
            victim.proc.send_signal(signal.SIGTERM)  # a warm shutdown in the middle of runs
            stopping.append(victim)
            notes["sigterm"] += 1
        else:
            victim.kill()
            notes["sigkill"] += 1
        pool.start(1)
    for victim in stopping:
        victim.stop(timeout_s=30)


def redis_restart(emulator: EmulatorProcess, jobs: int, logs: Path, appendonly: bool) -> Figures:
    """Jobs of 2-6 s runs; the private Redis is restarted once mid-run (with or without the AOF).

    Without the AOF the workers notice that the restart lost the data and adopt the runs Extend holds: the notes
    count jobs whose results were published again under their ids, and jobs that had no run (not recoverable).
    """
    emulator.set_profile(chaos_profile((2.0, 6.0)))
    emulator.reset()
    with private_redis(appendonly=appendonly) as server:
        pool = Pool(server.url, emulator.url, logs, EXTENDQ_SWEEP="off")
        pool.start(1)
        started, prefix = time.monotonic(), f"restart-{appendonly}"
        job_ids = pool.submit(jobs, prefix)
        time.sleep(2.0)
        server.restart()
        revived = _supervise(pool, for_s=10.0)
        if not appendonly:  # only jobs with a run can come back: wait for those, not for the rest
            time.sleep(1.0)
            wait_results(server.url, [j for j in job_ids if j in _jobs_with_runs(emulator, prefix)], timeout_s=60)
        name = f"redis restart {'(AOF)' if appendonly else '(no AOF)'}"
        figures = measure(name, emulator, server.url, job_ids, started, timeout_s=60 if appendonly else 0)
        figures.notes["runs on Extend"] = sum(runs_per_job(emulator, job_ids).values())
        figures.notes["workers restarted"] = revived
        if not appendonly:
            with_runs = _jobs_with_runs(emulator, prefix)
            results = wait_results(server.url, job_ids, 0)
            figures.notes["recovered"] = sum(1 for j in with_runs if results.get(j, {}).get("status") == "SUCCESS")
            figures.notes["not recoverable"] = sum(1 for j in job_ids if j not in with_runs)
        pool.stop()
    return judge(figures) if appendonly else _judge_without_aof(figures)


def _supervise(pool: Pool, for_s: float) -> int:
    """Restart workers that exit while Redis comes back, as a supervisor would: with Celery 5.7 a worker may still
    end on the stale connection's acknowledgement after it reconnected (kombu's Redis transport raises
    AttributeError there). How many were restarted."""
    revived, deadline = 0, time.monotonic() + for_s
    while time.monotonic() < deadline:
        revived += pool.revive()
        time.sleep(0.5)
    return revived


def _judge_without_aof(figures: Figures) -> Figures:
    """Without persistence, jobs that had no run are lost by design: every other job must come back, with one run."""
    missing = figures.notes["not recoverable"]
    figures.targets[f"{figures.duplicate_runs} duplicate runs (target 0)"] = figures.duplicate_runs == 0
    figures.targets[f"{figures.lost} jobs lost (target: the {missing} that had no run)"] = figures.lost == missing
    return figures


def _jobs_with_runs(emulator: EmulatorProcess, prefix: str) -> set[str]:
    """Job ids carried by the runs on Extend whose job key starts with `prefix`."""
    runs = [run["metadata"] for run in emulator.runs()]
    return {str(m.get("extendq:job_id")) for m in runs if str(m.get("extendq:job_key", "")).startswith(prefix)}


def storm(
    emulator: EmulatorProcess,
    jobs: int,
    logs: Path,
    rps: int = 20,
    faults: dict[str, Any] | None = None,
    timeout_s: float = 600,
) -> Figures:
    """Jobs through an Extend answering with faults; the pool is held to the emulator's rate limit.

    Jobs not finished within `timeout_s` are counted lost; the worker logs are in `logs` (named in the notes).
    """
    limit = {"requests_per_second": rps}
    emulator.set_profile(chaos_profile((1.0, 3.0), faults=faults or STORM_FAULTS, rate_limit=limit))
    emulator.reset()
    with private_redis(appendonly=False) as server:
        pool = Pool(
            server.url,
            emulator.url,
            logs,
            EXTENDQ_RATE_LIMIT_REQUESTS_PER_SECOND=str(rps),
            EXTENDQ_RETRY_BUDGET="30",
            EXTENDQ_RETRY_BACKOFF_MAX_S="10",
        )
        pool.start(2, concurrency=8)  # requests take up to 2 s each: more slots keep the limit busy
        started, submitted, prefix = time.monotonic(), time.time(), "storm"
        job_ids = pool.submit(jobs, prefix)
        figures = measure("API storm", emulator, server.url, job_ids, started, timeout_s=timeout_s, rps=rps)
        log = emulator.requests()
        figures.notes.update(
            {
                "arrivals over the limit": over_limit([e["at"] for e in log], rps),
                "429s": sum(1 for e in log if e["status"] == 429),
                "job s p50/p90/max": job_seconds(wait_results(server.url, job_ids, 0), since=submitted),
                "worker logs": str(logs),
            }
        )
        pool.stop()
    return judge(figures)


def run(name: str, emulator: EmulatorProcess, args: argparse.Namespace, logs: Path) -> list[Figures]:
    """The figures of one scenario (two rows for crashes, redis and failover)."""
    if name == "crashes":
        return [crashes(emulator, args.jobs, logs, disturb=False), crashes(emulator, args.jobs, logs, True)]
    if name == "redis":
        return [
            redis_restart(emulator, args.jobs // 5, logs, True),
            redis_restart(emulator, args.jobs // 5, logs, False),
        ]
    if name == "storm":
        return [storm(emulator, args.storm_jobs, logs)]
    if name == "late":
        return [late(emulator, args.late_jobs, logs, late_s=args.late_commit_s, timeout_s=args.wait_s)]
    if name == "batch-outage":
        bound = args.outage_s + args.wait_s
        return [batch_outage(emulator, args.batch_files, logs, outage_s=args.outage_s, timeout_s=bound)]
    if name == "failover":
        return [
            failover(emulator, args.failover_jobs, logs, timeout_s=args.wait_s),
            failover_lagging(emulator, args.failover_jobs, logs, timeout_s=args.wait_s),
        ]
    return [slow_steps(emulator, args.slow_jobs, logs, slow_s=args.slow_s, timeout_s=args.wait_s)]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(SCENARIOS), help=f"comma-separated, of {', '.join(SCENARIOS)}")
    parser.add_argument("--jobs", type=int, default=500, help="crashes (and a fifth of it: redis)")
    parser.add_argument("--storm-jobs", type=int, default=1000)
    parser.add_argument("--late-jobs", type=int, default=300)
    parser.add_argument("--late-commit-s", type=float, default=5.0)
    parser.add_argument("--batch-files", type=int, default=2000)
    parser.add_argument("--outage-s", type=float, default=150.0)
    parser.add_argument("--slow-jobs", type=int, default=300)
    parser.add_argument("--slow-s", type=float, default=4.0, help="below the pool's request timeout (5 s)")
    parser.add_argument("--failover-jobs", type=int, default=1000)
    parser.add_argument(
        "--wait-s", type=float, default=600.0, help="late, slow-steps: longest wait for the results (batch: + outage)"
    )
    args = parser.parse_args()
    unknown = set(args.only.split(",")) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(sorted(unknown))}; choose from {', '.join(SCENARIOS)}")
    return args


def main() -> None:
    args = parse_args()
    # `timeout` and `kill` send SIGTERM: leave through the `finally` blocks, which stop the workers and the emulator.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    logs = Path(tempfile.mkdtemp(prefix="extendq-chaos-"))
    chosen = set(args.only.split(","))
    rows: list[Figures] = []
    print(HEADER, flush=True)
    with EmulatorProcess(profile=chaos_profile((1.0, 2.0))) as emulator:
        for name in (name for name in SCENARIOS if name in chosen):
            try:
                done = run(name, emulator, args, logs)
            except Exception as exc:  # a scenario that cannot go on is reported; the others still run
                print(f"scenario {name} stopped: {type(exc).__name__}: {exc}", flush=True)
                continue
            for row in done:  # each row as soon as it is measured: a run stopped later keeps what it printed
                print(row.line(), flush=True)
            rows += done
    for row in rows:
        for verdict in row.verdicts():
            print(verdict)
    if "redis" in chosen:
        print("without the AOF a restarted Redis has no queue, job records or results; the workers notice it and")
        print("adopt the runs on Extend by the job id in their metadata, so those jobs get their results again")
        print("(recovered); jobs that had no run yet lived only in Redis and are lost (not recoverable).")


if __name__ == "__main__":
    main()
