"""Typed results: a job's terminal run as the SDK's `WorkflowRun`, and an extraction step's output as your model.

```python
class Invoice(BaseModel):
    invoice_number: str
    total: float

run = typed_run(job)                  # extend_ai.types.WorkflowRun (job: an AsyncResult, a job id or a run dict)
invoice = extraction(job, Invoice)    # stepRuns[i].result.extractRun.output.value, validated into Invoice
```

A run or an output that does not fit raises `ResultMismatch` / `ExtractionMismatch`, which keep the raw run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

from extendq.errors import ExtractionMismatch, ResultMismatch
from extendq.tasks.celery import get_app

if TYPE_CHECKING:
    from celery import Celery
    from celery.result import AsyncResult
    from extend_ai.types import WorkflowRun

M = TypeVar("M", bound=BaseModel)


def typed_run(
    job: str | AsyncResult[Any] | Mapping[str, Any], *, timeout: float | None = None, app: Celery | None = None
) -> WorkflowRun:
    """The job's terminal run as the SDK's `WorkflowRun` (waits up to `timeout` s for a job still in flight).

    Raises the job's own error when it failed, and `ResultMismatch` when the run does not fit the SDK's model.
    """
    from extend_ai.types import WorkflowRun  # the SDK's models take a while to import: only when asked for

    run = result(job, timeout=timeout, app=app)
    try:
        return WorkflowRun.model_validate(run)
    except ValidationError as exc:
        raise ResultMismatch(f"run {run.get('id')} does not fit WorkflowRun: {_summary(exc)}", run=run) from None


def extraction(
    job: str | AsyncResult[Any] | Mapping[str, Any],
    model: type[M],
    *,
    step: str | None = None,
    timeout: float | None = None,
    app: Celery | None = None,
) -> M:
    """The output of the run's extraction step, validated into `model`.

    `step` names the step (its name or id, or the step run's id) when the workflow has several extraction
    steps. Raises `ExtractionMismatch` (keeping the raw run) when there is no such output or it does not fit.
    """
    run = result(job, timeout=timeout, app=app)
    chosen = _extract_step(run, step)
    name = str((chosen.get("step") or {}).get("name") or chosen.get("id"))
    value = (((chosen.get("result") or {}).get("extractRun") or {}).get("output") or {}).get("value")
    if value is None:
        raise ExtractionMismatch(f"step {name!r} of run {run.get('id')} has no output", run=run, step=name)
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        errors = [dict(err) for err in exc.errors(include_url=False, include_input=False)]
        message = f"step {name!r} of run {run.get('id')} does not fit {model.__name__}: {_summary(exc)}"
        raise ExtractionMismatch(message, run=run, step=name, errors=errors) from None


def result(
    job: str | AsyncResult[Any] | Mapping[str, Any], *, timeout: float | None = None, app: Celery | None = None
) -> dict[str, Any]:
    """The job's terminal run as a dict: `job` is a run already, an `AsyncResult`, or a job id."""
    if isinstance(job, Mapping):
        return dict(job)
    if isinstance(job, str):
        if app is None:
            app = get_app()
        job = app.AsyncResult(job)
    return dict(job.get(timeout=timeout))


def _extract_step(run: Mapping[str, Any], step: str | None) -> dict[str, Any]:
    steps = [item for item in run.get("stepRuns") or [] if isinstance(item, dict)]
    extracting = [item for item in steps if isinstance((item.get("result") or {}).get("extractRun"), dict)]
    if step is not None:
        chosen = [item for item in extracting if step in _names(item)]
    else:
        chosen = extracting
    where = f"run {run.get('id')} (status {run.get('status')})"
    if not chosen:
        wanted = f"extraction step {step!r}" if step else "extraction step"
        raise ExtractionMismatch(f"{where} has no {wanted} with a result", run=run, step=step)
    if len(chosen) > 1:
        names = ", ".join(repr(str((item.get("step") or {}).get("name"))) for item in chosen)
        raise ExtractionMismatch(f"{where} has several extraction steps ({names}): name one", run=run, step=step)
    return chosen[0]


def _names(step_run: Mapping[str, Any]) -> set[str]:
    step = step_run.get("step") or {}
    return {str(value) for value in (step.get("name"), step.get("id"), step_run.get("id")) if value}


def _summary(exc: ValidationError) -> str:
    problems = [
        f"{'.'.join(str(part) for part in err['loc']) or 'value'}: {err['msg']}"
        for err in exc.errors(include_url=False, include_input=False)
    ]
    more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
    return "; ".join(problems[:3]) + more
