"""Where a server process's Prometheus samples live: the multiprocess directory it sets up and removes.

prometheus_client's multiprocess mode follows the PROMETHEUS_MULTIPROC_DIR variable. A worker's main process
(before its pool forks) or `extendq webhooks` (before uvicorn starts its processes) calls
`enable_multiprocess()`: a fresh directory of its own is made, under PROMETHEUS_MULTIPROC_DIR when one is given
(a volume, say) or else the system's temporary folder, and the variable is pointed at it so every child
inherits it. `disable_multiprocess()` removes it when the server stops; a killed server leaves its directory
in the temporary folder, never in the way of the next one. Why multiprocess mode: see worker/metrics.py.
"""

from __future__ import annotations

import os
import shutil
import tempfile

_ENV = "PROMETHEUS_MULTIPROC_DIR"
_made: list[tuple[int, str]] = []  # (pid of the process that made it, path)


def multiprocess_dir() -> str | None:
    """The directory this process's samples go to, when multiprocess mode is on."""
    return os.environ.get(_ENV) or None


def enable_multiprocess() -> str:
    """Make a fresh sample directory for this process and those it starts from now on; its path."""
    parent = os.environ.get(_ENV) or None
    if parent is not None:
        os.makedirs(parent, exist_ok=True)
    path = tempfile.mkdtemp(prefix=f"extendq-metrics-{os.getpid()}-", dir=parent)
    os.environ[_ENV] = path
    _made.append((os.getpid(), path))
    return path


def disable_multiprocess() -> None:
    """Remove the directories `enable_multiprocess` made (in the process that made them; children leave them)."""
    while _made:
        pid, path = _made.pop()
        if pid != os.getpid():
            continue  # a forked child inherited the list: the directory is its parent's
        shutil.rmtree(path, ignore_errors=True)
        if os.environ.get(_ENV) == path:
            os.environ.pop(_ENV)
