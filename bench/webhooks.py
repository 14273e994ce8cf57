"""Benchmark: webhook mode against polling mode, side by side in one run.

    .venv/bin/python bench/webhooks.py [--jobs 1000] [--duration 1 5] [--concurrency 2]

For each mode: a fresh Redis database, the emulator (runs of `--duration` seconds), one worker; in webhook
mode also the receiver, and the emulator delivers signed events to it. Prints, per mode, the latency from
the emulator marking a run terminal (its `endTime`) to the job's result being readable in the result
backend (p50, p99; observed by subscribing to the backend's publications), and Extend API calls per job.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Stopwatch, emulator, redis_database, worker_env  # noqa: E402
from extendq.config.settings import Settings  # noqa: E402
from extendq.tasks.celery import create_app  # noqa: E402
from extendq.tasks.producer import build_request, enqueue  # noqa: E402
from tests.support.receiver import ReceiverProcess  # noqa: E402
from tests.support.worker import WorkerProcess  # noqa: E402

SECRET = "wss_bench_secret"


class ResultWatch:
    """Records when each job's SUCCESS result is published to the backend (its pub/sub message)."""

    def __init__(self, redis_url: str) -> None:
        self.readable_at: dict[str, float] = {}
        self._pubsub = redis.Redis.from_url(redis_url).pubsub()
        self._pubsub.psubscribe("celery-task-meta-*")
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._stop = threading.Event()
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            message = self._pubsub.get_message(timeout=0.2)
            if message and message["type"] == "pmessage":
                meta = json.loads(message["data"])
                if meta.get("status") == "SUCCESS":
                    self.readable_at.setdefault(meta["task_id"], time.time())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._pubsub.close()


def profile(duration: tuple[float, float]) -> dict[str, Any]:
    spec = {"name": "Bench", "duration_s": list(duration), "outcomes": {"PROCESSED": 1}}
    return {"workflows": {"workflow_bench": spec}, "rate_limit": None, "seed": 3}


def run_mode(webhooks: bool, args: argparse.Namespace, logs: Path) -> dict[str, float]:
    with redis_database() as redis_url, emulator(profile(tuple(args.duration))) as served_emulator:
        extra = {"EXTENDQ_WEBHOOKS_ENABLED": "true", "EXTENDQ_WEBHOOK_SECRETS": SECRET} if webhooks else {}
        env = worker_env(redis_url, served_emulator.url, **extra)
        settings = Settings.from_env(env)
        with ReceiverProcess(env) as receiver:
            if webhooks:
                served_emulator.set_webhook(f"{receiver.url}/webhooks/extend", SECRET)
            log = logs / f"worker-{'webhooks' if webhooks else 'polling'}.log"
            with WorkerProcess(env, log_path=log, concurrency=args.concurrency):
                return measure(settings, served_emulator, args.jobs)


def measure(settings: Settings, served_emulator: Any, jobs: int) -> dict[str, float]:
    app = create_app(settings)
    watch = ResultWatch(settings.redis_url)
    clock = Stopwatch()
    results = [
        enqueue(app, build_request(workflow="workflow_bench", file={"text": "Total: 1.00"})) for _ in range(jobs)
    ]
    for result in results:
        result.get(timeout=600)
    wall = clock.elapsed_s
    time.sleep(0.3)
    watch.close()
    runs = {run["metadata"]["extendq:job_id"]: run for run in served_emulator.runs()}
    latencies = sorted(watch.readable_at[job.id] - _ts(runs[job.id]["endTime"]) for job in results)
    calls = served_emulator.stats()["requests_total"]
    sent = {d["runId"]: d["at"] for d in served_emulator.webhooks() if d.get("statusCode") == 200}
    if sent:
        lag = sorted(sent[run["id"]] - _ts(run["endTime"]) for run in runs.values() if run["id"] in sent)
        print(
            f"  emulator delivery lag after endTime: p50 {1000 * statistics.median(lag):.1f} ms, "
            f"p99 {1000 * lag[int(0.99 * (len(lag) - 1))]:.1f} ms"
        )
    return {
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
        "max_ms": 1000 * latencies[-1],
        "calls_per_job": calls / jobs,
        "wall_s": wall,
    }


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--duration", type=float, nargs=2, default=(1.0, 5.0))
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="extendq-bench-"))
    rows = {"webhooks": run_mode(True, args, logs), "polling": run_mode(False, args, logs)}
    print(
        f"{args.jobs} jobs, runs of {args.duration[0]:g}-{args.duration[1]:g} s, worker concurrency {args.concurrency}"
    )
    print(f"{'mode':<10}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'API calls/job':>15}{'wall s':>8}")
    for name, row in rows.items():
        print(
            f"{name:<10}{row['p50_ms']:>9.1f}{row['p99_ms']:>9.1f}{row['max_ms']:>9.1f}"
            f"{row['calls_per_job']:>15.2f}{row['wall_s']:>8.1f}"
        )
    hooks, polls = rows["webhooks"], rows["polling"]
    print(
        f"webhooks vs polling: p99 {polls['p99_ms'] / hooks['p99_ms']:.0f}x lower, "
        f"{polls['calls_per_job'] / hooks['calls_per_job']:.1f}x fewer API calls per job"
    )
    ok = hooks["p99_ms"] < 100 and hooks["calls_per_job"] < 1.1
    print(f"targets (webhook mode p99 < 100 ms, < 1.1 calls/job): {'PASS' if ok else 'FAIL'}")


if __name__ == "__main__":
    main()
