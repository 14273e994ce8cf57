"""Benchmark: jobs per second and worker CPU per job, against the blocking baseline and a bare no-op Celery task.

    .venv/bin/python bench/throughput.py [--jobs 1000] [--baseline-jobs 16] [--noop-messages 5000]
                                         [--concurrency 2] [--duration 2 3]

No rate limits (the emulator's and the workers'), runs of `--duration` seconds, and the same worker concurrency
for the three workers, one after the other on one Redis database:

- extendq: `--jobs` jobs queued at once, timed until the last result is in;
- the blocking baseline (`bench/baseline.py`, the SDK's `create_and_poll` in a task) on `--baseline-jobs`: its
  rate does not depend on the count, each slot holding one run at a time;
- `bench/noop.py`, a task that returns None, on `--noop-messages` messages: Celery's own cost per message on
  the same broker.

CPU is user + system time of the worker's main process and pool children (`bench.common.cpu_seconds`) over the
measured batch, divided by its jobs or messages; a short warm-up batch runs first in each worker, unmeasured.

Targets: extendq's jobs/s at least 50x the baseline's; extendq's CPU per job at most 4x a no-op message's.
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
from celery import Celery

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Stopwatch, cpu_seconds, emulator, redis_database, worker_env  # noqa: E402
from bench.noop import QUEUE as NOOP_QUEUE  # noqa: E402
from extendq.config.settings import Settings  # noqa: E402
from extendq.tasks.celery import create_app  # noqa: E402
from extendq.tasks.producer import build_request, enqueue  # noqa: E402
from tests.support.worker import WorkerProcess  # noqa: E402

TEXT = "ACME Corp\nInvoice Number: INV-1\nDate: 2026-10-03\nTotal: $120.00\n"
WARM_UP_JOBS, WARM_UP_MESSAGES = 10, 200


def profile(duration: tuple[float, float]) -> dict[str, Any]:
    spec = {"name": "Bench", "duration_s": list(duration), "outcomes": {"PROCESSED": 1}}
    return {"workflows": {"workflow_bench": spec}, "rate_limit": None, "seed": 1}


def worker(env: dict[str, str], log: Path, concurrency: int, app_module: str = "config") -> WorkerProcess:
    process = WorkerProcess(env, log_path=log, concurrency=concurrency)
    process.args[process.args.index("config")] = app_module
    return process


def run_extendq(env: dict[str, str], args: argparse.Namespace, logs: Path) -> dict[str, float]:
    app = create_app(Settings.from_env(env))
    request = build_request(workflow="workflow_bench", file={"text": TEXT})

    def batch(count: int) -> None:
        results = [enqueue(app, request) for _ in range(count)]
        statuses = {result.get(timeout=600)["status"] for result in results}
        assert statuses == {"PROCESSED"}, statuses

    return timed(worker(env, logs / "extendq.log", args.concurrency), batch, WARM_UP_JOBS, args.jobs)


def run_baseline(env: dict[str, str], args: argparse.Namespace, logs: Path) -> dict[str, float]:
    app = Celery(broker=env["EXTENDQ_REDIS_URL"], backend=env["EXTENDQ_REDIS_URL"])

    def batch(count: int) -> None:
        results = [
            app.send_task("baseline.create_and_poll", args=["workflow_bench", TEXT], queue="baseline")
            for _ in range(count)
        ]
        statuses = {result.get(timeout=600)["status"] for result in results}
        assert statuses == {"PROCESSED"}, statuses

    process = worker(env, logs / "baseline.log", args.concurrency, "bench.baseline")
    return timed(process, batch, 0, args.baseline_jobs)


def run_noop(env: dict[str, str], args: argparse.Namespace, logs: Path) -> dict[str, float]:
    app = Celery(broker=env["EXTENDQ_REDIS_URL"])
    client = redis.Redis.from_url(env["EXTENDQ_REDIS_URL"])

    def batch(count: int) -> None:
        with app.producer_or_acquire() as producer:
            for _ in range(count):
                app.send_task("noop.noop", queue=NOOP_QUEUE, producer=producer)
        # Done when the queue is empty and nothing is left unacknowledged (kombu's `unacked` hash).
        while client.llen(NOOP_QUEUE) or client.hlen("unacked"):
            time.sleep(0.02)

    process = worker(env, logs / "noop.log", args.concurrency, "bench.noop")
    return timed(process, batch, WARM_UP_MESSAGES, args.noop_messages)


def timed(process: WorkerProcess, batch: Any, warm_up: int, count: int) -> dict[str, float]:
    """Run an unmeasured warm-up batch, then the measured one: wall time and worker CPU."""
    with process:
        assert process.proc is not None
        if warm_up:
            batch(warm_up)
        cpu_before = cpu_seconds(process.proc.pid)
        clock = Stopwatch()
        batch(count)
        wall = clock.elapsed_s
        cpu = cpu_seconds(process.proc.pid) - cpu_before
    return {"count": count, "wall_s": wall, "per_s": count / wall, "cpu_ms": 1000 * cpu / count}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000, help="extendq jobs (default 1000)")
    parser.add_argument("--baseline-jobs", type=int, default=16, help="blocking baseline jobs (default 16)")
    parser.add_argument("--noop-messages", type=int, default=5000, help="no-op task messages (default 5000)")
    parser.add_argument("--concurrency", type=int, default=2, help="pool slots of every worker (default 2)")
    parser.add_argument("--duration", type=float, nargs=2, default=(2.0, 3.0), help="run duration range, s")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: every process started here is stopped
    logs = Path(tempfile.mkdtemp(prefix="extendq-bench-"))
    with redis_database() as redis_url, emulator(profile(tuple(args.duration))) as served:
        env = worker_env(redis_url, served.url)
        ours = run_extendq(env, args, logs)
        ours["calls"] = served.stats()["requests_total"] / (args.jobs + WARM_UP_JOBS)
        served.reset()
        base = run_baseline(env, args, logs)
        base["calls"] = served.stats()["requests_total"] / args.baseline_jobs
        noop = run_noop(env, args, logs)
    print(f"worker logs in {logs}")
    sys.exit(0 if report(ours, base, noop, args) else 1)


def report(ours: dict[str, float], base: dict[str, float], noop: dict[str, float], args: argparse.Namespace) -> bool:
    print(f"runs of {args.duration[0]:g}-{args.duration[1]:g} s, no rate limits, worker concurrency {args.concurrency}")
    print(f"{'worker':<28}{'count':>7}{'wall s':>9}{'per s':>9}{'CPU ms each':>13}{'API calls/job':>15}")
    rows = (("extendq jobs", ours), ("create_and_poll jobs", base), ("no-op task messages", noop))
    for name, row in rows:
        calls = f"{row['calls']:>15.2f}" if "calls" in row else f"{'-':>15}"
        print(f"{name:<28}{row['count']:>7.0f}{row['wall_s']:>9.1f}{row['per_s']:>9.2f}{row['cpu_ms']:>13.2f}{calls}")
    speed = ours["per_s"] / base["per_s"]
    cost = ours["cpu_ms"] / noop["cpu_ms"]
    fast, cheap = speed >= 50, cost <= 4
    print(f"jobs/s extendq / blocking: {speed:.1f}x (target >= 50x): {verdict(fast)}")
    print(f"CPU per job extendq / no-op message: {cost:.2f}x (target <= 4x): {verdict(cheap)}")
    return fast and cheap


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


if __name__ == "__main__":
    main()
