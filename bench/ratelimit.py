"""Benchmark: extendq's shared rate limiter against Extend's PAYG limits, beside its earlier pacing.

    .venv/bin/python bench/ratelimit.py [--minutes 5] [--jobs N] [--processes 2] [--concurrency 2] [--scale 1]
        [--designs extendq,gcra] [--repeat 1]

The emulator enforces the PAYG plan (10 requests/s over every endpoint, 80 runs/min on create) and runs
take 30-90 s. Each design gets a fresh Redis database and emulator, the same worker processes (`--processes`
of `--concurrency` each) and the same wall-clock window of `--minutes`; `--jobs` (by default as many as the
runs/min limit allows in the window: 400 in 5 min) are queued at its start and what finished inside it is
counted. Designs (`--designs`, comma-separated, each run `--repeat` times, in turn):

- `extendq`: EXTENDQ_RATE_LIMIT_PLAN=payg, runs per minute held by the log of creates (the default);
- `gcra`: the same with EXTENDQ_RATE_LIMIT_RUNS_WINDOW=gcra, the earlier pacing (one create every 60.6 s / 80),
  the baseline the figures are compared with;
- `blocking`: the SDK's `create_and_poll` in a task (`bench/baseline.py`), which knows nothing of the limits.

Runs finished per minute are counted in the steady state: from the end of the longest run (90 s) after the
window opened to the window's end, since nothing can finish before a run's duration. 429s and requests come
from the emulator's own counters and request log. `--scale N` multiplies both limits (emulator and workers)
by N and divides the run durations by N: the same shape, N times quicker to show.

Targets: extendq finishes at least 98 % of the runs/min limit, and receives no 429.
"""

from __future__ import annotations

import argparse
import bisect
import json
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import redis
from celery import Celery

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import emulator, redis_database, worker_env  # noqa: E402
from extendq.config.settings import Settings  # noqa: E402
from extendq.tasks.celery import create_app  # noqa: E402
from extendq.tasks.producer import build_request, enqueue  # noqa: E402
from tests.support.worker import WorkerProcess  # noqa: E402

TEXT = "ACME Corp\nInvoice Number: INV-1\nDate: 2026-10-03\nTotal: $120.00\n"
REQUESTS_PER_SECOND, RUNS_PER_MINUTE = 10, 80  # Extend's PAYG plan
DURATION_S = (30.0, 90.0)
READY = ("SUCCESS", "FAILURE")
CREATED = ("POST", "/workflow_runs", 200)
LABELS = {
    "extendq": "extendq, log of creates",
    "gcra": "extendq, GCRA pacing (earlier)",
    "blocking": "create_and_poll in a task",
}
TARGET_SHARE = 0.98


class FinishWatch:
    """When each of our jobs reached a ready state, seen on the result backend's publications."""

    def __init__(self, redis_url: str) -> None:
        self.ids: set[str] = set()
        self.finished: dict[str, tuple[float, str]] = {}
        self._pubsub = redis.Redis.from_url(redis_url).pubsub()
        self._pubsub.psubscribe("celery-task-meta-*")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            message = self._pubsub.get_message(timeout=0.2)
            if not message or message["type"] != "pmessage":
                continue
            meta = json.loads(message["data"])
            if meta.get("status") in READY:
                self.finished.setdefault(meta["task_id"], (time.time(), meta["status"]))

    def ours(self) -> list[tuple[float, str]]:
        """When and how our jobs ended (pub/sub spans the server: other clients' tasks are left out)."""
        return [self.finished[job_id] for job_id in self.ids if job_id in self.finished]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._pubsub.close()


def profile(scale: float) -> dict[str, Any]:
    low, high = (bound / scale for bound in DURATION_S)
    spec = {"name": "Bench", "duration_s": [low, high], "outcomes": {"PROCESSED": 1}}
    limits = {
        "requests_per_second": round(REQUESTS_PER_SECOND * scale),
        "runs_per_minute": round(RUNS_PER_MINUTE * scale),
    }
    return {"base": "payg", "seed": 7, "rate_limit": limits, "workflows": {"workflow_bench": spec}}


def limit_env(scale: float) -> dict[str, str]:
    """The workers' limit settings: the PAYG preset, with explicit numbers when scaled."""
    env = {"EXTENDQ_RATE_LIMIT_PLAN": "payg"}
    if scale != 1:
        env["EXTENDQ_RATE_LIMIT_REQUESTS_PER_SECOND"] = str(round(REQUESTS_PER_SECOND * scale))
        env["EXTENDQ_RATE_LIMIT_RUNS_PER_MINUTE"] = str(round(RUNS_PER_MINUTE * scale))
    return env


def design_env(design: str, scale: float) -> dict[str, str]:
    """A design's worker settings: extendq's limits (and runs window); nothing for the blocking baseline."""
    if design == "blocking":
        return {}
    return {**limit_env(scale), "EXTENDQ_RATE_LIMIT_RUNS_WINDOW": "gcra" if design == "gcra" else "log"}


def workers(env: dict[str, str], args: argparse.Namespace, logs: Path, design: str) -> list[WorkerProcess]:
    started = []
    for index in range(args.processes):
        worker = WorkerProcess(env, log_path=logs / f"{design}-{index}.log", concurrency=args.concurrency)
        if design == "blocking":
            worker.args[worker.args.index("config")] = "bench.baseline"
        started.append(worker)
    return started


def send(design: str, env: dict[str, str], jobs: int) -> list[str]:
    if design != "blocking":
        app = create_app(Settings.from_env(env))
        request = build_request(workflow="workflow_bench", file={"text": TEXT})
        return [enqueue(app, request).id for _ in range(jobs)]
    app = Celery(broker=env["EXTENDQ_REDIS_URL"], backend=env["EXTENDQ_REDIS_URL"])
    return [
        app.send_task("baseline.create_and_poll", args=["workflow_bench", TEXT], queue="baseline").id
        for _ in range(jobs)
    ]


def run_design(design: str, args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    """One design for one window: fresh Redis database and emulator, its workers, `--jobs` queued at the start."""
    with redis_database() as redis_url, emulator(profile(args.scale)) as served:
        env = worker_env(redis_url, served.url, **design_env(design, args.scale))
        procs = workers(env, args, logs, design)
        try:
            for worker in procs:
                worker.start()
            watch = FinishWatch(redis_url)
            opened = time.time()
            watch.ids.update(send(design, env, args.jobs))
            window_s = args.minutes * 60
            follow(design, served, watch, opened, window_s)
            watch.close()
            stats, log = served.stats(), served.requests(since=opened)
        finally:
            for worker in procs:
                worker.stop(timeout_s=5)
    return figures(watch, stats, log, opened, window_s, args)


def follow(design: str, served: Any, watch: FinishWatch, opened: float, window_s: float) -> None:
    """Wait out the window, printing progress every 30 s."""
    while (left := opened + window_s - time.time()) > 0:
        time.sleep(min(30.0, left))
        stats = served.stats()
        created = stats["requests"].get("POST /workflow_runs", {}).get("200", 0)
        print(
            f"  {design} {time.time() - opened:5.0f} s: {created} runs created, {len(watch.ours())} finished, "
            f"{stats['rate_limited']} 429s, {stats['requests_total']} requests",
            flush=True,
        )


def figures(
    watch: FinishWatch, stats: dict[str, Any], log: list[dict[str, Any]], opened: float, window_s: float, args: Any
) -> dict[str, Any]:
    closed = opened + window_s
    ended = watch.ours()
    times = sorted(at for at, _ in ended if at <= closed)
    failed = sum(1 for at, status in ended if at <= closed and status != "SUCCESS")
    steady_from = opened + DURATION_S[1] / args.scale
    steady = len(times) - bisect.bisect_left(times, steady_from)
    # Admitted requests: answered, and not refused with a 429 (the emulator's limits count only those).
    served = [entry["at"] for entry in log if entry["at"] <= closed and entry["status"] not in (None, 429)]
    creates = [e["at"] for e in log if e["at"] <= closed and (e["method"], e["route"], e["status"]) == CREATED]
    finished = len(times)
    return {
        "finished": finished,
        "failed": failed,
        "per_minute": 60 * steady / (closed - steady_from),
        "created": stats["requests"].get("POST /workflow_runs", {}).get("200", 0),
        "rate_limited": stats["rate_limited"],
        "requests": stats["requests_total"],
        "requests_per_job": stats["requests_total"] / finished if finished else float("nan"),
        "routes": {route: sum(counts.values()) for route, counts in stats["requests"].items()},
        "peak_per_s": peak(served, 1.0),
        "peak_creates_per_min": peak(creates, 60.0),
    }


def peak(times: list[float], span_s: float) -> int:
    """The most arrivals in any window of `span_s` (as the emulator counts them: (t - span, t])."""
    times = sorted(times)
    best = 0
    for index, at in enumerate(times):
        best = max(best, index + 1 - bisect.bisect_right(times, at - span_s))
    return best


def report(rows: list[tuple[str, dict[str, Any]]], args: argparse.Namespace) -> bool:
    rps, rpm = round(REQUESTS_PER_SECOND * args.scale), round(RUNS_PER_MINUTE * args.scale)
    low, high = (bound / args.scale for bound in DURATION_S)
    print(
        f"limits {rps} requests/s, {rpm} runs/min; runs of {low:g}-{high:g} s; {args.jobs} jobs queued; "
        f"{args.processes} x {args.concurrency} worker processes; window {args.minutes:g} min"
    )
    head = f"{'design':<32}{'finished':>9}{'runs/min':>10}{'% of ' + str(rpm):>9}{'created':>9}{'429s':>6}"
    print(head + f"{'requests':>10}{'req/job':>9}{'peak req/s':>12}{'peak runs/min':>15}")
    for label, row in rows:
        print(
            f"{label:<32}{row['finished']:>9}{row['per_minute']:>10.1f}{100 * row['per_minute'] / rpm:>9.1f}"
            f"{row['created']:>9}{row['rate_limited']:>6}{row['requests']:>10}{row['requests_per_job']:>9.2f}"
            f"{row['peak_per_s']:>12}{row['peak_creates_per_min']:>15}"
        )
    for label, row in rows:
        routes = ", ".join(f"{route} {count}" for route, count in sorted(row["routes"].items()))
        print(f"  {label} requests: {routes}; {row['failed']} jobs failed")
    ok = True
    for label, row in rows:
        if not label.startswith(LABELS["extendq"]):
            continue
        share, quiet = float(row["per_minute"]) / rpm, int(row["rate_limited"]) == 0
        ok = ok and share >= TARGET_SHARE and quiet
        print(
            f"{label}: {row['per_minute']:.1f} runs finished/min = {100 * share:.1f} % of {rpm} "
            f"(target >= {100 * TARGET_SHARE:g} %): {verdict(share >= TARGET_SHARE)}; "
            f"{row['rate_limited']} x 429 (target 0): {verdict(quiet)}"
        )
    return ok


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="the window each design gets (default 5)")
    parser.add_argument(
        "--jobs", type=int, help="jobs queued at the window's start (default: the runs/min limit x minutes, 400)"
    )
    parser.add_argument("--processes", type=int, default=2, help="worker processes per design (default 2)")
    parser.add_argument("--concurrency", type=int, default=2, help="pool slots per worker process (default 2)")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="limits x N, run durations / N: a quicker check (default 1)"
    )
    parser.add_argument(
        "--designs", default="extendq,gcra", help=f"comma-separated, of {', '.join(LABELS)} (default extendq,gcra)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="windows per design, run in turn (default 1)")
    args = parser.parse_args()
    designs = [design.strip() for design in args.designs.split(",") if design.strip()]
    if not designs or any(design not in LABELS for design in designs):
        parser.error(f"--designs takes some of {', '.join(LABELS)}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: every process started here is stopped
    if args.minutes * 60 <= DURATION_S[1] / args.scale:
        parser.error("--minutes must exceed the longest run (90 s / scale)")
    if args.jobs is None:  # enough to keep the runs/min limit busy for the whole window
        args.jobs = round(RUNS_PER_MINUTE * args.scale * args.minutes)
    logs = Path(tempfile.mkdtemp(prefix="extendq-bench-"))
    rows = []
    for turn in range(1, args.repeat + 1):
        for design in designs:
            label = LABELS[design] + (f" #{turn}" if args.repeat > 1 else "")
            print(f"{label}: {args.minutes:g} min window ...", flush=True)
            rows.append((label, run_design(design, args, logs)))
    print(f"worker logs in {logs}")
    sys.exit(0 if report(rows, args) else 1)


if __name__ == "__main__":
    main()
