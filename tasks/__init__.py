"""What Celery runs, and the producer helpers: `submit`, `submit_many`, `cancel`, `result` and friends.

Importing this package makes no Celery app and reads no setting: the app is made on first use
(`extendq.tasks.celery.get_app`), which is also what `celery -A extendq.tasks worker` finds.
"""

from __future__ import annotations

from extendq.errors import ExtractionMismatch, ResultMismatch
from extendq.tasks.aio import result_async, submit_async
from extendq.tasks.bulk import submit_many
from extendq.tasks.celery import get_app
from extendq.tasks.producer import (
    CANCEL,
    RUN_WORKFLOW,
    JobOptions,
    JobSpec,
    build_request,
    cancel,
    enqueue,
    job_id_for,
    seal_secrets,
    submit,
)
from extendq.tasks.replay import replay
from extendq.tasks.results import extraction, result, typed_run
from extendq.worker.callbacks import callback_id

__all__ = [
    "CANCEL",
    "RUN_WORKFLOW",
    "ExtractionMismatch",
    "JobOptions",
    "JobSpec",
    "ResultMismatch",
    "build_request",
    "callback_id",
    "cancel",
    "enqueue",
    "extraction",
    "get_app",
    "job_id_for",
    "replay",
    "result",
    "result_async",
    "seal_secrets",
    "submit",
    "submit_async",
    "submit_many",
    "typed_run",
]
