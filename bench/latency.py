"""Benchmark: from a run's end on Extend (its `endTime`) to its result published, against the hand-wired floor.

    .venv/bin/python bench/latency.py [--modes webhooks sweeps checks] [--rates 15 100] [--loads quiet busy]
                                      [--seconds 10] [--duration 1 3] [--concurrency 2] [--set NAME=VALUE ...]

Each scenario (a mode, an arrival rate, a load) is one run on a fresh Redis database: the emulator (runs of
`--duration` seconds), one worker, and the hand-wired receiver of `bench/floor.py` (SDK verify + one Redis
write), which gets every run's terminal webhook from the same emulator. Modes:

- `webhooks`: extendq with webhooks: the emulator delivers each event to `extendq webhooks` and the floor alike
  (the first one posted to takes turns);
- `queued`: the same, with the receiver handing every event to the workers (`EXTENDQ_WEBHOOK_APPLY=false`);
- `sweeps`: no webhooks for extendq, list sweeps only (`EXTENDQ_SWEEP=on`);
- `checks`: no webhooks for extendq, per-job checks only (`EXTENDQ_SWEEP=off`).

Jobs arrive at `--rates` a second for `--seconds`. `busy` runs two `while True: pass` loops (both cores of a
two-core machine) from the first job to the last result. Prints, per scenario, p50/p95/p99/max in ms for extendq
and the floor measured in the same run, and their ratios. `--set` passes settings to extendq's processes
(e.g. `--set EXTENDQ_SWEEP=off` to see what sweeps cost in webhook mode).

Then the crash scenario of `bench/handover.py` (`--crash-jobs`, 200 by default, 0 to leave it out): that many jobs
undisturbed, then again with two worker SIGKILLs (each worker restarted); the extra seconds to result of the jobs
in hand at a kill (p50, p99, max) against the undisturbed run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import chaos_profile, emulator, redis_database, worker_env  # noqa: E402
from bench.floor import CHANNEL, FloorProcess  # noqa: E402
from bench.handover import crash_scenario, report  # noqa: E402
from extendq.config.settings import Settings  # noqa: E402
from extendq.tasks.celery import create_app  # noqa: E402
from extendq.tasks.producer import build_request, enqueue  # noqa: E402
from tests.support.groups import stop_group  # noqa: E402
from tests.support.receiver import ReceiverProcess  # noqa: E402
from tests.support.worker import WorkerProcess  # noqa: E402

SECRET = "wss_latency_bench_secret"
WORKFLOW = "workflow_latency"
RESULT_CHANNEL = "celery-task-meta-"
MODES: dict[str, dict[str, str]] = {
    "webhooks": {"EXTENDQ_WEBHOOKS_ENABLED": "true"},
    "queued": {"EXTENDQ_WEBHOOKS_ENABLED": "true", "EXTENDQ_WEBHOOK_APPLY": "false"},
    "sweeps": {"EXTENDQ_SWEEP": "on"},
    "checks": {"EXTENDQ_SWEEP": "off"},
}
WEBHOOK_MODES = {"webhooks", "queued"}


@dataclass(frozen=True)
class Scenario:
    mode: str
    rate: float
    load: str


@dataclass
class Row:
    """What one scenario measured: latencies in seconds, extendq's and the floor's, for the same runs."""

    scenario: Scenario
    extendq: list[float]
    floor: list[float]
    jobs: int


class Publications:
    """When each result was published: extendq's (job id, SUCCESS) and the floor's (run id)."""

    def __init__(self, redis_url: str) -> None:
        self.results: dict[str, float] = {}
        self.floor: dict[str, float] = {}
        self._pubsub = redis.Redis.from_url(redis_url).pubsub()
        self._pubsub.psubscribe(f"{RESULT_CHANNEL}*", f"{CHANNEL}*")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            message = self._pubsub.get_message(timeout=0.2)
            if not message or message["type"] != "pmessage":
                continue
            at, channel = time.time(), message["channel"].decode()
            if channel.startswith(CHANNEL):
                self.floor.setdefault(channel.removeprefix(CHANNEL), at)
            elif json.loads(message["data"]).get("status") == "SUCCESS":
                self.results.setdefault(channel.removeprefix(RESULT_CHANNEL), at)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._pubsub.close()


@contextmanager
def busy_loops(load: str) -> Iterator[None]:
    """Two processes spinning for as long as the block runs (`busy`), or nothing (`quiet`)."""
    loops = [] if load == "quiet" else [_spin() for _ in range(2)]
    try:
        yield
    finally:
        for loop in loops:
            stop_group(loop, 5)


def _spin() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)


def profile(duration: tuple[float, float]) -> dict[str, Any]:
    spec = {"name": "Latency", "duration_s": list(duration), "queue_s": [0.0, 0.1], "outcomes": {"PROCESSED": 1}}
    return {"workflows": {WORKFLOW: spec}, "rate_limit": None, "seed": 5}


def run_scenario(scenario: Scenario, args: argparse.Namespace, logs: Path) -> Row:
    """One scenario on a fresh Redis database, emulator, worker and receivers."""
    with redis_database() as redis_url, emulator(profile(tuple(args.duration))) as served, ExitStack() as stack:
        settings = {"EXTENDQ_WEBHOOK_SECRETS": SECRET, **MODES[scenario.mode], **args.set}
        env = worker_env(redis_url, served.url, **settings)
        floor = stack.enter_context(FloorProcess(redis_url, SECRET))
        name = f"{scenario.mode}-{scenario.rate:g}-{scenario.load}"
        if scenario.mode in WEBHOOK_MODES:
            receiver = stack.enter_context(ReceiverProcess(env, log_path=logs / f"receiver-{name}.log"))
            served.set_webhook(f"{receiver.url}/webhooks/extend", SECRET, mirrors=[f"{floor.url}/webhooks/extend"])
        else:
            served.set_webhook(f"{floor.url}/webhooks/extend", SECRET)
        stack.enter_context(WorkerProcess(env, log_path=logs / f"worker-{name}.log", concurrency=args.concurrency))
        return measure(scenario, Settings.from_env(env), served, args)


def measure(scenario: Scenario, settings: Settings, served: Any, args: argparse.Namespace) -> Row:
    app = create_app(settings)
    published = Publications(settings.redis_url)
    count = max(1, round(scenario.rate * args.seconds))
    try:
        with busy_loops(scenario.load):
            jobs = submit(app, count, scenario.rate)
            _wait(lambda: len(jobs.keys() & published.results.keys()) == count, args.timeout)
            runs = {run["metadata"]["extendq:job_id"]: run for run in served.runs()}
            _wait(lambda: all(run["id"] in published.floor for run in runs.values()), 30)
    finally:
        published.close()
    ended = {job: _ts(run["endTime"]) for job, run in runs.items() if job in jobs}
    extendq = sorted(published.results[job] - ended[job] for job in ended if job in published.results)
    floor = sorted(published.floor[runs[job]["id"]] - ended[job] for job in ended if runs[job]["id"] in published.floor)
    return Row(scenario, extendq, floor, count)


def submit(app: Any, count: int, rate: float) -> dict[str, float]:
    """Enqueue `count` jobs at `rate` a second; their ids and when each was sent."""
    jobs: dict[str, float] = {}
    start = time.monotonic()
    for i in range(count):
        pause = start + i / rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        jobs[enqueue(app, build_request(workflow=WORKFLOW, file={"text": f"Total: {i}.00"})).id] = time.time()
    return jobs


def _wait(done: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            print(f"  (gave up waiting after {timeout_s:g} s: figures below cover what came)", flush=True)
            return
        time.sleep(0.2)


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p95, p99 and max in ms (nearest rank); NaN when there are none."""
    if not values:
        return dict.fromkeys(("p50", "p95", "p99", "max"), float("nan"))
    ordered = sorted(values)

    def at(q: float) -> float:
        return 1000 * ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99), "max": 1000 * ordered[-1]}


HEADER = (
    f"{'mode':<9}{'rate':>5} {'load':<6}{'jobs':>5}{'got':>5} | "
    f"{'extendq p50':>11}{'p95':>8}{'p99':>8}{'max':>8} | {'floor p50':>9}{'p95':>7}{'p99':>7}{'max':>7} | "
    f"{'x p50':>7}{'x p95':>7}{'x p99':>7}"
)


def line(row: Row) -> str:
    mine, floor = percentiles(row.extendq), percentiles(row.floor)
    s = row.scenario
    ratios = "".join(f"{mine[q] / floor[q]:>7.2f}" if floor[q] else f"{'-':>7}" for q in ("p50", "p95", "p99"))
    return (
        f"{s.mode:<9}{s.rate:>5g} {s.load:<6}{row.jobs:>5}{len(row.extendq):>5} | "
        f"{mine['p50']:>11.1f}{mine['p95']:>8.1f}{mine['p99']:>8.1f}{mine['max']:>8.1f} | "
        f"{floor['p50']:>9.1f}{floor['p95']:>7.1f}{floor['p99']:>7.1f}{floor['max']:>7.1f} | {ratios}"
    )


def verdicts(rows: list[Row]) -> list[str]:
    """The targets: webhook p99 within 1.5x the floor's when busy; sweeps-only p95 under 3 s."""
    out = []
    for row in rows:
        s, mine, floor = row.scenario, percentiles(row.extendq), percentiles(row.floor)
        if s.mode == "webhooks" and s.load == "busy":
            ok = mine["p99"] <= 1.5 * floor["p99"]
            out.append(f"{'PASS' if ok else 'FAIL'}  webhooks {s.rate:g}/s busy: p99 at most 1.5x the floor's")
        if s.mode == "sweeps":
            ok = mine["p95"] < 3000
            out.append(f"{'PASS' if ok else 'FAIL'}  sweeps {s.rate:g}/s {s.load}: p95 under 3 s")
    return out


def crash_lines(args: argparse.Namespace, logs: Path) -> list[str]:
    """The crash scenario's figures (`bench/handover.py`): jobs of `--duration` runs, two worker SIGKILLs."""
    if args.crash_jobs <= 0:
        return []
    duration = (args.duration[0], args.duration[1])
    with emulator(chaos_profile(duration)) as served:
        calm, hurt = crash_scenario(served, args.crash_jobs, logs / "crash", duration=duration)
    title = f"\nworker crashes: {args.crash_jobs} jobs, 2 SIGKILLs (each worker restarted), extra seconds to result"
    return [title, *report(calm, hurt)]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=["webhooks", "sweeps", "checks"])
    parser.add_argument("--rates", type=float, nargs="+", default=[15.0, 100.0], help="jobs arriving a second")
    parser.add_argument("--loads", nargs="+", choices=["quiet", "busy"], default=["quiet", "busy"])
    parser.add_argument("--seconds", type=float, default=10.0, help="how long jobs arrive, per scenario")
    parser.add_argument("--duration", type=float, nargs=2, default=(1.0, 3.0), help="run length range, seconds")
    parser.add_argument("--concurrency", type=int, default=2, help="the worker's processes")
    parser.add_argument("--timeout", type=float, default=180.0, help="longest wait for a scenario's results")
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE", help="settings for extendq")
    parser.add_argument("--crash-jobs", type=int, default=200, help="jobs of the crash scenario (0: leave it out)")
    args = parser.parse_args()
    args.set = dict(item.split("=", 1) for item in args.set)
    return args


def main() -> None:
    args = parse_args()
    logs = Path(tempfile.mkdtemp(prefix="extendq-latency-"))
    scenarios = [Scenario(m, r, ld) for r, ld, m in itertools.product(args.rates, args.loads, args.modes)]
    rows: list[Row] = []
    for scenario in scenarios:
        rows.append(run_scenario(scenario, args, logs))
        print(line(rows[-1]), flush=True)
    extra = f", settings {args.set}" if args.set else ""
    print(f"\nendTime -> result published, ms; runs of {args.duration[0]:g}-{args.duration[1]:g} s, jobs arriving")
    print(f"for {args.seconds:g} s, worker concurrency {args.concurrency}{extra}; x: extendq / floor, same run")
    print(HEADER)
    for row in rows:
        print(line(row))
    for verdict in verdicts(rows):
        print(verdict)
    for crash_line in crash_lines(args, logs):
        print(crash_line, flush=True)
    print(f"logs: {logs}")


if __name__ == "__main__":
    main()
