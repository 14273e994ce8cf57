"""The `extendq` console script: parses options and calls the rest.

Every command reads its settings afresh from the environment (`Settings.from_env`), so one process
can run several commands with different environments (as the tests do). Problems a user can fix
are one line on stderr and an exit code from `Exit`; never a traceback. A command imports the tasks,
the emulator or the receiver when it runs, not at start: `extendq --help` does not pay for all of them.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from enum import IntEnum
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NamedTuple, NoReturn

import kombu.exceptions
import redis
import typer
from redis.backoff import NoBackoff
from redis.retry import Retry
from rich.console import Console

from extendq.cli.manifest import BadInput, Entry, entries_for, parse_metadata
from extendq.cli.redis_server import RedisUnavailable
from extendq.cli.states import FINISHED, UnknownJob
from extendq.cli.views import emit_json, redact, show_cancelled, show_result
from extendq.config.redis_connection import is_redis_url, redis_client
from extendq.config.settings import Settings
from extendq.config.tenants import known_tenants
from extendq.errors import ConfigError, ExtendqError, InvalidJobRequest
from extendq.worker.models import JobState

if TYPE_CHECKING:
    from celery import Celery

    from extendq.cli.console import Tracked
    from extendq.worker.models import JobRequest
    from extendq.worker.store import RedisJobStore


class Exit(IntEnum):
    """The exit codes of every command (listed in the `--help` epilog)."""

    OK = 0
    JOB_FAILED = 1
    BAD_INPUT = 2
    REDIS_UNREACHABLE = 3
    TIMED_OUT = 4
    INTERRUPTED = 130


EPILOG = (
    "Exit codes: 0 ok · 1 a job failed or its run did not end PROCESSED · 2 bad input or usage (an unknown job, "
    "option, profile or setting) · "
    "3 Redis unreachable · 4 timed out waiting (the job is still in flight) · 130 interrupted. "
    "Settings come from EXTENDQ_* environment variables (EXTENDQ_REDIS_URL, EXTEND_API_KEY, ...)."
)

app = typer.Typer(help="Run Extend workflows at scale from Celery workers.", epilog=EPILOG, no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
_POLL_S = 0.2


def _show_version(wanted: bool) -> None:
    if wanted:
        from extendq import __version__

        typer.echo(f"extendq {__version__}")
        raise typer.Exit(Exit.OK)


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Run Extend workflows at scale from Celery workers."""


@app.command(epilog=EPILOG)
def emulator(
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8765, help="Port to bind."),
    profile: str = typer.Option("default", help="Built-in profile name, or a YAML/JSON file."),
    webhook_url: str | None = typer.Option(None, help="Where to deliver workflow_run.* webhooks."),
    webhook_secret: str | None = typer.Option(None, help="Signing secret (wss_...) for webhooks."),
    api_key: list[str] = typer.Option([], help="Accept only these API keys (repeatable); any key when unset."),  # noqa: B008
) -> None:
    """Serve the local Extend API emulator."""
    from extendq.emulator.server import serve

    try:
        serve(
            host=host,
            port=port,
            profile=profile,
            webhook_url=webhook_url,
            webhook_secret=webhook_secret,
            api_keys=api_key,
        )
    except SystemExit as exc:
        if isinstance(exc.code, str):  # the emulator refused its options, in one sentence
            _fail(exc.code.removeprefix("extendq emulator: "), Exit.BAD_INPUT)
        raise


# Everything after `worker`/`beat` is Celery's, `--help` included: ours shows Celery's options too.
_PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


@app.command(context_settings=_PASSTHROUGH, add_help_option=False, epilog=EPILOG)
def worker(ctx: typer.Context) -> None:
    """Start a Celery worker (any `celery worker` option is passed through); it runs the check dispatcher."""
    _run_daemon("worker", ctx.args)


@app.command(context_settings=_PASSTHROUGH, add_help_option=False, epilog=EPILOG)
def beat(ctx: typer.Context) -> None:
    """Start Celery beat for the periodic jobs (any `celery beat` option is passed through)."""
    _run_daemon("beat", ctx.args)


def _run_daemon(daemon: Literal["worker", "beat"], args: list[str]) -> None:
    """`-h`/`--help` prints Celery's help under ours; a bad setting or option is one line and exit 2."""
    from click import UsageError

    from extendq.cli.daemons import HELP_FLAGS, celery_help, run_celery

    if HELP_FLAGS.intersection(args):
        typer.echo(celery_help(daemon, epilog=EPILOG))
        raise typer.Exit(Exit.OK)
    with _guard():
        try:
            code = run_celery(daemon, args)
        except UsageError as exc:
            typer.echo(f"Error: {_first_line(exc.format_message())}", err=True)
            typer.echo(f"Try 'extendq {daemon} --help' for Celery's {daemon} options.", err=True)
            raise typer.Exit(Exit.BAD_INPUT) from None
    raise typer.Exit(code)


@app.command(epilog=EPILOG)
def webhooks(
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8000, help="Port to bind."),
    processes: int = typer.Option(1, help="uvicorn worker processes."),
) -> None:
    """Serve the webhook receiver (`POST /webhooks/extend`); secrets from EXTENDQ_WEBHOOK_SECRETS."""
    from extendq.webhooks.server import serve

    with _guard():  # a bad EXTENDQ_* setting is one line and exit 2 before the server starts
        serve(host=host, port=port, workers=processes)


@app.command(epilog=EPILOG)
def dashboard(
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8790, help="Port to bind."),
) -> None:
    """Serve the read-only dashboard (`GET /`: the pool's overview; `GET /api/overview`: the same as JSON)."""
    from extendq.dashboard.server import serve

    with _guard():  # a bad EXTENDQ_* setting is one line and exit 2 before the server starts
        serve(host=host, port=port)


@app.command(epilog=EPILOG)
def demo(
    concurrency: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 4,
    profile: Annotated[str, typer.Option(help="Emulator profile.")] = "default",
    samples: Annotated[Path | None, typer.Option(help="Folder with expected.json and the documents.")] = None,
    timeout: Annotated[float, typer.Option(min=1, help="Give up waiting after S seconds.")] = 120.0,
) -> None:
    """Run every sample document through the emulator and a worker, then show what came back.

    Uses the Redis at EXTENDQ_REDIS_URL (on an empty database of its own) or starts a private one.
    """
    from extendq.cli import demo as demo_module
    from extendq.cli.processes import ChildFailed

    with _guard() as session:
        options = demo_module.DemoOptions(
            redis_url=session.settings.redis_url,
            samples_dir=samples or demo_module.SAMPLES_DIR,
            profile=profile,
            concurrency=concurrency,
            timeout_s=timeout,
        )
        try:
            code = demo_module.run(options, environ=os.environ, console=_console())
        except ChildFailed as exc:
            _fail(str(exc), Exit.JOB_FAILED)
    raise typer.Exit(code)


class _Session:
    """What one command invocation talks to: settings from the environment, then Celery and Redis lazily."""

    def __init__(self) -> None:
        self.settings = Settings.from_env(os.environ)
        self._app: Celery | None = None
        self._store: RedisJobStore | None = None

    def check_redis(self) -> None:
        """Raise `RedisUnavailable` naming the URL (password hidden) when Redis does not answer."""
        for url in dict.fromkeys([self.settings.redis_url, self.settings.broker, self.settings.result_backend]):
            if is_redis_url(url) and not _answers(self.settings, url):
                raise RedisUnavailable(f"Redis unreachable at {redact(url)}")

    @property
    def app(self) -> Celery:
        if self._app is None:
            from extendq.tasks.celery import create_app

            self._app = create_app(self.settings)
        return self._app

    @property
    def store(self) -> RedisJobStore:
        if self._store is None:
            from extendq.tasks.base import store_for

            self._store = store_for(self.settings)
        return self._store

    def close(self) -> None:
        if self._app is not None:
            self._app.close()


def _answers(settings: Settings, url: str, timeout_s: float = 2.0) -> bool:
    """Whether the Redis of `url` answers PING within `timeout_s`, connected as the settings say (TLS, password,
    Sentinels), with no retry."""
    probe = {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s, "retry": Retry(NoBackoff(), 0)}
    with redis_client(settings, url, **probe) as client:
        try:
            return bool(client.ping())
        except (redis.RedisError, OSError):
            return False


@contextmanager
def _guard() -> Iterator[_Session]:
    """Run a command body: known problems become one line on stderr and their exit code."""
    session: _Session | None = None
    try:
        session = _Session()
        yield session
    except (BadInput, InvalidJobRequest, ConfigError) as exc:
        _fail(str(exc), Exit.BAD_INPUT)
    except RedisUnavailable as exc:
        _fail(str(exc), Exit.REDIS_UNREACHABLE)
    except (redis.ConnectionError, redis.TimeoutError, kombu.exceptions.OperationalError) as exc:
        where = redact(session.settings.redis_url) if session is not None else "the configured URL"
        _fail(f"Redis unreachable at {where}: {_first_line(exc)}", Exit.REDIS_UNREACHABLE)
    except KeyboardInterrupt:
        raise typer.Exit(Exit.INTERRUPTED) from None
    finally:
        if session is not None:
            session.close()


def _fail(message: str, code: Exit) -> NoReturn:
    typer.echo(f"Error: {_first_line(message)}", err=True)
    raise typer.Exit(code)


def _first_line(value: object) -> str:
    lines = str(value).strip().splitlines()
    return lines[0] if lines else type(value).__name__


def _console(*, stderr: bool = False) -> Console:
    console = Console(stderr=stderr)
    if not console.is_terminal:
        console.width = 200  # pipes and logs: one row per job rather than folded cells
    return console


@app.command(epilog=EPILOG)
def submit(
    inputs: Annotated[list[str] | None, typer.Argument(metavar="PATH|URL...", help="Files, folders or URLs.")] = None,
    workflow: Annotated[str | None, typer.Option("--workflow", "-w", help="Workflow id (wf_...).")] = None,
    metadata: Annotated[str | None, typer.Option("--metadata", "-m", help="Run metadata, a JSON object.")] = None,
    manifest: Annotated[Path | None, typer.Option(help="CSV or JSONL with columns path,workflow,metadata.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the jobs to their end and show a table.")] = False,
    timeout: Annotated[float | None, typer.Option(min=0, help="With --wait: stop waiting after S seconds.")] = None,
    tenant: Annotated[str | None, typer.Option(help="The Extend account to run on (EXTENDQ_TENANTS).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Queue one job per file (folders expand to their files, URLs are fetched by Extend) and print job ids.

    Example: extendq submit samples/invoices --workflow workflow_invoice --metadata '{"batch": "b1"}' --wait
    """
    from extendq.cli.console import Tracked

    with _guard() as session:
        entries = entries_for(inputs or [], workflow=workflow, metadata=parse_metadata(metadata), manifest=manifest)
        key = session.settings.secrets_key
        account = _Account(tenant, known_tenants(session.settings))
        requests = [_request(entry, key.get_secret_value() if key else None, account) for entry in entries]
        session.check_redis()
        ids = _enqueue(session, requests)
        jobs = [Tracked(job_id, entry.label) for job_id, entry in zip(ids, entries, strict=True)]
        if not wait:
            _print_submitted(jobs, entries, as_json)
            return
        if not as_json:  # the ids first: a wait cut short has still told which jobs to ask about
            typer.echo("\n".join(f"{job.job_id}  {job.label}" for job in jobs))
        code = _wait_and_show(session, jobs, timeout, as_json)
    raise typer.Exit(code)


def _enqueue(session: _Session, requests: Sequence[JobRequest]) -> list[str]:
    """Job ids for the requests, in order: files for one workflow go in batches, a lone file on its own.

    A lone job is recorded before its message is sent, as `extendq.submit` does; a batch's jobs are recorded
    by the batch task, and until then `status` finds them in the broker's queue.
    """
    from extendq.tasks.bulk import enqueue_many
    from extendq.tasks.producer import enqueue

    app = session.app
    ids: dict[int, str] = {}
    by_workflow: dict[Any, list[int]] = {}
    for index, request in enumerate(requests):
        by_workflow.setdefault(request.workflow, []).append(index)
    for indexes in by_workflow.values():
        if len(indexes) == 1:
            lone = requests[indexes[0]]
            ids[indexes[0]] = enqueue(app, lone, store=session.store, lease_s=session.settings.claim_lease_s).id
            continue
        for index, result in zip(indexes, enqueue_many(app, [requests[i] for i in indexes]), strict=True):
            ids[index] = result.id
    return [ids[index] for index in range(len(requests))]


class _Account(NamedTuple):
    """The tenant a submit names (None: the default account) and the tenants the producer knows."""

    tenant: str | None
    known: frozenset[str]


def _request(entry: Entry, secrets_key: str | None, account: _Account) -> JobRequest:
    """The entry's validated job request; `InvalidJobRequest` names the entry."""
    from extendq.tasks.producer import build_request

    try:
        return build_request(
            workflow=entry.workflow or "",
            file=entry.file,
            metadata=entry.metadata,
            secrets_key=secrets_key,
            tenant=account.tenant,
            tenants=account.known,
        )
    except InvalidJobRequest as exc:
        raise InvalidJobRequest(f"{entry.label}: {exc}") from None


def _print_submitted(jobs: Sequence[Tracked], entries: Sequence[Entry], as_json: bool) -> None:
    if as_json:
        pairs = zip(jobs, entries, strict=True)
        emit_json([{"job_id": job.job_id, "input": entry.label, "workflow": entry.workflow} for job, entry in pairs])
    else:
        typer.echo("\n".join(job.job_id for job in jobs))


def _wait_and_show(session: _Session, jobs: Sequence[Tracked], timeout_s: float | None, as_json: bool) -> Exit:
    from extendq.cli.console import ResultReader, follow, summary, summary_table
    from extendq.cli.outcome_table import outcomes_table

    started = time.monotonic()
    reader = ResultReader(session.app, session.store)
    outcomes = follow(jobs, reader, console=_console(stderr=True), timeout_s=timeout_s)
    totals = summary(outcomes, elapsed_s=time.monotonic() - started)
    if as_json:
        emit_json({"jobs": [outcome.to_json() for outcome in outcomes], "summary": totals})
    else:
        console = _console()
        console.print(outcomes_table(outcomes, width=console.width))
        console.print(summary_table(totals))
    if not all(outcome.done for outcome in outcomes):
        return Exit.TIMED_OUT
    return Exit.OK if all(outcome.ok for outcome in outcomes) else Exit.JOB_FAILED


# ---- status, result, cancel, watch ------------------------------------------------------------------


@app.command(epilog=EPILOG)
def status(
    jobs: Annotated[list[str], typer.Argument(metavar="JOB...", help="Job ids.")],
    as_json: JsonOption = False,
) -> None:
    """Where jobs stand: job state, run id, run status, checks so far.

    Exit 1 when one failed or its run did not end PROCESSED; 2 when one is unknown (the others are shown).
    """
    from extendq.cli.views import ended_badly, status_table

    with _guard() as session:
        session.check_redis()
        found = {job_id: _status_row(session, job_id) for job_id in jobs}
        rows = [row for row in found.values() if row is not None]
        if rows and as_json:
            emit_json(rows)
        elif rows:
            _console().print(status_table(rows))
        for job_id in (job_id for job_id, row in found.items() if row is None):
            typer.echo(f"Error: {UnknownJob(job_id)}", err=True)
    if len(rows) < len(found):
        raise typer.Exit(Exit.BAD_INPUT)
    raise typer.Exit(Exit.JOB_FAILED if any(ended_badly(row) for row in rows) else Exit.OK)


def _status_row(session: _Session, job_id: str) -> dict[str, Any] | None:
    """The job's `status` row; one of a job still waiting in the broker; None for an unknown job."""
    from extendq.cli.views import job_status, queued_status

    row = job_status(session.app, session.store, job_id)
    if row is None and _waiting(session, job_id):
        return job_status(session.app, session.store, job_id) or queued_status(job_id)
    return row


def _waiting(session: _Session, job_id: str) -> bool:
    from extendq.tasks.waiting import waiting_in_broker

    return waiting_in_broker(session.app, job_id)


def _state_of(session: _Session, job_id: str) -> JobState:
    """The job's state; `UnknownJob` when no record, no result and no queued message has its id."""
    from extendq.cli.states import job_state, known

    recorded = session.store.load(job_id)
    state = job_state(session.app.AsyncResult(job_id).state, recorded.state if recorded else None)
    if state is not None:
        return state
    if not known(job_id, recorded=lambda job: session.store.load(job) is not None, waiting=partial(_waiting, session)):
        raise UnknownJob(job_id)
    return JobState.QUEUED


@app.command(epilog=EPILOG)
def result(
    job: Annotated[str, typer.Argument(metavar="JOB", help="Job id.")],
    timeout: Annotated[
        float | None, typer.Option(min=0, help="Wait at most S seconds (default: until it ends).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Wait for a job and show its terminal Extend run (--json: the run exactly as the API returned it)."""
    with _guard() as session:
        session.check_redis()
        _state_of(session, job)
        outcome = _await(session.app.AsyncResult(job), timeout)
        state = _state_of(session, job)
        verdict = show_result(job, outcome, state=state, as_json=as_json, console=_console())
    raise typer.Exit(Exit.TIMED_OUT if verdict is None else Exit.OK if verdict else Exit.JOB_FAILED)


def _await(outcome: Any, timeout_s: float | None) -> Any:
    """Poll until the result is ready or `timeout_s` passed; polling keeps no subscription open."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while not outcome.ready() and (deadline is None or time.monotonic() < deadline):
        time.sleep(_POLL_S)
    return outcome


@app.command(epilog=EPILOG)
def cancel(
    jobs: Annotated[list[str], typer.Argument(metavar="JOB...", help="Job ids.")],
    timeout: Annotated[float, typer.Option(min=0, help="Wait at most S seconds for the workers' answer.")] = 10.0,
    as_json: JsonOption = False,
) -> None:
    """Cancel jobs: their Extend runs, or the jobs themselves if not submitted yet.

    Exit 1 when one had ended; 2 when one is unknown (then none is cancelled).
    """
    from extendq.tasks import cancel as send_cancel

    with _guard() as session:
        session.check_redis()
        for job_id in jobs:
            _state_of(session, job_id)
        sent = {job_id: send_cancel(job_id, app=session.app) for job_id in jobs}
        deadline = time.monotonic() + timeout
        while not all(answer.ready() for answer in sent.values()) and time.monotonic() < deadline:
            time.sleep(_POLL_S)
        answers = {job_id: _cancel_answer(answer) for job_id, answer in sent.items()}
    show_cancelled(answers, timeout_s=timeout, as_json=as_json)
    values = set(answers.values())
    raise typer.Exit(Exit.JOB_FAILED if False in values else Exit.TIMED_OUT if None in values else Exit.OK)


def _cancel_answer(answer: Any) -> bool | None:
    return bool(answer.result) if answer.state == "SUCCESS" else None


@app.command(epilog=EPILOG)
def watch(
    as_json: Annotated[bool, typer.Option("--json", help="Print each event as a JSON line.")] = False,
    count: Annotated[int | None, typer.Option(min=1, help="Stop after N jobs have finished.")] = None,
    timeout: Annotated[
        float | None, typer.Option(min=0, help="Stop after S seconds (exit 4 if --count not reached).")
    ] = None,
) -> None:
    """Live view of jobs in flight and the last finished, from the events stream (Ctrl-C to stop)."""
    from extendq.cli.views import EventFeed

    with _guard() as session:
        session.check_redis()
        client = redis_client(session.settings, decode_responses=True)
        try:
            feed = EventFeed(client, session.store.keys)
            finished = feed.run(
                console=None if as_json else _console(), emit=_emit_line, count=count, timeout_s=timeout
            )
        finally:
            client.close()
    raise typer.Exit(Exit.TIMED_OUT if count is not None and finished < count else Exit.OK)


def _emit_line(event: dict[str, Any]) -> None:
    typer.echo(json.dumps(event, separators=(",", ":")))


@app.command(epilog=EPILOG)
def usage(
    days: Annotated[int | None, typer.Option(min=1, help="Only the last N days.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Credits of finished runs per UTC day, by workflow, by tenant and by usage tag, counted up to this moment.

    Runs that finished since beat's last roll-up are rolled up first (each run is counted once, whoever adds it).
    """
    from extendq.cli.views import usage_table
    from extendq.worker.usage import UsageLedger

    with _guard() as session:
        session.check_redis()
        ledger = UsageLedger(client=session.store.client, keys=session.store.keys)
        ledger.roll_up(limit=_ROLL_UP_LIMIT)
        report = ledger.report(days=days)
        if as_json:
            emit_json(report)
        else:
            _console().print(usage_table(report))


# Runs rolled up by one `usage` before it reports; any left over are counted as pending in the report.
_ROLL_UP_LIMIT = 100_000


# ---- list, retry: finished jobs and replays -----------------------------------------------------------------


@app.command(name="list", epilog=EPILOG)
def list_jobs(
    status: Annotated[
        list[str] | None,
        typer.Option(
            "--status",
            "-s",
            help="A job state (success, failure), a run status (processed, failed, needs_review, rejected, "
            "cancelled), or failed: FAILURE or a FAILED run (repeatable).",
        ),
    ] = None,
    since: Annotated[str, typer.Option(help="Finished within this long: 90s, 30m, 1h, 2d.")] = "1h",
    limit: Annotated[int, typer.Option(min=1, help="At most N jobs, newest first.")] = 100,
    tenant: Annotated[list[str] | None, typer.Option(help="Only jobs of this tenant's account (repeatable).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Finished jobs, newest first, by how they ended (kept as long as results are)."""
    from extendq.cli.states import list_filters
    from extendq.cli.views import finished_table
    from extendq.worker.history import finished_jobs, parse_age

    with _guard() as session:
        age = parse_age(since)
        wanted = list_filters(status or ())
        session.check_redis()
        rows = finished_jobs(session.store, since=time.time() - age, statuses=wanted, limit=limit, tenants=tenant or ())
        if as_json:
            emit_json([{key: value for key, value in row.items() if key != "outcome"} for row in rows])
        else:
            _console().print(finished_table(rows))


@app.command(epilog=EPILOG)
def retry(
    jobs: Annotated[list[str], typer.Argument(metavar="JOB...", help="Finished jobs that did not end PROCESSED.")],
    job_key: Annotated[str | None, typer.Option(help="Job key of the new job (one JOB only); none by default.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Run finished jobs again as new jobs with the same requests; prints each new job id (`replay_of` links them)."""
    from extendq.tasks.replay import replay

    with _guard() as session:
        if job_key is not None and len(jobs) > 1:
            raise BadInput("--job-key names one job: give one JOB with it")
        session.check_redis()
        for old in jobs:
            if _state_of(session, old) not in FINISHED:
                raise BadInput(f"job {old} is still in flight: cancel it first, or wait for its end")
        replays = [(old, replay(old, job_key=job_key, app=session.app, store=session.store).id) for old in jobs]
        if as_json:
            emit_json([{"job_id": new, "replay_of": old} for old, new in replays])
        else:
            typer.echo("\n".join(f"{old} -> {new}" for old, new in replays))


# ---- recover: after Redis lost its data ----------------------------------------------------------------------


@app.command(epilog=EPILOG)
def recover(
    since: Annotated[str, typer.Option(help="Runs created within this long: 90s, 30m, 1h, 2d.")] = "24h",
    as_json: JsonOption = False,
) -> None:
    """Adopt the recent Extend runs whose jobs Redis lost: each job gets its result again under its own id.

    Creates no run. Jobs whose run was never created cannot be recovered (their request lived only in Redis).
    """
    from extendq.tasks.base import build_runner
    from extendq.worker.history import parse_age
    from extendq.worker.recover import Recovery

    with _guard() as session:
        window_s = parse_age(since)
        session.check_redis()
        runner = build_runner(session.settings, session.app)
        try:
            counts = Recovery.for_runner(runner).run(since=time.time() - window_s)
        except ExtendqError as exc:
            _fail(f"recovery stopped, run it again: {exc}", Exit.JOB_FAILED)
        finally:
            runner.api.close()
        if as_json:
            emit_json({"since_s": window_s, **counts})
        else:
            typer.echo(_recovered_lines(counts, since))


def _recovered_lines(counts: dict[str, int], since: str) -> str:
    return "\n".join(
        [
            f"{counts['listed']} runs created in the last {since}: {counts['adopted']} adopted "
            f"(workers publish their results under their job ids), {counts['known']} already known, "
            f"{counts['foreign']} not extendq's",
            *(f"{name}: {value}" for name, value in counts.items() if name not in _RECOVER_SHOWN),
            "Jobs that had no run yet when Redis lost its data cannot be recovered: enqueue them again.",
        ]
    )


_RECOVER_SHOWN = frozenset({"listed", "adopted", "known", "foreign"})


# ---- info: the pool at a glance ---------------------------------------------------------------------------


@app.command(epilog=EPILOG)
def info(
    tenant: Annotated[
        str | None, typer.Option(help="One tenant's view: its rate limit, sweeps and jobs in flight.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """The pool at a glance: workers, queues, messages in a wrong queue, jobs in flight, due checks, rate limits
    (each tenant's too)."""
    from extendq.cli.info import gather, lines

    with _guard() as session:
        session.check_redis()
        report = gather(session.settings, session.app, session.store, tenant=tenant)
        if as_json:
            emit_json(report)
        else:
            typer.echo("\n".join(lines(report)))


def main() -> None:
    """Entry point of the `extendq` console script."""
    app()
