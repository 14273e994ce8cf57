"""The failover scenarios (bench/chaos.py --only failover): Redis Sentinel replaces a primary SIGKILLed under load.

Each runs on a primary, a replica and three Sentinels of its own (`redis-server --sentinel`, a primary that does
not answer for 1 s is down) and two workers, with jobs of 2-5 s runs:

- failover: the recommended setup (the primary refuses writes no replica acknowledged within 10 s; each create
  waits for its job's record to reach the replica). The primary is killed once a quarter of the runs exist.
- failover, lagging replica: the replica stops applying the primary's writes while a fifth of the jobs are
  submitted and their runs created, with the wait for a replica off, so those writes are lost with the primary;
  recovery must adopt their runs.

Each prints jobs finished and lost, duplicate runs, the runs adopted by recovery, and the seconds from the kill to
the Sentinels naming the new primary and to the pool working again (the first job finished after the kill).
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

import redis

from bench.common import Figures, Pool, chaos_profile, judge, runs_per_job
from extendq.config.redis_connection import redis_client
from extendq.worker.store import RedisJobStore, open_store
from tests.support.emulator import EmulatorProcess
from tests.support.failover import finished, replicated, wait_until
from tests.support.sentinel_redis import SentinelGroup

RECOMMENDED = ("--min-replicas-to-write", "1", "--min-replicas-max-lag", "10")
ADOPTED = "after a Redis data loss"  # worker/recover.py's line for each run it adopted


def failover(emulator: EmulatorProcess, jobs: int, logs: Path, *, timeout_s: float = 600) -> Figures:
    """`jobs` jobs; the primary SIGKILLed once a quarter of their runs exist."""
    emulator.set_profile(chaos_profile((2.0, 5.0)))
    emulator.reset()
    with SentinelGroup(logs / "failover-redis", primary_args=RECOMMENDED) as group:
        pool = Pool(group.url(0), emulator.url, logs / "failover")
        client = redis_client(pool.settings, decode_responses=True)
        try:
            pool.start(2, concurrency=4)
            started = time.monotonic()
            job_ids = pool.submit(jobs, "failover")
            assert replicated(client), "the jobs did not reach the replica"
            wait_until(lambda: _creates(emulator) >= jobs // 4, timeout_s=timeout_s, what="a quarter of the runs")
            notes = _kill(group, client, job_ids)
            figures = _measure("failover", emulator, client, job_ids, started, timeout_s, notes)
        finally:
            pool.stop()
            client.close()
    figures.notes["adopted by recovery"] = pool.log_count(ADOPTED)
    return judge(figures)


def failover_lagging(emulator: EmulatorProcess, jobs: int, logs: Path, *, timeout_s: float = 600) -> Figures:
    """Four fifths of `jobs` run and are noted everywhere; then the replica lags while the last fifth is submitted
    and their runs created (the wait for a replica off), and the primary is SIGKILLed: recovery adopts those runs."""
    emulator.set_profile(chaos_profile((2.0, 5.0)))
    emulator.reset()
    with SentinelGroup(logs / "lagging-redis") as group:
        pool = Pool(group.url(0), emulator.url, logs / "lagging", EXTENDQ_REDIS_WAIT_REPLICA_MS="0")
        client = redis_client(pool.settings, decode_responses=True)
        try:
            pool.start(2, concurrency=4)
            started = time.monotonic()
            before = pool.submit(jobs - jobs // 5, "before")
            store = open_store(pool.settings)
            wait_until(lambda: _all_noted(store, before), timeout_s=timeout_s, what="the first runs noted")
            assert replicated(client), "the first jobs did not reach the replica"
            group.hold_replica()
            lagged = pool.submit(jobs // 5, "lagged")
            wait_until(lambda: set(lagged) <= set(runs_per_job(emulator, lagged)), timeout_s=timeout_s, what="runs")
            notes = _kill(group, client, before + lagged)
            notes["submitted while lagging"] = len(lagged)
            figures = _measure("failover, lagging", emulator, client, before + lagged, started, timeout_s, notes)
        finally:
            pool.stop()
            client.close()
    figures.notes["adopted by recovery"] = pool.log_count(ADOPTED)
    figures.targets[f"the {len(lagged)} lagged jobs' runs adopted by recovery"] = figures.notes[
        "adopted by recovery"
    ] == len(lagged)
    return judge(figures)


def _kill(group: SentinelGroup, client: redis.Redis, job_ids: list[str]) -> dict[str, Any]:
    """SIGKILL the primary; what was in flight, and how long the Sentinels took to name the replica."""
    in_flight = len(job_ids) - len(finished(client, job_ids))
    killed = time.time()
    group.kill_primary()
    group.wait_promoted(group.replica, timeout_s=120)
    return {"in flight at kill": in_flight, "killed": killed, "s to promotion": round(time.time() - killed, 1)}


def _measure(
    name: str,
    emulator: EmulatorProcess,
    client: redis.Redis,
    job_ids: list[str],
    started: float,
    timeout_s: float,
    notes: dict[str, Any],
) -> Figures:
    """Wait (at most `timeout_s`) for every job's result on the new primary, then count them and the runs per job."""
    deadline = time.monotonic() + timeout_s
    while len(results := finished(client, job_ids)) < len(job_ids) and time.monotonic() < deadline:
        time.sleep(0.5)
    seconds = time.monotonic() - started
    killed = notes.pop("killed")
    after = [_done_at(meta) for meta in results.values() if _done_at(meta) > killed]
    notes["s to pool working"] = round(min(after) - killed, 1) if after else "-"
    per_job = runs_per_job(emulator, job_ids)
    return Figures(
        name=name,
        jobs=len(job_ids),
        finished=sum(1 for meta in results.values() if meta.get("status") == "SUCCESS"),
        lost=len(job_ids) - len(results),
        duplicate_runs=sum(count - 1 for count in per_job.values() if count > 1),
        api_calls_per_job=emulator.stats()["requests_total"] / max(len(job_ids), 1),
        seconds=seconds,
        notes=notes,
    )


def _creates(emulator: EmulatorProcess) -> int:
    return sum(emulator.stats()["requests"].get("POST /workflow_runs", {}).values())


def _all_noted(store: RedisJobStore, job_ids: list[str]) -> bool:
    """Whether every job's record names its run."""
    try:
        return all(record is not None and record.run_id for record in map(store.load, job_ids))
    except redis.RedisError:
        return False


def _done_at(meta: dict[str, Any]) -> float:
    """When Celery's result says the job was done (`date_done`, UTC)."""
    stamp = str(meta.get("date_done") or "")
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() if stamp else 0.0
