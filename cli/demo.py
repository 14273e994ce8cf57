"""`extendq demo`: the sample documents through a real worker and the local emulator, in one command.

The demo finds a Redis (or starts a private one), starts the emulator and one Celery worker as
child processes, submits every document listed in `samples/expected.json`, follows them with a
progress bar and ends with a table of outcomes. Every child is stopped on the way out, including
on Ctrl-C and SIGTERM. On a shared Redis it claims an empty database (1-15) and uses its own key
prefix, so a user's data is never touched; that database is emptied again at the end.
"""

from __future__ import annotations

import json
import socket
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import redis
from rich.console import Console

from extendq.cli.console import Outcome, ResultReader, Tracked, follow, summary, summary_table
from extendq.cli.manifest import BadInput
from extendq.cli.outcome_table import outcomes_table
from extendq.cli.processes import Child, Supervisor, sigint_blocked, signals_as_exit
from extendq.cli.redis_server import RedisServer, RedisServerError, RedisUnavailable, ensure_redis
from extendq.cli.views import redact
from extendq.config.redis_connection import redis_client
from extendq.config.settings import Settings
from extendq.tasks.celery import QUEUE, create_app
from extendq.tasks.producer import build_request, enqueue
from extendq.worker.keys import Keys
from extendq.worker.models import JobRequest
from extendq.worker.store import RedisJobStore

__all__ = ["DemoOptions", "Sample", "choose_redis", "load_samples", "run"]

KEY_PREFIX = "extendq-demo:"
API_KEY = "sk_demo_extendq_local"
SAMPLES_DIR = Path(__file__).resolve().parents[1] / "samples"
_ROOT = SAMPLES_DIR.parent
_OWNER_KEY = f"{KEY_PREFIX}owner"
_WORKER_READY = "ready."


@dataclass(frozen=True)
class DemoOptions:
    """What the demo command was given."""

    redis_url: str
    samples_dir: Path = SAMPLES_DIR
    profile: str = "default"
    concurrency: int = 4
    timeout_s: float = 120.0


@dataclass(frozen=True)
class Sample:
    """One sample document and the status its run should end in."""

    path: Path
    relative: str
    workflow: str
    expected: str


def load_samples(folder: Path) -> list[Sample]:
    """The documents listed in `<folder>/expected.json`; `BadInput` when it or a listed file is missing."""
    index = folder / "expected.json"
    try:
        listing = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise BadInput(f"cannot read the sample list {index}: {exc}") from None
    samples = [
        Sample(folder / relative, relative, str(spec["workflow"]), str(spec["status"]))
        for relative, spec in sorted(listing.items())
    ]
    missing = [sample.relative for sample in samples if not sample.path.is_file()]
    if missing:
        raise BadInput(f"sample {missing[0]} is listed in {index} but missing")
    return samples


@dataclass
class DemoRedis:
    """The Redis the demo uses, and how to give it back."""

    url: str
    description: str
    private: RedisServer | None = None
    owner: str | None = None

    def release(self) -> None:
        """Stop a private server, or clean the claimed database of a shared one (best effort, never raises).

        The database is emptied only when it still holds nothing but the demo's keys; otherwise
        (somebody else started using it meanwhile) only the keys under the demo's prefix go.
        """
        if self.private is not None:
            self.private.stop()
            return
        client = redis.Redis.from_url(self.url, decode_responses=True)
        try:
            if client.get(_OWNER_KEY) != self.owner:
                return
            keys = list(client.scan_iter(count=1000))
            if all(_is_ours(key) for key in keys):
                client.flushdb()
            elif ours := [key for key in keys if key.startswith(KEY_PREFIX)]:
                client.delete(*ours)
        except (redis.RedisError, OSError):
            pass  # the claim expires within the hour anyway
        finally:
            client.close()


def _is_ours(key: str) -> bool:
    """A key the demo's jobs, its worker's broker (queue, bindings, unacked) or its results would write."""
    queue = key.split("\x06\x16")[0]  # kombu's priority queues are `<name>\x06\x16<priority>`
    return key.startswith((KEY_PREFIX, "celery-task-meta-", "_kombu.", "unacked")) or queue.split(".")[0] == QUEUE


def choose_redis(url: str) -> DemoRedis:
    """The Redis at `url` (on a free database of its own), else a private server.

    Raises:
        RedisUnavailable: nothing answers at `url` and no redis-server can run.
    """
    # A private redis-server shares our process group: keep the terminal's Ctrl-C from stopping it
    # before the worker that uses it.
    with sigint_blocked():
        found, private = ensure_redis(url)
    if private is not None:
        return DemoRedis(found, f"private redis-server (pid {private.pid})", private)
    owner = uuid.uuid4().hex
    db = _claim_free_database(found, owner)
    if db is not None:
        return DemoRedis(_with_db(found, db), f"shared Redis, database {db}", None, owner)
    return _private_instead(found)


def _claim_free_database(url: str, owner: str) -> int | None:
    """The first database 1..15 with no keys and no connections, claimed with a marker key; None if none is."""
    with redis.Redis.from_url(url) as probe:
        busy = _connections_by_db(probe)
    for db in (db for db in range(1, 16) if not busy[db]):
        # The URL's own database number would win over a `db=` argument: put it in the URL.
        client = redis.Redis.from_url(_with_db(url, db), decode_responses=True)
        try:
            if client.set(_OWNER_KEY, owner, nx=True, ex=3600) and client.dbsize() == 1:
                return db
            if client.get(_OWNER_KEY) == owner:
                client.delete(_OWNER_KEY)
        except redis.ResponseError:
            return None  # the server has fewer databases
        finally:
            client.close()
    return None


def _connections_by_db(client: redis.Redis) -> Counter[int]:
    """Other clients' connections per database number: a worker idling on an emptied database still counts.

    Empty when the server refuses CLIENT LIST (then only the key count tells a free database).
    """
    try:
        me = str(client.client_id())
        return Counter(int(entry.get("db", 0)) for entry in client.client_list() if str(entry.get("id")) != me)
    except redis.ResponseError:
        return Counter()


def _private_instead(url: str) -> DemoRedis:
    server = RedisServer()
    try:
        with sigint_blocked():
            server.start()
    except RedisServerError as exc:
        raise RedisUnavailable(f"Redis at {redact(url)} has no free database (1-15) and {exc}") from None
    return DemoRedis(server.url, f"private redis-server (pid {server.pid})", server)


def _with_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    query = "&".join(pair for pair in parts.query.split("&") if pair and not pair.startswith("db="))
    return parts._replace(path=f"/{db}", query=query).geturl()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(environ: Mapping[str, str], *, redis_url: str, emulator_url: str) -> dict[str, str]:
    """The children's environment: the caller's, minus any extendq settings, plus the demo's own."""
    env = {key: value for key, value in environ.items() if not key.upper().startswith(("EXTENDQ_", "EXTEND_API"))}
    env.update(
        EXTENDQ_REDIS_URL=redis_url,
        EXTENDQ_KEY_PREFIX=KEY_PREFIX,
        EXTENDQ_BASE_URL=emulator_url,
        EXTEND_API_KEY=API_KEY,
    )
    return env


def _start_children(supervisor: Supervisor, options: DemoOptions, env: dict[str, str], port: int) -> list[Child]:
    """Start the emulator and the worker side by side, then wait until both are ready."""
    emulator = supervisor.start("emulator", _emulator_argv(options, port), env=env, cwd=_ROOT)
    worker = supervisor.start("worker", _worker_argv(options), env=env, cwd=_ROOT)
    supervisor.wait_for_http(emulator, f"{env['EXTENDQ_BASE_URL']}/_emulator/health", timeout_s=30)
    supervisor.wait_for_log(worker, _WORKER_READY, timeout_s=60)
    return [emulator, worker]


def _emulator_argv(options: DemoOptions, port: int) -> list[str]:
    return [
        sys.executable, "-m", "extendq", "emulator",
        "--host", "127.0.0.1", "--port", str(port), "--profile", options.profile, "--api-key", API_KEY,
    ]  # fmt: skip


def _worker_argv(options: DemoOptions) -> list[str]:
    return [
        sys.executable, "-m", "celery", "-A", "extendq.tasks", "worker",
        "--concurrency", str(options.concurrency), "--loglevel", "INFO",
        "--hostname", f"extendq-demo-{uuid.uuid4().hex[:8]}@%h",
        "--without-heartbeat", "--without-gossip", "--without-mingle",
    ]  # fmt: skip


def _submit(settings: Settings, samples: Sequence[Sample], console: Console, timeout_s: float) -> list[Outcome]:
    """Queue every sample and follow the jobs to their end; the outcomes, in sample order."""
    client = redis_client(settings, decode_responses=True)
    store = RedisJobStore(client, keys=Keys(settings.key_prefix), result_ttl_s=settings.result_ttl_s)
    with closing(client), create_app(settings) as app:
        jobs = [Tracked(enqueue(app, _request(sample)).id, sample.relative, sample.expected) for sample in samples]
        return follow(jobs, ResultReader(app, store), console=console, timeout_s=timeout_s)


def _request(sample: Sample) -> JobRequest:
    return build_request(
        workflow=sample.workflow, file={"path": str(sample.path)}, metadata={"sample": sample.relative}
    )


def api_calls(emulator_url: str) -> int | None:
    """Extend API requests the emulator served (`requests_total` of `GET /_emulator/stats`); None if unknown."""
    try:
        stats = httpx.get(f"{emulator_url}/_emulator/stats", timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return None
    total = stats.get("requests_total") if isinstance(stats, dict) else None
    return total if isinstance(total, int) else None


def run(options: DemoOptions, *, environ: Mapping[str, str], console: Console) -> int:
    """Run the demo; 0 when every document ended in its expected status, 1 otherwise, 130 when interrupted.

    Raises:
        BadInput: the samples folder or the emulator profile is unusable.
        RedisUnavailable: no Redis answers and none can be started.
        ChildFailed: the emulator or the worker did not start.
    """
    samples = load_samples(options.samples_dir)
    _check_profile(options.profile)
    target = choose_redis(options.redis_url)
    try:
        return _run_on(target, samples, options, environ=environ, console=console)
    finally:
        target.release()


def _check_profile(profile: str) -> None:
    """Refuse an unknown emulator profile here, before anything starts, rather than from a dying child."""
    from extendq.emulator.profiles import ProfileError, load_profile

    try:
        load_profile(profile)
    except ProfileError as exc:
        raise BadInput(f"--profile: {exc}") from None


def _run_on(
    target: DemoRedis, samples: Sequence[Sample], options: DemoOptions, *, environ: Mapping[str, str], console: Console
) -> int:
    """The one place the demo's lifecycle is decided: whatever happens once the first child starts,
    every child is stopped before this returns (or raises), Ctrl-C and SIGTERM included.
    """
    port = _free_port()
    env = child_env(environ, redis_url=target.url, emulator_url=f"http://127.0.0.1:{port}")
    with tempfile.TemporaryDirectory(prefix="extendq-demo-") as logs, signals_as_exit():
        supervisor = Supervisor(Path(logs))
        try:
            _announce(console, _start_children(supervisor, options, env, port), env, target)
            console.print(f"Submitting {len(samples)} sample documents (worker concurrency {options.concurrency})…")
            started = time.monotonic()
            outcomes = _submit(Settings.from_env(env), samples, console, options.timeout_s)
            elapsed = time.monotonic() - started
            totals = summary(outcomes, api_calls=api_calls(env["EXTENDQ_BASE_URL"]), elapsed_s=elapsed)
        except KeyboardInterrupt:
            console.print("[yellow]interrupted: stopping the demo's processes[/]")
            return 130
        finally:
            stopped = supervisor.stop_all()
            console.print(f"[dim]stopped child processes: {' '.join(map(str, stopped)) or 'none'}[/]")
    console.print(outcomes_table(outcomes, title="extendq demo: sample documents", width=console.width))
    console.print(summary_table(totals))
    return 0 if totals["unexpected"] == 0 else 1


def _announce(console: Console, children: Sequence[Child], env: Mapping[str, str], target: DemoRedis) -> None:
    """One dim line with the children's pids (tests and curious users use it) and where things run."""
    pids = " ".join(f"{child.name}={child.pid}" for child in children)
    where = f"emulator {env['EXTENDQ_BASE_URL']} · redis {redact(target.url)} ({target.description})"
    console.print(f"[dim]children: {pids} · {where}[/]", highlight=False)
