"""The chaos scenarios of Extend's own bad days (bench/chaos.py runs and prints them): late commits, a batch endpoint
outage, and answers slower than a job's lock.

Each runs on a private redis-server and workers of its own, with the emulator's requests-per-second limit and the
pool's shared limit set to the same number, and judges the promises: every job finished, each exactly once, no
duplicate run, no job lost, no request refused for the limit.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import (
    CHAOS_WORKFLOW,
    Figures,
    Pool,
    TerminalResults,
    chaos_profile,
    judge,
    measure,
    private_redis,
)
from extendq.tasks.bulk import submit_many
from extendq.tasks.celery import create_app
from tests.support.emulator import EmulatorProcess

BATCH_ROUTE = "POST /workflow_runs/batch"
SLOW_ROUTES = ("GET /workflow_runs/{id}", "POST /workflow_runs")
REQUEST_TIMEOUT_S = 5.0  # the pool's (bench.common.Pool)


def late(
    emulator: EmulatorProcess, jobs: int, logs: Path, *, late_s: float = 5.0, rps: int = 20, timeout_s: float = 600
) -> Figures:
    """Single creates, 30 % of which answer 504 while Extend commits their run `late_s` later.

    The landing window is 2 × `late_s` + 5 s: above the late commit (an honest setting) and the request timeout.
    """
    landing_s = 2 * late_s + REQUEST_TIMEOUT_S
    faults = {"late_commit_rate": 0.3, "late_commit_s": late_s}
    emulator.set_profile(chaos_profile((1.0, 3.0), faults=faults, rate_limit={"requests_per_second": rps}))
    emulator.reset()
    with private_redis(appendonly=False) as server, TerminalResults(server.url) as terminal:
        pool = Pool(
            server.url,
            emulator.url,
            logs / "late",
            EXTENDQ_RATE_LIMIT_REQUESTS_PER_SECOND=str(rps),
            EXTENDQ_LANDING_WINDOW_S=f"{landing_s:g}",
        )
        try:
            pool.start(2, concurrency=4)
            started = time.monotonic()
            job_ids = pool.submit(jobs, "late")
            figures = measure("late commits", emulator, server.url, job_ids, started, timeout_s, rps=rps)
        finally:
            pool.stop()
    stats = emulator.stats()
    figures.notes.update(
        {
            "late commits": stats.get("faults", {}).get("late", 0),
            "runs adopted": pool.log_count(" adopts run "),
            "list requests": sum(stats["requests"].get("GET /workflow_runs", {}).values()),
            "landing window s": f"{landing_s:g}",
            "worker logs": str(pool.logs),
        }
    )
    return judge(figures, terminal, job_ids)


def batch_outage(
    emulator: EmulatorProcess,
    files: int,
    logs: Path,
    *,
    outage_s: float = 150.0,
    rps: int = 50,
    timeout_s: float | None = None,
) -> Figures:
    """`files` files through `submit_many` while the batch endpoint answers 503 for `outage_s`, from just before the
    hand-over; then every result is awaited (at most `timeout_s`, by default the outage and 10 minutes).

    The workers run with extendq's defaults for what decides when a member of a batch that could not be posted
    goes on alone: the claim lease, the landing window (both 120 s) and the request timeout (30 s).
    """
    profile = chaos_profile((1.0, 3.0), rate_limit={"requests_per_second": rps}, batch_runs_per_second=200)
    emulator.set_profile(profile)
    emulator.reset()
    with private_redis(appendonly=False) as server, TerminalResults(server.url) as terminal:
        pool = Pool(
            server.url,
            emulator.url,
            logs / "batch-outage",
            EXTENDQ_RATE_LIMIT_REQUESTS_PER_SECOND=str(rps),
            EXTENDQ_CLAIM_LEASE_S="120",
            EXTENDQ_LANDING_WINDOW_S="120",
            EXTENDQ_REQUEST_TIMEOUT_S="30",
        )
        try:
            pool.start(2, concurrency=4)
            app = create_app(pool.settings)
            documents = [{"text": f"Invoice #: {i}\nTotal: {i}.00", "name": f"doc-{i}.txt"} for i in range(files)]
            started = time.monotonic()
            emulator.start_outage(BATCH_ROUTE, outage_s)
            job_ids = [job.id for job in submit_many(workflow=CHAOS_WORKFLOW, files=documents, app=app)]
            bound = outage_s + 600 if timeout_s is None else timeout_s
            figures = measure("batch outage", emulator, server.url, job_ids, started, bound, rps=rps)
        finally:
            pool.stop()
    figures.notes.update(_batch_notes(emulator, pool))
    return judge(figures, terminal, job_ids)


def _batch_notes(emulator: EmulatorProcess, pool: Pool) -> dict[str, Any]:
    """How the files reached Extend: batch posts by answer, single creates, runs made in a batch or alone."""
    requests = emulator.stats()["requests"]
    in_batch = Counter(bool(run.get("batchId")) for run in emulator.runs())
    return {
        "batch posts": dict(requests.get(BATCH_ROUTE, {})),
        "single creates": sum(requests.get("POST /workflow_runs", {}).values()),
        "runs in a batch/alone": f"{in_batch[True]}/{in_batch[False]}",
        "members gone alone": pool.log_count("it goes on alone"),
        "worker logs": str(pool.logs),
    }


def slow_steps(
    emulator: EmulatorProcess,
    jobs: int,
    logs: Path,
    *,
    slow_s: float = 4.0,
    slow_rate: float = 0.3,
    rps: int = 20,
    timeout_s: float = 600,
) -> Figures:
    """Single creates whose creates and fetches answer `slow_s` late at `slow_rate`, on a pool whose job lock (2 s)
    and claim lease (3 s) are shorter than such an answer and whose request timeout (5 s) is longer: a slow step's
    check comes due again and is taken by another delivery while the first still waits for its answer.
    """
    assert slow_s < REQUEST_TIMEOUT_S, "a slow answer must come back, later than the lock, within the timeout"
    faults = {"slow_routes": {route: slow_s for route in SLOW_ROUTES}, "slow_rate": slow_rate}
    emulator.set_profile(chaos_profile((1.0, 3.0), faults=faults, rate_limit={"requests_per_second": rps}))
    emulator.reset()
    with private_redis(appendonly=False) as server, TerminalResults(server.url) as terminal:
        pool = Pool(
            server.url,
            emulator.url,
            logs / "slow-steps",
            EXTENDQ_RATE_LIMIT_REQUESTS_PER_SECOND=str(rps),
            EXTENDQ_JOB_LOCK_S="2",
            EXTENDQ_CLAIM_LEASE_S="3",
        )
        try:
            pool.start(2, concurrency=8)  # slow answers hold their slot: more slots keep the limit busy
            started = time.monotonic()
            job_ids = pool.submit(jobs, "slow")
            figures = measure("slow steps", emulator, server.url, job_ids, started, timeout_s, rps=rps)
        finally:
            pool.stop()
    figures.notes.update(
        {
            "slow answers": emulator.stats().get("faults", {}).get("slow", 0),
            "steps that outlived their lock": pool.log_count("a step outlived its lock"),
            "steps stopped at the time limit": pool.log_count("stopped at its time limit"),
            "worker logs": str(pool.logs),
        }
    )
    return judge(figures, terminal, job_ids)
