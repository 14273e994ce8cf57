"""Benchmark: how fast an asyncio app answers a health route while one of its endpoints awaits many jobs.

    .venv/bin/python bench/aio.py [--jobs 100] [--rounds 3] [--interval 0.02] [--concurrency 2]

A Starlette app served by uvicorn in this process has two routes: `/health`, and `/invoices`, which submits
`--jobs` jobs with `submit_async` and awaits every run with `result_async`, as the README's FastAPI example
does. The emulator (runs of 0.3-0.6 s, no rate limit) and one worker serve the jobs. For each of `--rounds`
rounds, `/invoices` is called once while `/health` is called every `--interval` seconds until it answers;
each health call is timed from request to answer. One unmeasured call of 5 jobs comes first (the producer's
connections, and Celery's Redis backend imported once).

The test suite checks the same thing without a clock (`tests/e2e/test_producer_fit.py`: health checks are
answered while the runs are awaited); this prints the figures.

Target: no health check slower than 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from celery import Celery
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Stopwatch, emulator, redis_database, worker_env  # noqa: E402
from extendq.config.settings import Settings  # noqa: E402
from extendq.tasks import result_async, submit_async  # noqa: E402
from extendq.tasks.celery import create_app  # noqa: E402
from tests.support.asgi import served  # noqa: E402
from tests.support.worker import WorkerProcess  # noqa: E402

TARGET_S = 0.05
WARM_UP_JOBS = 5
PROFILE: dict[str, Any] = {
    "workflows": {"workflow_invoice": {"name": "Invoices", "duration_s": [0.3, 0.6], "outcomes": {"PROCESSED": 1}}},
    "rate_limit": None,
    "seed": 1,
}


def app_for(producer: Celery) -> Starlette:
    """The producer's app: a health route, and an endpoint that submits `count` jobs and awaits their runs."""

    async def health(_: Request) -> Response:
        return PlainTextResponse("ok")

    async def invoices(request: Request) -> Response:
        count = int(request.query_params["count"])
        texts = [f"ACME Corp\nInvoice #: A-{i}\nTotal: ${i}.00" for i in range(count)]
        ids = await asyncio.gather(
            *(submit_async(app=producer, workflow="workflow_invoice", file={"text": text}) for text in texts)
        )
        runs = await asyncio.gather(*(result_async(job_id, app=producer, timeout=120) for job_id in ids))
        return JSONResponse({"statuses": [run["status"] for run in runs]})

    return Starlette(routes=[Route("/health", health), Route("/invoices", invoices, methods=["POST"])])


def one_round(url: str, jobs: int, interval_s: float) -> dict[str, Any]:
    """Call `/invoices` once and `/health` every `interval_s` until it answers; the health latencies."""
    answer: dict[str, Any] = {}
    with httpx.Client(base_url=url, timeout=300) as client:
        batch = threading.Thread(target=lambda: answer.update(client.post(f"/invoices?count={jobs}").json()))
        clock = Stopwatch()
        batch.start()
        latencies = probe(url, batch, interval_s)
        batch.join()
    processed = sum(1 for status in answer.get("statuses", []) if status == "PROCESSED")
    return {"wall_s": clock.elapsed_s, "processed": processed, "latencies": latencies}


def probe(url: str, batch: threading.Thread, interval_s: float) -> list[float]:
    latencies = []
    with httpx.Client(base_url=url, timeout=30) as prober:
        while batch.is_alive():
            started = time.perf_counter()
            prober.get("/health").raise_for_status()
            latencies.append(time.perf_counter() - started)
            time.sleep(interval_s)
    return latencies


def measure(args: argparse.Namespace, logs: Path) -> list[dict[str, Any]]:
    """Every round, on a fresh database, emulator and worker."""
    with redis_database() as redis_url, emulator(PROFILE) as served_emulator:
        env = worker_env(redis_url, served_emulator.url, EXTENDQ_SWEEP="off")
        producer = create_app(Settings.from_env(env))
        with WorkerProcess(env, log_path=logs / "worker.log", concurrency=args.concurrency):
            with served(app_for(producer)) as url:
                one_round(url, WARM_UP_JOBS, args.interval)
                return [one_round(url, args.jobs, args.interval) for _ in range(args.rounds)]


def report(rows: list[dict[str, Any]], args: argparse.Namespace) -> bool:
    print(f"an endpoint awaiting {args.jobs} jobs; /health every {1000 * args.interval:g} ms meanwhile")
    print(f"{'round':>6}{'processed':>11}{'wall s':>8}{'checks':>8}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}")
    for index, row in enumerate(rows, 1):
        latencies = sorted(row["latencies"]) or [0.0]
        p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
        print(
            f"{index:>6}{row['processed']:>11}{row['wall_s']:>8.1f}{len(row['latencies']):>8}"
            f"{1000 * statistics.median(latencies):>8.1f}{1000 * p99:>8.1f}{1000 * latencies[-1]:>8.1f}"
        )
    worst = max((max(row["latencies"], default=0.0) for row in rows), default=0.0)
    complete = all(row["processed"] == args.jobs for row in rows)
    fast = worst < TARGET_S
    print(f"every run came back: {verdict(complete)}")
    print(f"slowest health check {1000 * worst:.1f} ms (target < {1000 * TARGET_S:g} ms): {verdict(fast)}")
    return complete and fast


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100, help="jobs the endpoint awaits per round (default 100)")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds (default 3)")
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between health checks (default 0.02)")
    parser.add_argument("--concurrency", type=int, default=2, help="worker pool slots (default 2)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: every process started here is stopped
    logs = Path(tempfile.mkdtemp(prefix="extendq-bench-"))
    rows = measure(args, logs)
    print(f"worker log in {logs}")
    sys.exit(0 if report(rows, args) else 1)


if __name__ == "__main__":
    main()
