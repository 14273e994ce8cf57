"""An error nobody foresaw inside a step ends the job as `Internal`, recorded and published, with no secret in it."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from extendq.config.settings import Settings
from extendq.errors import ApiUnavailable, Internal
from extendq.worker.jobs import JobRunner
from extendq.worker.keys import Keys
from extendq.worker.models import JobRequest, JobState
from extendq.worker.secrets import new_key, seal
from extendq.worker.store import RedisJobStore
from extendq.worker.unforeseen import REDACTED, Redactor, internal_failure, known_secrets
from tests.support.fakes import FakeApi, Results

KEYS = Keys("extendq-unforeseen:")
API_KEY = "sk_test_unforeseen_KEY_4d2e"
SECRETS_KEY = new_key()


class BrokenApi(FakeApi):
    """A fake Extend whose run reads raise `error` (as a bug or an unreadable answer would)."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def get_run(self, run_id: str) -> dict[str, Any]:
        self.calls.append("get")
        raise self.error


def runner_for(client: redis.Redis, api: FakeApi, results: Results) -> JobRunner:
    store = RedisJobStore(client, keys=KEYS, result_ttl_s=60)
    return JobRunner(
        api=api, store=store, publisher=results, secrets_key=SECRETS_KEY, redact=Redactor([API_KEY, SECRETS_KEY])
    )


def test_an_unforeseen_error_ends_the_job_as_internal_with_a_record_and_an_event(redis_client: redis.Redis) -> None:
    # Given a job submitted, whose check raises an error that is not one of ours, naming the API key and a secret
    api = BrokenApi(ValueError(f"cannot read the answer of Bearer {API_KEY} for hunter2-password"))
    results = Results()
    runner = runner_for(redis_client, api, results)
    sealed = seal({"password": "hunter2-password"}, SECRETS_KEY)
    request = JobRequest.parse({"workflow": "workflow_x", "file": {"id": "file_1"}})
    runner.start("job-1", request, secrets=sealed)
    # When its check runs
    runner.advance("job-1")
    # Then the job failed with Internal, carrying the type and the message with both secrets cut out
    error = results.published["job-1"]
    assert isinstance(error, Internal)
    assert error.kind == "internal" and error.error_type == "ValueError"
    assert error.run_id == "workflow_run_default_1"
    assert str(error).startswith("unforeseen error in a step: ValueError: cannot read the answer of Bearer ")
    assert API_KEY not in str(error) and "hunter2-password" not in str(error)
    assert str(error).count(REDACTED) == 2
    # And it rebuilds from its args, as the result backend does
    assert Internal(*error.args).error_type == "ValueError"
    # And the record is finished as a FAILURE, and one terminal event says so
    record = runner.store.load("job-1")
    assert record is not None and record.finished and record.state is JobState.FAILURE
    events = [fields for _, fields in redis_client.xrange(KEYS.events)]
    terminal = [e for e in events if e.get("state") == "FAILURE"]
    assert [e["error"] for e in terminal] == ["internal"]
    assert api.calls == ["create", "get"]


def test_our_retryable_errors_are_still_retried(redis_client: redis.Redis) -> None:
    # Given a job whose check meets a transient failure
    results = Results()
    runner = runner_for(redis_client, BrokenApi(ApiUnavailable("Extend answered 503")), results)
    runner.start("job-1", JobRequest.parse({"workflow": "workflow_x", "file": {"id": "file_1"}}))
    # When its check runs
    runner.advance("job-1")
    # Then it is scheduled again, not failed
    record = runner.store.load("job-1")
    assert record is not None and not record.finished and record.attempts == 1
    assert "job-1" not in results.published
    assert runner.store.due_at("job-1") is not None


def test_a_redis_error_is_not_turned_into_a_failure(redis_client: redis.Redis) -> None:
    # Given a job whose step meets Redis failing
    results = Results()
    runner = runner_for(redis_client, BrokenApi(redis.ConnectionError("Redis went away")), results)
    runner.start("job-1", JobRequest.parse({"workflow": "workflow_x", "file": {"id": "file_1"}}))
    # When its check runs, the error goes up (the job's claim lapses and it comes due again)
    with pytest.raises(redis.ConnectionError):
        runner.advance("job-1")
    # And nothing was published
    assert "job-1" not in results.published


def test_internal_failures_redact_bearer_tokens_and_url_passwords_and_stay_short() -> None:
    error = internal_failure(
        RuntimeError("GET redis://:s3cret-pass@10.0.0.1:6379/0 with Authorization: Bearer abc.def " + "x" * 900),
        job_id="job-1",
        run_id=None,
        redact=Redactor(),
    )
    assert "s3cret-pass" not in str(error) and "abc.def" not in str(error)
    assert len(str(error)) < 600
    assert error.error_type == "RuntimeError" and error.run_id is None


def test_known_secrets_are_every_secret_the_settings_hold() -> None:
    settings = Settings.from_env(
        {
            "EXTEND_API_KEY": API_KEY,
            "EXTENDQ_SECRETS_KEY": SECRETS_KEY,
            "EXTENDQ_WEBHOOK_SECRETS": "wss_one,wss_two",
            "EXTENDQ_REDIS_URL": "redis://:redis-pass@127.0.0.1:6379/0",
        }
    )
    assert sorted(known_secrets(settings)) == sorted([API_KEY, SECRETS_KEY, "wss_one", "wss_two", "redis-pass"])
    assert "redis-pass" not in repr(Redactor(known_secrets(settings)))
