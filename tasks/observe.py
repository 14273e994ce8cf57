"""The worker's metrics endpoint: samples shared by its processes, served from its main process.

`worker_init` (main process, before the pool forks) points every process at one sample directory;
`serve_metrics` (called from `worker_ready`) serves it on EXTENDQ_METRICS_PORT; `worker_shutdown` stops the
endpoint and removes the directory. Without EXTENDQ_METRICS_PORT nothing is set up and metrics stay in memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery.signals import worker_init, worker_shutdown

from extendq.config.metrics import disable_multiprocess, enable_multiprocess
from extendq.config.settings import Settings, get_settings
from extendq.worker import metrics

_stop: Callable[[], None] | None = None


@worker_init.connect
def _prepare_metrics(**_: Any) -> None:
    if get_settings().metrics_port is not None:
        metrics.configure(multiprocess_dir=enable_multiprocess())


def serve_metrics(settings: Settings) -> None:
    """Serve this worker's metrics (and the pool's gauges) on EXTENDQ_METRICS_PORT, if set; best effort."""
    global _stop
    if settings.metrics_port is None:
        return
    registry = metrics.scrape_registry(metrics.pool_collector(settings))
    _stop = metrics.start_server(port=settings.metrics_port, host=settings.metrics_host, registry=registry)


@worker_shutdown.connect
def _stop_metrics(**_: Any) -> None:
    global _stop
    if _stop is not None:
        _stop()
        _stop = None
    disable_multiprocess()
