"""What the benchmarks share: a Redis database of their own, the served emulator, worker processes, CPU time; and
what the chaos scenarios share: a restartable pool, their figures, and how results, runs and refusals are counted."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import redis

from extendq.cli.redis_server import RedisServer, ensure_redis
from extendq.config.settings import Settings
from extendq.tasks.celery import create_app
from extendq.tasks.producer import build_request, enqueue
from extendq.worker.store import open_store
from tests.support.emulator import EmulatorProcess
from tests.support.worker import WorkerProcess, claim_database, release_database

API_KEY = "bench-key"


@contextmanager
def redis_database() -> Iterator[str]:
    """A Redis URL on an empty database of its own (a private server when none answers)."""
    url, private = ensure_redis(os.environ.get("EXTENDQ_REDIS_URL", "redis://127.0.0.1:6379/0"))
    base = url.rsplit("/", 1)[0]
    db = claim_database(f"{base}/0", owner=f"bench-{uuid.uuid4().hex[:8]}")
    try:
        yield f"{base}/{db}"
    finally:
        release_database(f"{base}/0", db)
        if private is not None:
            private.stop()


@contextmanager
def emulator(profile: dict[str, Any]) -> Iterator[EmulatorProcess]:
    """The emulator, served by uvicorn in its own process, with `profile`."""
    with EmulatorProcess(profile=profile) as served:
        yield served


def worker_env(redis_url: str, emulator_url: str, **extra: str) -> dict[str, str]:
    """The environment a benchmark worker runs with."""
    return {"EXTENDQ_REDIS_URL": redis_url, "EXTENDQ_BASE_URL": emulator_url, "EXTEND_API_KEY": API_KEY, **extra}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its live children (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for each in [pid, *_children(pid)]:
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def rss_bytes(pid: int) -> int:
    """Resident memory of a process and its live children."""
    total = 0
    for each in [pid, *_children(pid)]:
        try:
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except FileNotFoundError:
            continue
    return total


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    return [int(child) for child in text.split()]


class Stopwatch:
    """Wall-clock seconds since creation."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started


# ---- What the chaos scenarios share (bench/chaos.py, bench/chaos_faults.py, bench/chaos_failover.py) ----------------

CHAOS_WORKFLOW = "workflow_chaos"
RESULT_KEY = "celery-task-meta-"


def chaos_profile(duration: tuple[float, float], **extra: Any) -> dict[str, Any]:
    """An emulator profile with one always-PROCESSED workflow of runs lasting `duration`, no limits by default."""
    spec = {"name": "Chaos", "duration_s": list(duration), "outcomes": {"PROCESSED": 1}}
    return {"workflows": {CHAOS_WORKFLOW: spec}, "rate_limit": None, "seed": 11, **extra}


@dataclass
class Figures:
    """What one scenario measured; `targets` are its promises (a PASS/FAIL line each)."""

    name: str
    jobs: int
    finished: int = 0
    lost: int = 0
    duplicate_runs: int = 0
    above_limit: int | None = None  # requests refused for the emulator's own rate limit; None: no limit set
    api_calls_per_job: float = 0.0
    seconds: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)
    targets: dict[str, bool] = field(default_factory=dict)

    def line(self) -> str:
        extra = "  ".join(f"{k}={v}" for k, v in self.notes.items())
        above = "-" if self.above_limit is None else str(self.above_limit)
        return (
            f"{self.name:<24}{self.jobs:>6}{self.finished:>9}{self.lost:>6}{self.duplicate_runs:>11}{above:>12}"
            f"{self.api_calls_per_job:>11.2f}{self.seconds:>9.1f}  {extra}"
        )

    def verdicts(self) -> list[str]:
        return [f"{'PASS' if ok else 'FAIL'}  {self.name}: {target}" for target, ok in self.targets.items()]


HEADER = (
    f"{'scenario':<24}{'jobs':>6}{'finished':>9}{'lost':>6}{'dup. runs':>11}{'above limit':>12}"
    f"{'calls/job':>11}{'seconds':>9}"
)


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
        logs.mkdir(parents=True, exist_ok=True)
        self.workers: list[WorkerProcess] = []
        self.started = 0

    def start(self, count: int = 1, concurrency: int = 2) -> None:
        for _ in range(count):
            self.started += 1
            log = self.logs / f"worker-{self.started}.log"
            self.workers.append(WorkerProcess(self.env, log_path=log, concurrency=concurrency).start())

    def revive(self, concurrency: int = 2) -> int:
        """Start a new worker for each one that exited, as a supervisor (compose's `restart:`) does; how many."""
        dead = [worker for worker in self.workers if worker.proc is not None and worker.proc.poll() is not None]
        for worker in dead:
            self.workers.remove(worker)
            worker.stop()
        if dead:
            self.start(len(dead), concurrency=concurrency)
        return len(dead)

    def submit(self, count: int, prefix: str) -> list[str]:
        app, store = create_app(self.settings), open_store(self.settings)
        requests = [
            build_request(workflow=CHAOS_WORKFLOW, file={"text": f"Total: {i}.00"}, job_key=f"{prefix}-{i}")
            for i in range(count)
        ]
        return [enqueue(app, request, store=store, lease_s=self.settings.claim_lease_s).id for request in requests]

    def log_count(self, text: str) -> int:
        """How many times `text` appears in the logs of the workers this pool started."""
        paths = [self.logs / f"worker-{n}.log" for n in range(1, self.started + 1)]
        return sum(path.read_text(errors="replace").count(text) for path in paths if path.exists())

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
            for job_id, raw in zip(pending, client.mget([f"{RESULT_KEY}{j}" for j in pending]), strict=True):
                meta = json.loads(raw) if raw else {}
                if meta.get("status") in {"SUCCESS", "FAILURE"}:
                    done[job_id] = meta
            client.close()
        except redis.RedisError:
            pass  # the server is restarting
        if len(done) == len(job_ids) or time.monotonic() >= deadline:
            return done
        time.sleep(0.5)


def runs_per_job(emulator: EmulatorProcess, job_ids: list[str]) -> Counter[str]:
    """Extend runs per job id (the `extendq:job_id` of their metadata), for the given jobs."""
    wanted = set(job_ids)
    return Counter(
        job_id for run in emulator.runs() if (job_id := str(run["metadata"].get("extendq:job_id", ""))) in wanted
    )


def measure(
    name: str,
    emulator: EmulatorProcess,
    redis_url: str,
    job_ids: list[str],
    started: float,
    timeout_s: float,
    rps: int | None = None,
) -> Figures:
    """Wait (at most `timeout_s`) for the jobs' results, then count them, the runs per job and the refusals."""
    results = wait_results(redis_url, job_ids, timeout_s)
    seconds = time.monotonic() - started
    per_job = runs_per_job(emulator, job_ids)
    finished = sum(1 for meta in results.values() if meta.get("status") == "SUCCESS")
    refused = [] if rps is None else limit_refusals(emulator.requests(), rps)
    failed = Counter(
        str((meta.get("result") or {}).get("exc_type")) for meta in results.values() if meta["status"] == "FAILURE"
    )
    return Figures(
        name=name,
        jobs=len(job_ids),
        finished=finished,
        lost=len(job_ids) - len(results),
        duplicate_runs=sum(count - 1 for count in per_job.values() if count > 1),
        above_limit=None if rps is None else len(refused),
        api_calls_per_job=emulator.stats()["requests_total"] / max(len(job_ids), 1),
        seconds=seconds,
        notes=_outcome_notes(failed, refused),
    )


def _outcome_notes(failed: Counter[str], refused: list[dict[str, Any]]) -> dict[str, Any]:
    """Notes on what went wrong: failures by error type, requests above the limit by route (with the first's time)."""
    notes: dict[str, Any] = {"failed": dict(failed)} if failed else {}
    if refused:
        notes["above limit by route"] = dict(Counter(f"{entry['method']} {entry['route']}" for entry in refused))
        notes["first above limit at"] = datetime.fromtimestamp(float(refused[0]["at"])).isoformat(
            timespec="milliseconds"
        )
    return notes


def judge(figures: Figures, terminal: TerminalResults | None = None, job_ids: list[str] | None = None) -> Figures:
    """Set the promises' targets: every job finished, none lost, no duplicate run, none refused for the limit (when
    the emulator had one) and, given the terminal results published, each job's published exactly once."""
    targets = figures.targets
    targets[f"every job finished ({figures.finished} of {figures.jobs})"] = figures.finished == figures.jobs
    targets[f"{figures.duplicate_runs} duplicate runs (target 0)"] = figures.duplicate_runs == 0
    targets[f"{figures.lost} jobs lost (target 0)"] = figures.lost == 0
    if figures.above_limit is not None:
        targets[f"{figures.above_limit} requests above the limit (target 0)"] = figures.above_limit == 0
    if terminal is not None and job_ids is not None:
        once = sum(1 for job_id in job_ids if terminal.per_job[job_id] == 1)
        text = (
            f"every job's terminal result published exactly once ({once} of {len(job_ids)}, {terminal.twice()} twice)"
        )
        targets[text] = once == len(job_ids)
    return figures


def limit_refusals(log: list[dict[str, Any]], rps: int) -> list[dict[str, Any]]:
    """Requests the emulator answered 429 because of its own requests-per-second limit.

    Its sliding window is replayed over the request log's arrival times (the very times it admitted by), so the
    429s it injects as faults, which the stats count under `rate_limited` too, are told apart from these.
    """
    window: deque[float] = deque()
    refused = []
    for entry in sorted(log, key=lambda entry: float(entry["at"])):
        at = float(entry["at"])
        while window and window[0] <= at - 1.0:
            window.popleft()
        if len(window) < rps:
            window.append(at)
        elif entry["status"] == 429:
            refused.append(entry)
    return refused


def over_limit(times: list[float], limit: int) -> int:
    """Requests that arrived while `limit` others had already arrived in the last second."""
    ordered, over, start = sorted(times), 0, 0
    for index, at in enumerate(ordered):
        while ordered[start] <= at - 1.0:
            start += 1
        over += index - start + 1 > limit
    return over


def job_seconds(results: dict[str, dict[str, Any]], since: float) -> str:
    """Seconds from submission to each job's result, as the median, the 90th percentile and the longest."""
    done = sorted(datetime.fromisoformat(meta["date_done"]).timestamp() - since for meta in results.values())
    if not done:
        return "-"
    return "/".join(f"{done[min(int(len(done) * q), len(done) - 1)]:.0f}" for q in (0.5, 0.9, 1.0))


@contextmanager
def private_redis(appendonly: bool) -> Iterator[RedisServer]:
    """A redis-server of the scenario's own, stopped on leaving."""
    server = RedisServer(appendonly=appendonly).start()
    try:
        yield server
    finally:
        server.stop()


class TerminalResults:
    """Counts every terminal result published per job (the result backend PUBLISHes each write on its key), so a
    job finished twice shows even though its stored result is overwritten."""

    def __init__(self, redis_url: str) -> None:
        self._client = redis.Redis.from_url(redis_url)
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        self.per_job: Counter[str] = Counter()
        self._thread: Any = None

    def __enter__(self) -> TerminalResults:
        self._pubsub.psubscribe(**{f"{RESULT_KEY}*": self._on_message})
        # A server gone (the scenario stopped by a signal) ends the count quietly: what it has is reported as is.
        self._thread = self._pubsub.run_in_thread(
            sleep_time=0.05, daemon=True, exception_handler=lambda _exc, _pubsub, thread: thread.stop()
        )
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.5)  # the last messages in flight
        self._thread.stop()
        self._thread.join(timeout=5)
        self._pubsub.close()
        self._client.close()

    def _on_message(self, message: dict[str, Any]) -> None:
        meta = json.loads(message["data"])
        if meta.get("status") in {"SUCCESS", "FAILURE"}:
            self.per_job[str(meta.get("task_id"))] += 1

    def twice(self) -> int:
        """Jobs whose terminal result was published more than once."""
        return sum(1 for count in self.per_job.values() if count > 1)
