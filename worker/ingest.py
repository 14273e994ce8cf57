"""Folder ingestion: each new file in a folder the workers share becomes one job; when the job ends, the file
moves to `done/` (its run ended PROCESSED) or `failed/` (anything else), next to a JSON sidecar holding the
run or the error.

A file is submitted once it has settled: the previous scan saw the same size and modification time, and
that time is at least `settle_s` old, so files still being written wait for a later scan. Its job key is
derived from its path, size and modification time, so a rescan (or a second scanner) yields the same job
and one run. Hidden files and the usual partial-download names (`.part`, `.tmp`, `.crdownload`) are
skipped. What a scan remembers between passes (sizes seen, jobs submitted) lives in one Redis hash.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from extendq.worker.keys import Keys
from extendq.worker.models import JobRequest

log = logging.getLogger("extendq.ingest")

DONE, FAILED = "done", "failed"
_PARTIAL_SUFFIXES = (".part", ".partial", ".tmp", ".crdownload", ".download")


@dataclass(frozen=True)
class Finished:
    """How a job ended: its run's status (or FAILURE) and the run itself (or the error as a dict)."""

    status: str
    run: dict[str, Any] | None = None
    error: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.status == "PROCESSED"


Submit = Callable[[JobRequest], str]
Outcome = Callable[[str], Finished | None]


@dataclass(kw_only=True)
class Ingester:
    """Scans one folder: submits settled files, files away those whose job ended."""

    folder: Path
    workflow: str
    client: redis.Redis
    keys: Keys
    submit: Submit
    outcome: Outcome
    settle_s: float = 10.0
    batch: int = 500
    clock: Callable[[], float] = time.time

    def scan(self) -> dict[str, int]:
        """One pass over the folder; counts of files `submitted`, `settling`, `running`, `done`, `failed`."""
        if not self.folder.is_dir():
            log.warning("ingest folder %s is missing (or not a folder): nothing scanned", self.folder)
            return {"missing_folder": 1}
        now = self.clock()
        memory = {str(k): json.loads(v) for k, v in self.client.hgetall(self.keys.ingest_seen).items()}
        counts: Counter[str] = Counter()
        present = self._candidates()
        for path in present:
            try:
                counts[self._visit(path, memory.get(path.name), now)] += 1
            except FileNotFoundError:
                continue  # moved or deleted meanwhile
        gone = set(memory) - {path.name for path in present}
        if gone and len(present) < self.batch:
            self.client.hdel(self.keys.ingest_seen, *gone)
        return dict(counts)

    def _candidates(self) -> list[Path]:
        names = sorted(entry.name for entry in os.scandir(self.folder) if entry.is_file() and _wanted(entry.name))
        return [self.folder / name for name in names[: self.batch]]

    def _visit(self, path: Path, seen: dict[str, Any] | None, now: float) -> str:
        stat = path.stat()
        signature = [stat.st_size, stat.st_mtime_ns]
        if seen is not None and seen.get("job_id"):
            return self._follow(path, seen)
        settled = seen is not None and seen.get("sig") == signature and now - stat.st_mtime >= self.settle_s
        if not settled:
            self._remember(path, {"sig": signature})
            return "settling"
        job_key = self.job_key(path, stat.st_size, stat.st_mtime_ns)
        request = JobRequest.parse(
            {
                "workflow": self.workflow,
                "file": {"path": str(path.resolve()), "name": path.name},
                "job_key": job_key,
                "metadata": {"ingest_file": path.name},
            }
        )
        job_id = self.submit(request)
        self._remember(path, {"sig": signature, "job_id": job_id, "job_key": job_key})
        log.info("ingest %s -> job %s (key %s)", path.name, job_id, job_key)
        return "submitted"

    def _follow(self, path: Path, seen: dict[str, Any]) -> str:
        finished = self.outcome(str(seen["job_id"]))
        if finished is None:
            return "running"
        self._file_away(path, seen, finished)
        self.client.hdel(self.keys.ingest_seen, path.name)
        return DONE if finished.ok else FAILED

    def _file_away(self, path: Path, seen: dict[str, Any], finished: Finished) -> None:
        folder = self.folder / (DONE if finished.ok else FAILED)
        folder.mkdir(exist_ok=True)
        target = folder / path.name
        if target.exists():
            target = folder / f"{path.stem}.{str(seen['job_id'])[:8]}{path.suffix}"
        sidecar = {
            "file": path.name,
            "job_id": seen["job_id"],
            "job_key": seen.get("job_key"),
            "status": finished.status,
        }
        sidecar.update({"run": finished.run} if finished.run is not None else {"error": finished.error})
        # The sidecar first, atomically: a pass that dies between the two moves writes it again and moves the file.
        staging = folder / f".{target.name}.json.tmp"
        staging.write_text(json.dumps(sidecar, indent=2, default=str))
        os.replace(staging, target.with_name(target.name + ".json"))
        os.replace(path, target)
        log.info("ingest %s -> %s/%s (%s)", path.name, folder.name, target.name, finished.status)

    def _remember(self, path: Path, state: dict[str, Any]) -> None:
        self.client.hset(self.keys.ingest_seen, path.name, json.dumps(state, separators=(",", ":")))

    @staticmethod
    def job_key(path: Path, size: int, mtime_ns: int) -> str:
        """The job key of one version of one file: the same path, size and modification time, the same job."""
        digest = hashlib.sha256(f"{path.resolve()}\0{size}\0{mtime_ns}".encode()).hexdigest()
        return f"ingest-{digest[:40]}"


def _wanted(name: str) -> bool:
    return not name.startswith((".", "~")) and not name.lower().endswith(_PARTIAL_SUFFIXES)
