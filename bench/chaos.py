"""Benchmark: what extendq does on its worst day, as figures (the chaos tests run the same at a smaller size).

    .venv/bin/python bench/chaos.py [--jobs 500] [--storm-jobs 1000] [--only crashes,redis,storm]

- crashes: jobs with 1-10 s runs while a worker is SIGKILLed (whole process group) every few seconds and
  restarted, and another gets SIGTERM mid-run; against the same jobs undisturbed.
- redis: a private redis-server with the append-only file on is restarted mid-run; then the same without
  persistence, where the data (queue, job records, results) is gone and only what Extend holds remains.
- storm: the emulator answers 30 % 5xx/408, 10 % 429 with Retry-After, 0-2 s latency and 5 % dropped
  connections; the pool is held to the emulator's rate limit.
Each prints jobs finished and lost, Extend runs per job key, API calls per job and the time it took.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import API_KEY  # noqa: E402
from extendq.cli.redis_server import RedisServer  # noqa: E402
from extendq.config.settings import Settings  # noqa: E402
from extendq.tasks.celery import create_app  # noqa: E402
from extendq.tasks.producer import build_request, enqueue  # noqa: E402
from extendq.worker.store import open_store  # noqa: E402
from tests.support.emulator import EmulatorProcess  # noqa: E402
from tests.support.worker import WorkerProcess  # noqa: E402

WORKFLOW = "workflow_chaos"
STORM_FAULTS = {
    "error_rate": 0.3,
    "rate_limited_rate": 0.1,
    "retry_after_s": 1,
    "latency_s": [0.0, 2.0],
    "drop_rate": 0.05,
}


@dataclass
class Figures:
    """What one scenario measured."""

    name: str
    jobs: int
    finished: int = 0
    lost: int = 0
    duplicate_runs: int = 0
    api_calls_per_job: float = 0.0
    seconds: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        extra = "  ".join(f"{k}={v}" for k, v in self.notes.items())
        return (
            f"{self.name:<24}{self.jobs:>6}{self.finished:>9}{self.lost:>6}{self.duplicate_runs:>11}"
            f"{self.api_calls_per_job:>11.2f}{self.seconds:>9.1f}  {extra}"
        )


HEADER = f"{'scenario':<24}{'jobs':>6}{'finished':>9}{'lost':>6}{'dup. runs':>11}{'calls/job':>11}{'seconds':>9}"


def profile(duration: tuple[float, float], **extra: Any) -> dict[str, Any]:
    spec = {"name": "Chaos", "duration_s": list(duration), "outcomes": {"PROCESSED": 1}}
    return {"workflows": {WORKFLOW: spec}, "rate_limit": None, "seed": 11, **extra}


class Pool:
    """Worker processes on one Redis, each restartable, with a producer that records jobs before sending."""

    def __init__(self, redis_url: str, emulator_url: str, logs: Path, **settings: str) -> None:
        self.env = {
            "EXTENDQ_REDIS_URL": redis_url,
            "EXTENDQ_BASE_URL": emulator_url,
            "EXTEND_API_KEY": API_KEY,
            "EXTENDQ_CLAIM_LEASE_S": "10",
            "EXTENDQ_REQUEST_TIMEOUT_S": "5",
            "EXTENDQ_LANDING_WINDOW_S": "8",
            **settings,
        }
        self.settings = Settings.from_env(self.env)
        self.logs = logs
        self.workers: list[WorkerProcess] = []
        self.started = 0

    def start(self, count: int = 1, concurrency: int = 2) -> None:
        for _ in range(count):
            self.started += 1
            log = self.logs / f"worker-{self.started}.log"
            self.workers.append(WorkerProcess(self.env, log_path=log, concurrency=concurrency).start())

    def submit(self, count: int, prefix: str) -> list[str]:
        app, store = create_app(self.settings), open_store(self.settings)
        requests = [
            build_request(workflow=WORKFLOW, file={"text": f"Total: {i}.00"}, job_key=f"{prefix}-{i}")
            for i in range(count)
        ]
        return [enqueue(app, request, store=store, lease_s=10).id for request in requests]

    def stop(self) -> None:
        for worker in self.workers:
            worker.kill()
        self.workers.clear()


def wait_results(redis_url: str, job_ids: list[str], timeout_s: float) -> dict[str, dict[str, Any]]:
    """Terminal results by job id, polled from the result backend (robust to Redis restarts)."""
    done: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client = redis.Redis.from_url(redis_url)
            pending = [job_id for job_id in job_ids if job_id not in done]
            for job_id, raw in zip(pending, client.mget([f"celery-task-meta-{j}" for j in pending]), strict=True):
                meta = json.loads(raw) if raw else {}
                if meta.get("status") in {"SUCCESS", "FAILURE"}:
                    done[job_id] = meta
            client.close()
        except redis.RedisError:
            pass  # the server is restarting
        if len(done) == len(job_ids) or time.monotonic() >= deadline:
            return done
        time.sleep(0.5)


def runs_by_key(emulator: EmulatorProcess, prefix: str) -> Counter[str]:
    return Counter(
        key for run in emulator.runs() if str(key := run["metadata"].get("extendq:job_key", "")).startswith(prefix)
    )


def measure(
    name: str,
    emulator: EmulatorProcess,
    redis_url: str,
    job_ids: list[str],
    prefix: str,
    started: float,
    timeout_s: float,
) -> Figures:
    results = wait_results(redis_url, job_ids, timeout_s)
    per_key = runs_by_key(emulator, prefix)
    finished = sum(1 for meta in results.values() if meta.get("status") == "SUCCESS")
    return Figures(
        name=name,
        jobs=len(job_ids),
        finished=finished,
        lost=len(job_ids) - len(results),
        duplicate_runs=sum(count - 1 for count in per_key.values() if count > 1),
        api_calls_per_job=emulator.stats()["requests_total"] / max(len(job_ids), 1),
        seconds=time.monotonic() - started,
    )


@contextmanager
def private_redis(appendonly: bool) -> Iterator[RedisServer]:
    server = RedisServer(appendonly=appendonly).start()
    try:
        yield server
    finally:
        server.stop()


def crashes(
    emulator: EmulatorProcess, jobs: int, logs: Path, disturb: bool, duration: tuple[float, float] = (1.0, 10.0)
) -> Figures:
    """Jobs of 1-10 s runs on two workers; when `disturb`, SIGKILL one every second (and SIGTERM one) until 90 % are
    done."""
    emulator.set_profile(profile(duration))
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
            prefix,
            started,
            timeout_s=300,
        )
        figures.notes = notes
        pool.stop()
    return figures


def _disturb(pool: Pool, notes: dict[str, int], until: Callable[[], bool]) -> None:
    """Kill a worker (main process and pool) every second and start a new one; the second time, a warm SIGTERM
    (the worker finishes its tasks in hand while the disturbances go on)."""
    stopping = []
    for round_ in range(120):
        time.sleep(1)
        if until():
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
    emulator.set_profile(profile((2.0, 6.0)))
    emulator.reset()
    with private_redis(appendonly=appendonly) as server:
        pool = Pool(server.url, emulator.url, logs, EXTENDQ_SWEEP="off")
        pool.start(1)
        started, prefix = time.monotonic(), f"restart-{appendonly}"
        job_ids = pool.submit(jobs, prefix)
        time.sleep(2.0)
        server.restart()
        if not appendonly:  # only jobs with a run can come back: wait for those, not for the rest
            time.sleep(1.0)
            wait_results(server.url, [j for j in job_ids if j in _jobs_with_runs(emulator, prefix)], timeout_s=60)
        name = f"redis restart {'(AOF)' if appendonly else '(no AOF)'}"
        figures = measure(name, emulator, server.url, job_ids, prefix, started, timeout_s=60 if appendonly else 0)
        figures.notes = {"runs on Extend": sum(runs_by_key(emulator, prefix).values())}
        if not appendonly:
            with_runs = _jobs_with_runs(emulator, prefix)
            results = wait_results(server.url, job_ids, 0)
            figures.notes["recovered"] = sum(1 for j in with_runs if results.get(j, {}).get("status") == "SUCCESS")
            figures.notes["not recoverable"] = sum(1 for j in job_ids if j not in with_runs)
        pool.stop()
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
    emulator.set_profile(profile((1.0, 3.0), faults=faults or STORM_FAULTS, rate_limit=limit))
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
        figures = measure("API storm", emulator, server.url, job_ids, prefix, started, timeout_s=timeout_s)
        log = emulator.requests()
        figures.notes = {
            "over the limit": over_limit([e["at"] for e in log], rps),
            "429s": sum(1 for e in log if e["status"] == 429),
            "job s p50/p90/max": job_seconds(wait_results(server.url, job_ids, 0), since=submitted),
            "worker logs": str(logs),
        }
        pool.stop()
    return figures


def job_seconds(results: dict[str, dict[str, Any]], since: float) -> str:
    """Seconds from submission to each job's result, as the median, the 90th percentile and the longest."""
    done = sorted(datetime.fromisoformat(meta["date_done"]).timestamp() - since for meta in results.values())
    if not done:
        return "-"
    return "/".join(f"{done[min(int(len(done) * q), len(done) - 1)]:.0f}" for q in (0.5, 0.9, 1.0))


def over_limit(times: list[float], limit: int) -> int:
    """Requests that arrived while `limit` others had already arrived in the last second."""
    ordered, over, start = sorted(times), 0, 0
    for index, at in enumerate(ordered):
        while ordered[start] <= at - 1.0:
            start += 1
        over += index - start + 1 > limit
    return over


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--storm-jobs", type=int, default=1000)
    parser.add_argument("--only", default="crashes,redis,storm")
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="extendq-chaos-"))
    chosen = set(args.only.split(","))
    rows: list[Figures] = []
    with EmulatorProcess(profile=profile((1.0, 2.0))) as emulator:
        if "crashes" in chosen:
            rows += [crashes(emulator, args.jobs, logs, disturb=False), crashes(emulator, args.jobs, logs, True)]
        if "redis" in chosen:
            rows += [
                redis_restart(emulator, args.jobs // 5, logs, True),
                redis_restart(emulator, args.jobs // 5, logs, False),
            ]
        if "storm" in chosen:
            rows.append(storm(emulator, args.storm_jobs, logs))
    print(HEADER)
    for row in rows:
        print(row.line())
    print("without the AOF a restarted Redis has no queue, job records or results; the workers notice it and adopt")
    print("the runs on Extend by the job id in their metadata, so those jobs get their results again (recovered);")
    print("jobs that had no run yet lived only in Redis and are lost (not recoverable): enqueue them again.")


if __name__ == "__main__":
    main()
