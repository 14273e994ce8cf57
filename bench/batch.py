"""Benchmark: bulk submission through the batch endpoint.

    .venv/bin/python bench/batch.py [--files 10000] [--duration 1 3] [--concurrency 2]

Hands `--files` text files for one workflow to `tasks.bulk.submit_many`, waits for every job's result and
prints how many batch requests carried them (Extend takes at most 1,000 inputs per request), how many
single creates were made (0), the other Extend calls per job (list sweeps and the one fetch of each
finished run), that every job has its own result, and the time from hand-over to the last result.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Stopwatch, emulator, redis_database, worker_env  # noqa: E402
from extendq.config.settings import Settings  # noqa: E402
from extendq.tasks.bulk import submit_many  # noqa: E402
from extendq.tasks.celery import create_app  # noqa: E402
from tests.support.worker import WorkerProcess  # noqa: E402


def profile(duration: tuple[float, float]) -> dict[str, Any]:
    spec = {"name": "Bench", "duration_s": list(duration), "outcomes": {"PROCESSED": 1}}
    return {"workflows": {"workflow_bench": spec}, "rate_limit": None, "seed": 5, "batch_runs_per_second": 2000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--duration", type=float, nargs=2, default=(1.0, 3.0))
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    log = Path(tempfile.mkdtemp(prefix="extendq-bench-")) / "worker.log"
    with redis_database() as redis_url, emulator(profile(tuple(args.duration))) as served:
        env = worker_env(redis_url, served.url, EXTENDQ_SWEEP="on")
        app = create_app(Settings.from_env(env))
        with WorkerProcess(env, log_path=log, concurrency=args.concurrency):
            clock = Stopwatch()
            files = [{"text": f"Invoice #: {i}\nTotal: {i}.00", "name": f"doc-{i}.txt"} for i in range(args.files)]
            jobs = submit_many(workflow="workflow_bench", files=files, app=app)
            handed_over = clock.elapsed_s
            runs = [job.get(timeout=1800) for job in jobs]
            wall = clock.elapsed_s
        report(args.files, jobs, runs, served.stats()["requests"], handed_over, wall)


def report(
    files: int, jobs: list[Any], runs: list[dict[str, Any]], requests: dict[str, Any], handed: float, wall: float
) -> None:
    calls = Counter({route: sum(counts.values()) for route, counts in requests.items()})
    own = sum(1 for job, run in zip(jobs, runs, strict=True) if run["metadata"]["extendq:job_id"] == job.id)
    others = sum(calls.values()) - calls["POST /workflow_runs/batch"]
    print(f"{files} files for one workflow")
    print(f"batch requests         {calls['POST /workflow_runs/batch']} (at most 1,000 inputs each)")
    print(f"single creates         {calls['POST /workflow_runs']}")
    fetches = calls["GET /workflow_runs/{id}"]
    print(f"fetches of ended runs  {fetches}  ({fetches / files:.2f} per job)")
    print(f"list pages (sweeps)    {calls['GET /workflow_runs']}")
    print(f"other calls per job    {others / files:.3f}")
    print(
        f"results present        {own} of {files}, {len({run['id'] for run in runs})} distinct runs, "
        f"statuses {dict(Counter(run['status'] for run in runs))}"
    )
    print(f"hand-over {handed:.1f} s, last result after {wall:.1f} s")
    ok = own == files and calls["POST /workflow_runs"] == 0 and calls["POST /workflow_runs/batch"] == -(-files // 1000)
    print(f"{'PASS' if ok else 'FAIL'}: one result per file, {-(-files // 1000)} batch requests, no single creates")


if __name__ == "__main__":
    main()
