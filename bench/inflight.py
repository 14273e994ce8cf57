"""Benchmark: what 1k, 10k and 100k jobs in flight cost a worker and Redis.

    .venv/bin/python bench/inflight.py [--sizes 1000,10000,100000] [--concurrency 2] [--settle 15]
                                       [--submit-timeout 300]

For each size: a fresh Redis database, the emulator (its default profile, plus a workflow whose runs last an
hour, so nothing finishes) and one worker (`--concurrency` slots). The jobs are queued, then submitted by the
worker; once every run exists and the queue is empty, the worker and Redis are left to settle (list sweeps
running, as they do by default above 20 jobs in flight), then measured:

- worker RSS, main process and pool children (`bench.common.rss_bytes`), at the end and the peak while
  submitting;
- Redis `used_memory` (INFO memory) above the empty database's (measured after 20 quick warm-up jobs, so what the
  worker sets up once is not counted per job), divided by the jobs: everything a job leaves
  in Redis (record, run index, progress result, events) with the broker's own keys; `used_memory` is the
  server's, so other clients of a shared Redis add noise: `EXTENDQ_REDIS_URL=redis://127.0.0.1:1/0` (nothing
  listening) makes `redis_database()` start a private server. The sum of `MEMORY USAGE` over the database's
  keys is printed too, as a cross-check that only this database counts;
- time to queue the jobs, and to submit them all (from the first message to the last run created).

A size whose submissions are not all taken within `--submit-timeout` seconds is cut short: the submissions
still queued are dropped and the jobs already in flight are measured, and the size counts as not reached.
Progress lines every 30 s show runs created, checks per second and the steps (checks) waiting in their queue.

Targets: total worker RSS the same within 10 % at the smallest and the largest size; Redis under 2 KB per job.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Stopwatch, emulator, redis_database, rss_bytes, worker_env  # noqa: E402
from extendq.config.settings import Settings  # noqa: E402
from extendq.tasks.celery import CHECKS_QUEUE, QUEUE, create_app  # noqa: E402
from extendq.tasks.producer import build_request, enqueue  # noqa: E402
from tests.support.worker import WorkerProcess  # noqa: E402

TEXT = "ACME Corp\nInvoice Number: INV-1\nDate: 2026-10-03\nTotal: $120.00\n"
HOUR_LONG = {"name": "Hour Long", "duration_s": [3600, 3600], "queue_s": [0.1, 0.5], "outcomes": {"PROCESSED": 1}}
QUICK = {"name": "Quick", "duration_s": [0.2, 0.2], "queue_s": [0.0, 0.0], "outcomes": {"PROCESSED": 1}}
WARM_UP_JOBS = 20
KB = 1024


def profile() -> dict[str, Any]:
    return {"base": "default", "workflows": {"workflow_hour": HOUR_LONG, "workflow_quick": QUICK}}


def measure(size: int, args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    """One size on a fresh database, emulator and worker."""
    with redis_database() as redis_url, emulator(profile()) as served:
        env = worker_env(redis_url, served.url)
        client = redis.Redis.from_url(redis_url)
        with WorkerProcess(env, log_path=logs / f"worker-{size}.log", concurrency=args.concurrency) as worker:
            assert worker.proc is not None
            warm_up(env)  # the worker's own connections, scripts and keys, before the jobs measured
            time.sleep(2)
            empty, empty_keys, empty_key_bytes = used_memory(client), client.dbsize(), keys_bytes(client)
            row = submit_all(size, env, client, served, worker.proc.pid, args.submit_timeout)
            time.sleep(args.settle)
            stats = served.stats()
            jobs = row["jobs"] = stats["runs_total"] - WARM_UP_JOBS
            row["rss"] = rss_bytes(worker.proc.pid)
            row["peak_rss"] = max(row["peak_rss"], row["rss"])
            row["redis_per_job"] = (used_memory(client) - empty) / jobs
            row["keys_per_job"] = (client.dbsize() - empty_keys) / jobs
            row["key_bytes_per_job"] = (keys_bytes(client) - empty_key_bytes) / jobs
            row["emulator_rss"] = rss_bytes(served.pid)
            row["checks_backlog"] = client.llen(CHECKS_QUEUE)
            row["requests"] = {route: sum(counts.values()) for route, counts in stats["requests"].items()}
    return row


def warm_up(env: dict[str, str]) -> None:
    """A few quick jobs through the worker, so what it sets up once (script cache, connections, streams) is
    in the empty database's figure, not spread over the jobs measured."""
    app = create_app(Settings.from_env(env))
    request = build_request(workflow="workflow_quick", file={"text": TEXT})
    results = [enqueue(app, request) for _ in range(WARM_UP_JOBS)]
    for result in results:
        result.get(timeout=60)


def submit_all(
    size: int, env: dict[str, str], client: redis.Redis, served: Any, pid: int, timeout_s: float
) -> dict[str, Any]:
    """Queue `size` jobs, then wait until the worker has created every run; the timings and the peak RSS.

    Submissions not taken within `timeout_s` are dropped from the queue, and the jobs already in flight are
    measured: the row says the size was not reached.
    """
    app = create_app(Settings.from_env(env))
    request = build_request(workflow="workflow_hour", file={"text": TEXT})
    clock = Stopwatch()
    for _ in range(size):
        enqueue(app, request)
    queued_s = clock.elapsed_s
    peak, progress = 0, Progress(size, served, client)
    while client.llen(QUEUE) > 0 and clock.elapsed_s < timeout_s:
        peak = max(peak, rss_bytes(pid))
        progress.maybe_print(clock.elapsed_s)
        time.sleep(0.5)
    stalled = client.llen(QUEUE) > 0
    if stalled:
        client.delete(QUEUE)  # this database's own submissions queue: the jobs not taken are dropped
        print(f"  {size}: not all submitted after {timeout_s:g} s; the rest are dropped", flush=True)
    else:
        while served.stats()["runs_total"] < size + WARM_UP_JOBS:
            time.sleep(1)
    return {"size": size, "queued_s": queued_s, "submitted_s": clock.elapsed_s, "peak_rss": peak, "stalled": stalled}


class Progress:
    """A line every 30 s: submissions taken, runs created, checks per second, the checks queue's backlog."""

    def __init__(self, size: int, served: Any, client: redis.Redis) -> None:
        self.size, self.served, self.client = size, served, client
        self.last_at, self.last_checks = 0.0, 0

    def maybe_print(self, elapsed_s: float) -> None:
        if elapsed_s - self.last_at < 30:
            return
        stats = self.served.stats()
        checks = sum(stats["requests"].get("GET /workflow_runs/{id}", {}).values())
        rate = (checks - self.last_checks) / (elapsed_s - self.last_at)
        print(
            f"  {self.size}: {elapsed_s:5.0f} s, {self.size - self.client.llen(QUEUE)} submissions taken, "
            f"{stats['runs_total']} runs created, {rate:.0f} checks/s, "
            f"{self.client.llen(CHECKS_QUEUE)} steps waiting",
            flush=True,
        )
        self.last_at, self.last_checks = elapsed_s, checks


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def keys_bytes(client: redis.Redis) -> int:
    """The sum of `MEMORY USAGE` over the database's keys (this database only, unlike `used_memory`)."""
    total = 0
    batch: list[bytes] = []
    for key in client.scan_iter(count=1000):
        batch.append(key)
        if len(batch) == 1000:
            total += _usage(client, batch)
            batch = []
    return total + _usage(client, batch)


def _usage(client: redis.Redis, keys: list[bytes]) -> int:
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key, samples=0)
    return sum(int(value or 0) for value in pipe.execute())


def report(rows: list[dict[str, Any]], args: argparse.Namespace) -> bool:
    print(
        f"jobs in flight (runs of 1 h), one worker of concurrency {args.concurrency}, measured {args.settle:g} s after"
    )
    print(
        f"{'jobs':>8}{'queue s':>9}{'submit s':>10}{'jobs/s':>8}{'worker RSS MB':>15}{'peak MB':>9}{'Redis B/job':>13}"
        f"{'keys B/job':>12}{'keys/job':>10}{'emulator MB':>13}"
    )
    for row in rows:
        rate = row["jobs"] / row["submitted_s"]
        print(
            f"{row['jobs']:>8}{row['queued_s']:>9.1f}{row['submitted_s']:>10.1f}{rate:>8.0f}{mb(row['rss']):>15.1f}"
            f"{mb(row['peak_rss']):>9.1f}{row['redis_per_job']:>13.0f}{row['key_bytes_per_job']:>12.0f}"
            f"{row['keys_per_job']:>10.2f}{mb(row['emulator_rss']):>13.0f}"
        )
    for row in rows:
        calls = ", ".join(f"{route} {count}" for route, count in sorted(row["requests"].items()))
        outcome = f"NOT reached: {row['jobs']} of {row['size']} submitted" if row["stalled"] else "reached"
        print(f"  {row['size']}: {outcome}; {row['checks_backlog']} steps waiting; API calls: {calls}")
    small, large = rows[0], rows[-1]
    growth = large["rss"] / small["rss"] - 1
    flat = bool(abs(growth) <= 0.10)
    worst = max(float(row["redis_per_job"]) for row in rows)
    lean = worst < 2 * KB
    reached = not any(bool(row["stalled"]) for row in rows)
    print(
        f"worker RSS {small['jobs']} -> {large['jobs']} jobs: {mb(small['rss']):.1f} -> {mb(large['rss']):.1f} MB "
        f"({100 * growth:+.1f} %; target within 10 %): {verdict(flat)}"
    )
    print(f"Redis per job: at most {worst:.0f} B (target < {2 * KB} B): {verdict(lean)}")
    print(f"every size put in flight within {args.submit_timeout:g} s: {verdict(reached)}")
    return flat and lean and reached


def mb(value: float) -> float:
    return value / KB / KB


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="1000,10000,100000", help="comma-separated jobs in flight (default 1000,10000,100000)"
    )
    parser.add_argument("--concurrency", type=int, default=2, help="worker pool slots (default 2)")
    parser.add_argument("--settle", type=float, default=15.0, help="seconds between the last submit and measuring")
    parser.add_argument(
        "--submit-timeout", type=float, default=300.0, help="seconds a size may take to be submitted (default 300)"
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: every process started here is stopped
    sizes = sorted(int(part) for part in args.sizes.split(","))
    logs = Path(tempfile.mkdtemp(prefix="extendq-bench-"))
    rows = []
    for size in sizes:
        print(f"{size} jobs ...", flush=True)
        rows.append(measure(size, args, logs))
    print(f"worker logs in {logs}")
    sys.exit(0 if report(rows, args) else 1)


if __name__ == "__main__":
    main()
