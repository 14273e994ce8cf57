"""extendq: run Extend document-processing workflows at scale from Celery workers.

```python
from extendq import submit

job = submit(workflow="workflow_invoice", file={"url": "https://example.com/invoice.pdf"})
run = job.get(timeout=600)          # the terminal workflow run, or the job's error raised (extendq.errors)
```

The names below are imported on first use: `import extendq` reads no setting, makes no Celery app, opens no
connection and configures no logging.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from extendq.tasks import (
        JobOptions,
        JobSpec,
        callback_id,
        cancel,
        extraction,
        job_id_for,
        replay,
        result,
        result_async,
        seal_secrets,
        submit,
        submit_async,
        submit_many,
        typed_run,
    )

__version__ = "0.2.0"

# name -> the module that holds it; importing extendq imports none of them.
_LAZY = {
    "JobOptions": "extendq.tasks.producer",
    "JobSpec": "extendq.tasks.producer",
    "callback_id": "extendq.worker.callbacks",
    "cancel": "extendq.tasks.producer",
    "extraction": "extendq.tasks.results",
    "job_id_for": "extendq.tasks.producer",
    "replay": "extendq.tasks.replay",
    "result": "extendq.tasks.results",
    "result_async": "extendq.tasks.aio",
    "seal_secrets": "extendq.tasks.producer",
    "submit": "extendq.tasks.producer",
    "submit_async": "extendq.tasks.aio",
    "submit_many": "extendq.tasks.bulk",
    "typed_run": "extendq.tasks.results",
}

__all__ = [
    "__version__",
    "JobOptions",
    "JobSpec",
    "callback_id",
    "cancel",
    "extraction",
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


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
