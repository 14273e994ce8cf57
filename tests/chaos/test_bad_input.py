"""Bad input of every kind: refused at enqueue naming the field, or failed as the job's typed error.

Refusals at enqueue go through the producer helpers to a broker no worker reads, so "nothing was queued"
is exact. Everything else reaches a real worker (a Redis database of its own, the served emulator), most
of it by task name as a backend without extendq sends it; each such job gets a typed error after at most
one Extend call, and the worker keeps going.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from celery.result import AsyncResult

from extendq import tasks
from extendq.config.settings import Settings, get_settings
from extendq.errors import AuthFailed, DeadlineExceeded, InputNotFound, InvalidJobRequest, RunRejected
from extendq.tasks.celery import create_app as create_celery
from extendq.tasks.producer import RUN_WORKFLOW, build_request, enqueue
from extendq.worker.models import JOB_ID_KEY, METADATA_MAX_BYTES, USAGE_TAGS_KEY
from extendq.worker.records import joined
from extendq.worker.secrets import new_key, seal
from extendq.worker.store import open_store
from tests.chaos.apps import close_app
from tests.chaos.snapshot import as_text
from tests.e2e.conftest import API_KEY, SECRETS_KEY
from tests.e2e.test_pipeline import wait_for
from tests.support.emulator import EmulatorProcess
from tests.support.worker import WorkerProcess, claim_database, release_database

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
MISSING_PATH = "/nonexistent/extendq-chaos/invoice-404.pdf"
FOLDER_PATH = str(ROOT / "samples" / "invoices")
PLAINTEXT = "PLAINTEXT-SECRET-7c1e9a"
ODD_TAGS = ["team ap!", "cost/centre#7", "ok_tag", "über-Ω", " \t "]
CLEAN_TAGS = ["teamap", "costcentre7", "ok_tag", "ber-"]
PROFILE: dict[str, Any] = {
    "base": "fast",
    "workflows": {"workflow_long": {"name": "A minute", "duration_s": [60.0, 60.0], "outcomes": {"PROCESSED": 1}}},
    "seed": 11,
}
_OUR_CODE = re.compile(r'File "[^"]*/(worker|tasks|config|webhooks)/[^"]*\.py"')


def request(**overrides: Any) -> dict[str, Any]:
    """A good job request, with some fields replaced (None removes one)."""
    return {"workflow": "workflow_processed", "file": {"text": "Invoice #: 1\nTotal: 10.00"}, **overrides}


def metadata_of_size(size: int) -> dict[str, Any]:
    """Metadata whose run metadata (with the job id extendq adds) serialises to exactly `size` bytes."""
    overhead = len(json.dumps({"pad": "", JOB_ID_KEY: "0" * 36}, separators=(",", ":")).encode())
    return {"pad": "x" * (size - overhead)}


URLS = [{"url": f"https://example.com/scans/{i}.pdf"} for i in range(51)]


@dataclass(frozen=True)
class Refused:
    """Bad input that `tasks.submit` (or `submit_many`) refuses before queueing anything."""

    kind: str
    request: dict[str, Any]
    field: str
    via: str = "submit"


ENQUEUE_CASES = [
    Refused("missing workflow", request(workflow=None), "workflow: Field required"),
    Refused("empty workflow id", request(workflow=""), "workflow.id"),
    Refused("empty workflow version", request(workflow={"id": "workflow_x", "version": ""}), "workflow.version"),
    Refused("file url not http(s)", request(file={"url": "ftp://example.com/a.pdf"}), "url: String should match"),
    Refused("empty file id", request(file={"id": ""}), "id: String should have at least 1"),
    Refused("empty file text", request(file={"text": ""}), "text: String should have at least 1"),
    Refused("empty file path", request(file={"path": ""}), "path: String should have at least 1"),
    Refused("file with two forms", request(file={"url": URLS[0]["url"], "text": "x"}), "file: Value error"),
    Refused("both file and package", request(package={"files": URLS[:2]}), "exactly one of file or package"),
    Refused("neither file nor package", request(file=None), "exactly one of file or package"),
    Refused("package of 1 file", request(file=None, package={"files": URLS[:1]}), "package.files"),
    Refused("package of 51 files", request(file=None, package={"files": URLS}), "package.files"),
    Refused("package with raw text", request(file=None, package={"files": [URLS[0], {"text": "x"}]}), "package.files"),
    Refused("duplicate package files", request(file=None, package={"files": [URLS[0], URLS[0]]}), "same file twice"),
    Refused("metadata of 10 KB + 1 byte", request(metadata=metadata_of_size(METADATA_MAX_BYTES + 1)), "10241 bytes"),
    Refused("metadata not an object", request(metadata=["order", 1042]), "metadata: Input should be a valid dict"),
    Refused("NaN in metadata", request(metadata={"total": math.nan}), "metadata: Value error"),
    Refused("a set in metadata", request(metadata={"tags": {"a", "b"}}), "metadata: Value error"),
    Refused("reserved extendq: metadata key", request(metadata={JOB_ID_KEY: "spoofed"}), "'extendq:' are reserved"),
    Refused("usage tags not a list", request(metadata={USAGE_TAGS_KEY: "team-ap"}), USAGE_TAGS_KEY),
    Refused("priority 0", request(priority=0), "priority: Input should be greater"),
    Refused("priority 101", request(priority=101), "priority: Input should be less"),
    Refused("job_key with spaces", request(job_key="order 1042"), "job_key: String should match"),
    Refused("job_key of 201 characters", request(job_key="k" * 201), "job_key: String should have at most"),
    Refused("negative deadline", request(deadline_s=-5), "deadline_s: Input should be greater"),
    Refused("needs_review neither result nor watch", request(needs_review="sometimes"), "needs_review"),
    Refused("secrets without EXTENDQ_SECRETS_KEY", request(secrets={"password": PLAINTEXT}), "EXTENDQ_SECRETS_KEY"),
    Refused("path that does not exist", request(file={"path": MISSING_PATH}), f"input path {MISSING_PATH!r}"),
    Refused("path that is a folder", request(file={"path": FOLDER_PATH}), f"input path {FOLDER_PATH!r}"),
    Refused(
        "one bad file among good ones",
        {"workflow": "workflow_processed", "files": [URLS[0], URLS[1], {"url": "ftp://x/a.pdf"}]},
        "url: String should match",
        via="submit_many",
    ),
    Refused(
        "fewer metadata entries than files",
        {"workflow": "workflow_processed", "files": URLS[:3], "metadata": [{}, {}]},
        "3 files but 2 metadata entries",
        via="submit_many",
    ),
]


@dataclass(frozen=True)
class Failed:
    """Bad input that reaches a worker: the job's typed failure, after at most `max_calls` Extend calls.

    `via`: "by name" (`send_task` with these kwargs), "by name, args" (positional args instead),
    "enqueue" (validated by the producer first: only Extend can tell), "wrong key" (a worker with a bad key).
    `error` None: not an error at all, the job succeeds (the input is cleaned).
    """

    kind: str
    kwargs: dict[str, Any]
    error: type[Exception] | None
    needle: str
    max_calls: int
    via: str = "by name"


WORKER_CASES = [
    Failed("missing workflow", {"file": {"text": "x"}}, InvalidJobRequest, "workflow: Field required", 0),
    Failed("kwargs not matching at all", {"document": "a.pdf", "flow": 3}, InvalidJobRequest, "workflow", 0),
    Failed("args instead of kwargs", {}, InvalidJobRequest, "keyword arguments", 0, via="by name, args"),
    Failed("unknown extra field", request(colour="red"), InvalidJobRequest, "colour", 0),
    Failed("file url not http(s)", request(file={"url": "file:///etc/passwd"}), InvalidJobRequest, "url", 0),
    Failed("NaN in metadata", request(metadata={"total": math.nan}), InvalidJobRequest, "metadata", 0),
    Failed(
        "metadata of 10 KB + 1 byte",
        request(metadata=metadata_of_size(METADATA_MAX_BYTES + 1)),
        InvalidJobRequest,
        "10241 bytes",
        0,
    ),
    Failed("priority 101", request(priority=101), InvalidJobRequest, "priority", 0),
    Failed("plaintext secrets", request(secrets={"password": PLAINTEXT}), InvalidJobRequest, "secrets", 0),
    Failed(
        "secrets sealed with another key",
        request(secrets=seal({"password": "x"}, new_key())),
        InvalidJobRequest,
        "cannot be opened",
        0,
    ),
    Failed("path that does not exist", request(file={"path": MISSING_PATH}), InputNotFound, MISSING_PATH, 0),
    Failed("path that is a folder", request(file={"path": FOLDER_PATH}), InputNotFound, FOLDER_PATH, 0),
    Failed("unknown workflow", request(workflow="workflow_nope"), RunRejected, "404", 1, via="enqueue"),
    Failed("revoked workflow", request(workflow="workflow_revoked"), AuthFailed, "403", 1, via="enqueue"),
    Failed("invalid workflow", request(workflow="workflow_invalid"), RunRejected, "400", 1, via="enqueue"),
    Failed("unknown file id", request(file={"id": "file_does_not_exist"}), RunRejected, "404", 1, via="enqueue"),
    Failed("unauthorised API key", request(), AuthFailed, "401", 1, via="wrong key"),
    # A good request with a deadline too short for its run: create, then cancel at the deadline.
    Failed("expired deadline", request(workflow="workflow_long", deadline_s=0.5), DeadlineExceeded, "deadline", 3),
    Failed("usage tags with odd characters", request(metadata={USAGE_TAGS_KEY: ODD_TAGS}), None, "", 99),
]


@dataclass
class Observed:
    """What one worker case came to."""

    case: Failed
    job_id: str
    error: BaseException | None
    result: dict[str, Any] | None
    calls: int
    runs: list[dict[str, Any]]


class Stack:
    """A worker, its producer and its Redis database, against the module's emulator."""

    def __init__(self, env: dict[str, str], worker: WorkerProcess) -> None:
        self.settings = Settings.from_env(env)
        self.worker = worker
        self.producer: Celery = create_celery(self.settings)
        self.redis = redis.Redis.from_url(self.settings.redis_url, decode_responses=True)
        self.store = open_store(self.settings)

    def close(self) -> None:
        close_app(self.producer)
        self.redis.close()
        self.store.client.close()


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorProcess]:
    with EmulatorProcess(profile=PROFILE, api_keys=(API_KEY,)) as served:
        yield served


@contextmanager
def running_stack(
    redis_server_url: str, emulator: EmulatorProcess, log_path: Path, *, api_key: str = API_KEY
) -> Iterator[Stack]:
    """A worker on a Redis database of its own (claimed here, emptied and given back at the end)."""
    db = claim_database(f"{redis_server_url}/0", owner=f"chaos-bad-input-{uuid.uuid4().hex[:8]}")
    env = {
        "EXTENDQ_REDIS_URL": f"{redis_server_url}/{db}",
        "EXTENDQ_BASE_URL": emulator.url,
        "EXTEND_API_KEY": api_key,
        "EXTENDQ_SECRETS_KEY": SECRETS_KEY,
        "EXTENDQ_RETRY_BACKOFF_S": "0.2",
        "EXTENDQ_RETRY_BACKOFF_MAX_S": "2",
        "EXTENDQ_REQUEST_TIMEOUT_S": "5",
        "EXTENDQ_LANDING_WINDOW_S": "8",
        # No list sweeps: every Extend call in a case is that job's own.
        "EXTENDQ_SWEEP": "off",
    }
    try:
        with WorkerProcess(env, log_path=log_path, concurrency=2) as worker:
            stack = Stack(env, worker)
            try:
                yield stack
            finally:
                stack.close()
    finally:
        release_database(f"{redis_server_url}/0", db)


@pytest.fixture(scope="module")
def stack(
    redis_server_url: str, emulator: EmulatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    with running_stack(redis_server_url, emulator, tmp_path_factory.mktemp("bad-input") / "worker.log") as running:
        yield running


@pytest.fixture(scope="module")
def wrong_key_stack(
    redis_server_url: str, emulator: EmulatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    log_path = tmp_path_factory.mktemp("wrong-key") / "worker.log"
    with running_stack(redis_server_url, emulator, log_path, api_key="sk_test_NOT_THE_RIGHT_KEY") as running:
        yield running


@pytest.fixture(scope="module")
def idle_broker(module_redis_url: str) -> Iterator[tuple[Celery, redis.Redis]]:
    """A producer app on a broker no worker reads, and a client to count what sits in it."""
    client = redis.Redis.from_url(module_redis_url, decode_responses=True)
    app = create_celery(Settings.from_env({"EXTENDQ_REDIS_URL": module_redis_url}))
    yield app, client
    close_app(app)
    client.close()


@pytest.fixture
def producer_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """`tasks.submit` reads this process's settings: here without a secrets key or tenants."""
    for name in ("EXTENDQ_SECRETS_KEY", "EXTENDQ_TENANTS", "EXTENDQ_TENANTS_FILE", "EXTENDQ_TENANT_NAMES"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def observed(stack: Stack, wrong_key_stack: Stack, emulator: EmulatorProcess) -> dict[str, Observed]:
    """Every worker case, one after the other (each with the emulator's counts reset)."""
    return {case.kind: observe(case, stack, wrong_key_stack, emulator) for case in WORKER_CASES}


def refuse(case: Refused, app: Celery) -> None:
    """Hand the case's request to the producer helper it names."""
    if case.via == "submit_many":
        tasks.submit_many(app=app, **case.request)
    else:
        tasks.submit(app=app, **case.request)


def broker_state(client: redis.Redis) -> tuple[int, dict[str, int]]:
    """How many keys the broker database holds, and the length of every list (queue) in it."""
    lists = {key: client.llen(key) for key in client.scan_iter() if client.type(key) == "list"}
    return client.dbsize(), lists


def send(case: Failed, stack: Stack, wrong_key: Stack) -> AsyncResult[Any]:
    if case.via == "by name":
        return stack.producer.send_task(RUN_WORKFLOW, kwargs=case.kwargs)
    if case.via == "by name, args":
        return stack.producer.send_task(RUN_WORKFLOW, args=["workflow_processed", {"text": "Total: 1.00"}])
    target = wrong_key if case.via == "wrong key" else stack
    return enqueue(target.producer, build_request(secrets_key=SECRETS_KEY, **case.kwargs))


def observe(case: Failed, stack: Stack, wrong_key: Stack, emulator: EmulatorProcess) -> Observed:
    emulator.reset()
    job = send(case, stack, wrong_key)
    error: BaseException | None = None
    result: dict[str, Any] | None = None
    try:
        result = job.get(timeout=15)
    except Exception as exc:  # the typed error the job failed with (or a timeout, reported by the tests)
        error = exc
    # Runs the case created settle (a cancelled one ends CANCELLED) before anything is counted.
    settled = {"PROCESSED", "FAILED", "NEEDS_REVIEW", "REJECTED", "CANCELLED"}
    wait_for(lambda: all(run["status"] in settled for run in emulator.runs()), timeout_s=10)
    return Observed(case, job.id, error, result, emulator.stats()["requests_total"], emulator.runs())


def traceback_frames_of_ours(log: str) -> list[str]:
    """Traceback frames in the log that are in extendq's own packages."""
    return re.findall(rf'File "{re.escape(str(ROOT))}/(?:worker|tasks|config|webhooks)/[^"]+", line \d+', log)


def short(error: BaseException | None, limit: int = 88) -> str:
    text = "" if error is None else f"{type(error).__name__}: {error}"
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---- refused at enqueue ------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ENQUEUE_CASES, ids=lambda case: case.kind)
def test_bad_input_is_refused_at_enqueue_naming_the_field(
    case: Refused, idle_broker: tuple[Celery, redis.Redis], producer_env: None
) -> None:
    app, client = idle_broker
    before = broker_state(client)
    with pytest.raises(InvalidJobRequest) as caught:
        refuse(case, app)
    assert case.field in str(caught.value)
    assert PLAINTEXT not in str(caught.value)
    assert broker_state(client) == before  # nothing queued


def test_good_input_on_the_same_broker_is_queued(idle_broker: tuple[Celery, redis.Redis], producer_env: None) -> None:
    # The probe sees what a producer queues: one message per accepted call, in the `extendq` queue.
    app, client = idle_broker
    tasks.submit(app=app, **request(metadata=metadata_of_size(METADATA_MAX_BYTES), priority=100, deadline_s=0.01))
    tasks.submit(app=app, **request(job_key="k" * 200, priority=1))
    tasks.submit_many(app=app, workflow="workflow_processed", files=URLS[:2])
    assert client.llen("extendq") == 3
    client.delete("extendq")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"file": {"url": "ftp://example.com/a.pdf"}}, "file.url:"),
        ({"file": {"url": URLS[0]["url"], "colour": "red"}}, "file.colour:"),
        ({"file": None, "package": {"files": [URLS[0], {"url": "ftp://example.com/b.pdf"}]}}, "package.files.1.url:"),
        ({"file": None, "package": {"files": [URLS[0], {"id": ""}]}}, "package.files.1.id:"),
        ({"file": None, "package": {"files": [URLS[0], {"name": "b.pdf"}]}}, "package.files.1: a package file needs"),
    ],
    ids=["file url", "file extra key", "package url", "package id", "package file of no form"],
)
def test_a_malformed_file_form_is_reported_once_under_its_own_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidJobRequest) as caught:
        build_request(**request(**overrides))
    problems = str(caught.value).removeprefix("invalid job request: ").split("; ")
    assert len(problems) == 1 and problems[0].startswith(field), problems


# ---- failed by the worker ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", [case for case in WORKER_CASES if case.error is not None], ids=lambda case: case.kind)
def test_bad_input_fails_the_job_with_a_typed_error(case: Failed, observed: dict[str, Observed]) -> None:
    seen = observed[case.kind]
    assert case.error is not None
    assert isinstance(seen.error, case.error), f"{case.kind}: {seen.error!r}"
    assert case.needle in str(seen.error)
    assert seen.calls <= case.max_calls, f"{case.kind}: {seen.calls} Extend calls"


def test_expired_deadline_cancels_the_run(observed: dict[str, Observed]) -> None:
    seen = observed["expired deadline"]
    assert isinstance(seen.error, DeadlineExceeded)
    assert [(run["id"], run["status"]) for run in seen.runs] == [(seen.error.run_id, "CANCELLED")]


def test_odd_usage_tags_are_cleaned_not_refused(observed: dict[str, Observed], stack: Stack) -> None:
    seen = observed["usage tags with odd characters"]
    assert seen.error is None and seen.result is not None
    assert seen.result["status"] == "PROCESSED"
    assert seen.result["metadata"][USAGE_TAGS_KEY] == CLEAN_TAGS
    # Cleaned by the worker before Extend saw them: the job record holds the cleaned request.
    stored = json.loads(joined(stack.redis.hgetall(f"extendq:job:{seen.job_id}"), "req") or "{}")
    assert stored["metadata"][USAGE_TAGS_KEY] == CLEAN_TAGS


def test_plaintext_secrets_fail_the_job_and_are_never_stored(observed: dict[str, Observed], stack: Stack) -> None:
    seen = observed["plaintext secrets"]
    assert isinstance(seen.error, InvalidJobRequest) and PLAINTEXT not in str(seen.error)
    assert not stack.redis.exists(f"extendq:job:{seen.job_id}")
    # The broker drops the message once the task is acknowledged; nothing else ever held the secret.
    wait_for(lambda: PLAINTEXT not in as_text(stack.redis), timeout_s=10)
    assert PLAINTEXT not in stack.worker.log_text()


def test_the_worker_survives_every_bad_input(
    observed: dict[str, Observed], stack: Stack, wrong_key_stack: Stack, emulator: EmulatorProcess
) -> None:
    # Given a worker that has been fed every kind of bad input above
    assert stack.worker.proc is not None and stack.worker.proc.poll() is None
    # When a good job comes next, it is processed as usual
    emulator.reset()
    assert enqueue(stack.producer, build_request(**request())).get(timeout=20)["status"] == "PROCESSED"
    # Then nothing crashed in our code, no job was retried, and nothing is left in flight
    stores = {"wrong key": wrong_key_stack.store, "other": stack.store}
    records = {kind: stores.get(seen.case.via, stack.store).load(seen.job_id) for kind, seen in observed.items()}
    attempts = {kind: record.attempts for kind, record in records.items() if record is not None}
    assert len(attempts) >= 8 and set(attempts.values()) == {0}, attempts
    for running in (stack, wrong_key_stack):
        log = running.worker.log_text()
        assert traceback_frames_of_ours(log) == []
        assert re.findall(r"retry \d+ in|Retry in", log) == []
        assert running.store.in_flight() == 0


def test_summary_of_bad_input(
    observed: dict[str, Observed], idle_broker: tuple[Celery, redis.Redis], producer_env: None
) -> None:
    rows: list[tuple[str, str, str]] = []
    for case in ENQUEUE_CASES:
        try:
            refuse(case, idle_broker[0])
            error = "ACCEPTED"
        except InvalidJobRequest as exc:
            error = short(exc)
        rows.append((case.kind, f"enqueue: tasks.{case.via}, nothing queued", error))
    for case in WORKER_CASES:
        seen = observed[case.kind]
        where = f"worker ({case.via}): {seen.calls} Extend call{'s' * (seen.calls != 1)}"
        if seen.error:
            outcome = short(seen.error)
        else:
            outcome = f"none: the job ends {seen.result and seen.result['status']}, tags cleaned"
        rows.append((case.kind, where, outcome))
    width = [max(len(row[i]) for row in rows) for i in range(2)]
    print(f"\n{'kind':<{width[0]}}  {'where':<{width[1]}}  error")
    for kind, where, error in rows:
        print(f"{kind:<{width[0]}}  {where:<{width[1]}}  {error}")
    print(f"{len(rows)} kinds of bad input: {len(ENQUEUE_CASES)} refused at enqueue, {len(WORKER_CASES)} at the worker")
    assert len(rows) >= 30
    assert all(error != "ACCEPTED" for _, _, error in rows)
