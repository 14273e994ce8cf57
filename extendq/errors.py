"""Every error extendq raises, as one tree.

```
ExtendqError                     base of everything extendq raises (`WorkerError`: its name before 0.2)
├── ConfigError                  a setting is missing or wrong: fatal at startup
├── InvalidJobRequest            bad input, refused at enqueue (or when a task message is malformed)
├── RetryableError               transient: the job is retried later, from the schedule
│   ├── ApiUnavailable           transport errors, timeouts, 408, 409, 5xx
│   ├── RateLimited              429, carries retry_after_s
│   │   └── Throttled            our own shared limit: wait for the reserved token
│   ├── StepOverran              a step ran past the task's time limit (a huge upload): spends the budget
│   └── NotReplicated            a job's record reached no Redis replica in time: its create waits
├── JobFailed                    no terminal run can be had: published as the job's failure
│   ├── RunRejected              400/404/422 from the API
│   ├── AuthFailed               401/402/403 (bad key, no credits, wrong workspace)
│   ├── InputNotFound            a local `path` input that does not exist or is not a file
│   ├── DeadlineExceeded         the job's deadline passed; its run was cancelled
│   ├── JobCancelled             cancelled before a run was submitted
│   ├── RetryBudgetExhausted     transient failures outlasted the retry budget
│   └── Internal                 a step raised an error nobody foresaw (a bug, an answer it cannot read)
└── ResultMismatch               a job's run does not have the shape asked for (`typed_run`)
    └── ExtractionMismatch       no extraction output, or it does not fit your model (`extraction`)
```

Errors travel through Celery's JSON result backend as (type, args, module), and are rebuilt with
`cls(*args)`: every constructor takes plain positional values and `args` holds exactly them.
Messages name the cause and never hold a secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ExtendqError(Exception):
    """Base of every error extendq raises."""


WorkerError = ExtendqError  # the base's name before 0.2


class ConfigError(ExtendqError):
    """A setting is missing or invalid; raised at startup."""


class InvalidJobRequest(ExtendqError, ValueError):
    """A job request is malformed; raised at enqueue time, before anything is queued."""


class RetryableError(ExtendqError):
    """A transient failure: the job is tried again later with backoff."""

    # False only when the request surely never reached Extend (refused connection, 429).
    may_have_landed: bool = True

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message, retry_after_s)
        self.message = message
        self.retry_after_s = retry_after_s

    def __str__(self) -> str:
        return self.message


class ApiUnavailable(RetryableError):
    """The Extend API could not be reached or answered 408/409/5xx."""


class RateLimited(RetryableError):
    """The Extend API answered 429; `retry_after_s` is how long to wait, when it said."""

    may_have_landed = False


class Throttled(RateLimited):
    """extendq's own shared rate limit has no token now; `retry_after_s` is when the reserved one is due."""

    def __init__(
        self, message: str, retry_after_s: float | None = None, reserved: bool = True, due_at: float | None = None
    ) -> None:
        super().__init__(message, retry_after_s)
        self.reserved = reserved
        self.due_at = due_at  # when known: the moment (unix s) the job may call again


class StepOverran(RetryableError):
    """A step was stopped at the task's (soft) time limit; it counts against the job's retry budget, so a step
    that always takes too long ends the job instead of starting over for ever."""


class NotReplicated(RetryableError):
    """The primary has replicas and none acknowledged the job's record in time: its run is not created yet (a failover
    could orphan it), the create waits for a later step. Waiting spends no retry budget."""

    may_have_landed = False


class JobFailed(ExtendqError):
    """No terminal run could be had for the job; this is its published failure."""

    kind = "failed"

    def __init__(self, message: str, run_id: str | None = None, status_code: int | None = None) -> None:
        super().__init__(message, run_id, status_code)
        self.message = message
        self.run_id = run_id
        self.status_code = status_code

    def __str__(self) -> str:
        return f"{self.message} (run {self.run_id})" if self.run_id else self.message


class RunRejected(JobFailed):
    """The API refused the request (400/404/422)."""

    kind = "rejected"


class AuthFailed(JobFailed):
    """The API refused the credentials, the payment or the workspace (401/402/403)."""

    kind = "auth"


class InputNotFound(JobFailed):
    """A local `path` input does not exist or is not a readable file."""

    kind = "input_not_found"


class DeadlineExceeded(JobFailed):
    """The job's deadline passed before its run ended; the run was cancelled."""

    kind = "deadline"


class JobCancelled(JobFailed):
    """The job was cancelled before an Extend run was submitted."""

    kind = "cancelled"


class RetryBudgetExhausted(JobFailed):
    """Transient failures went on for longer than the retry budget allows."""

    kind = "retry_budget"


class Internal(JobFailed):
    """A step raised an error extendq did not foresee: the job ends with its type and (redacted) message.

    `error_type` is the unforeseen exception's class name, e.g. `JSONDecodeError`.
    """

    kind = "internal"

    def __init__(
        self, message: str, run_id: str | None = None, status_code: int | None = None, error_type: str = ""
    ) -> None:
        super().__init__(message, run_id, status_code)
        self.args = (message, run_id, status_code, error_type)
        self.error_type = error_type


class ResultMismatch(ExtendqError, ValueError):
    """A job's run does not have the shape asked for; `run` is the raw run as the API returned it."""

    def __init__(self, message: str, *, run: Mapping[str, Any], errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.run = dict(run)
        self.errors = errors or []


class ExtractionMismatch(ResultMismatch):
    """The run has no extraction output to read, or it does not validate into the model given."""

    def __init__(
        self,
        message: str,
        *,
        run: Mapping[str, Any],
        step: str | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message, run=run, errors=errors)
        self.step = step


FAILURE_KINDS: dict[str, type[JobFailed]] = {
    cls.kind: cls
    for cls in (
        JobFailed,
        RunRejected,
        AuthFailed,
        InputNotFound,
        DeadlineExceeded,
        JobCancelled,
        RetryBudgetExhausted,
        Internal,
    )
}


__all__ = [
    "ApiUnavailable",
    "AuthFailed",
    "ConfigError",
    "DeadlineExceeded",
    "ExtendqError",
    "ExtractionMismatch",
    "FAILURE_KINDS",
    "InputNotFound",
    "Internal",
    "InvalidJobRequest",
    "JobCancelled",
    "JobFailed",
    "NotReplicated",
    "RateLimited",
    "ResultMismatch",
    "StepOverran",
    "RetryBudgetExhausted",
    "RetryableError",
    "RunRejected",
    "Throttled",
    "WorkerError",
]
