"""Benchmark: runs in flight on two worker slots, extendq against the blocking `create_and_poll` baseline.

    .venv/bin/python bench/pipeline.py [--jobs 400] [--baseline-jobs 16] [--concurrency 2] [--duration 2 3]

Both designs run side by side in one invocation, on the same Redis, emulator and concurrency; runs take
`--duration` seconds on the emulator. Prints jobs per second, wall time, worker CPU per job and Extend API
calls per job, and the throughput ratio. The baseline is measured on fewer jobs: its rate does not depend
on the count (each slot holds one run at a time), and 400 blocking jobs would take minutes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from celery import Celery

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Stopwatch, cpu_seconds, emulator, redis_database, worker_env  # noqa: E402
from extendq.config.settings import Settings  # noqa: E402
from extendq.tasks.celery import create_app  # noqa: E402
from extendq.tasks.producer import build_request, enqueue  # noqa: E402
from tests.support.worker import WorkerProcess  # noqa: E402

TEXT = "ACME Corp\nInvoice Number: INV-1\nDate: 2026-10-03\nTotal: $120.00\n"


def profile(duration: tuple[float, float]) -> dict[str, Any]:
    spec = {"name": "Bench", "duration_s": list(duration), "outcomes": {"PROCESSED": 1}}
    return {"workflows": {"workflow_bench": spec}, "rate_limit": None, "seed": 1}


def run_extendq(env: dict[str, str], jobs: int, concurrency: int, log: Path) -> dict[str, float]:
    app = create_app(Settings.from_env(env))
    with WorkerProcess(env, log_path=log, concurrency=concurrency) as worker:
        assert worker.proc is not None
        cpu_before = cpu_seconds(worker.proc.pid)
        clock = Stopwatch()
        results = [enqueue(app, build_request(workflow="workflow_bench", file={"text": TEXT})) for _ in range(jobs)]
        statuses = [result.get(timeout=600)["status"] for result in results]
        wall = clock.elapsed_s
        cpu = cpu_seconds(worker.proc.pid) - cpu_before
    assert set(statuses) == {"PROCESSED"}, statuses
    return {"jobs": jobs, "wall_s": wall, "jobs_per_s": jobs / wall, "cpu_ms_per_job": 1000 * cpu / jobs}


def run_baseline(env: dict[str, str], jobs: int, concurrency: int, log: Path) -> dict[str, float]:
    app = Celery(broker=env["EXTENDQ_REDIS_URL"], backend=env["EXTENDQ_REDIS_URL"])
    worker = WorkerProcess(env, log_path=log, concurrency=concurrency)
    worker.args[worker.args.index("config")] = "bench.baseline"
    with worker:
        assert worker.proc is not None
        cpu_before = cpu_seconds(worker.proc.pid)
        clock = Stopwatch()
        results = [
            app.send_task("baseline.create_and_poll", args=["workflow_bench", TEXT], queue="baseline")
            for _ in range(jobs)
        ]
        statuses = [result.get(timeout=600)["status"] for result in results]
        wall = clock.elapsed_s
        cpu = cpu_seconds(worker.proc.pid) - cpu_before
    assert set(statuses) == {"PROCESSED"}, statuses
    return {"jobs": jobs, "wall_s": wall, "jobs_per_s": jobs / wall, "cpu_ms_per_job": 1000 * cpu / jobs}


def api_calls(served: Any) -> int:
    calls = int(served.stats()["requests_total"])
    served.reset()
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--baseline-jobs", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--duration", type=float, nargs=2, default=(2.0, 3.0))
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="extendq-bench-"))
    with redis_database() as redis_url, emulator(profile(tuple(args.duration))) as served:
        env = worker_env(redis_url, served.url)
        ours = run_extendq(env, args.jobs, args.concurrency, logs / "extendq.log")
        ours["api_calls_per_job"] = api_calls(served) / args.jobs
        base = run_baseline(env, args.baseline_jobs, args.concurrency, logs / "baseline.log")
        base["api_calls_per_job"] = api_calls(served) / args.baseline_jobs
    report(ours, base, args)


def report(ours: dict[str, float], base: dict[str, float], args: argparse.Namespace) -> None:
    print(f"runs of {args.duration[0]:g}-{args.duration[1]:g} s, worker concurrency {args.concurrency}")
    print(f"{'design':<28}{'jobs':>6}{'wall s':>9}{'jobs/s':>9}{'CPU ms/job':>12}{'API calls/job':>15}")
    for name, row in (("extendq (reschedules)", ours), ("create_and_poll in a task", base)):
        print(
            f"{name:<28}{row['jobs']:>6.0f}{row['wall_s']:>9.1f}{row['jobs_per_s']:>9.2f}"
            f"{row['cpu_ms_per_job']:>12.1f}{row['api_calls_per_job']:>15.2f}"
        )
    ratio = ours["jobs_per_s"] / base["jobs_per_s"]
    blocking_wall = args.jobs / base["jobs_per_s"]
    print(f"throughput ratio extendq / blocking: {ratio:.1f}x")
    print(f"{args.jobs} jobs: extendq {ours['wall_s']:.1f} s; the blocking design needs about {blocking_wall:.0f} s")


if __name__ == "__main__":
    main()
