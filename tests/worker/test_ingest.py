from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import redis

from extendq.worker.ingest import Finished, Ingester
from extendq.worker.keys import Keys
from extendq.worker.models import JobRequest

START = 1_000_000.0


class Pool:
    """Stands in for the workers: records submitted requests; outcomes are set by the test."""

    def __init__(self) -> None:
        self.submitted: list[JobRequest] = []
        self.ended: dict[str, Finished] = {}

    def submit(self, request: JobRequest) -> str:
        self.submitted.append(request)
        return f"job-{request.job_key}"

    def outcome(self, job_id: str) -> Finished | None:
        return self.ended.get(job_id)

    def finish_all(self) -> None:
        for request in self.submitted:
            name = request.metadata["ingest_file"]
            ok = int(name.split("-")[1].split(".")[0]) % 3 != 0
            run = {"id": f"run-{name}", "status": "PROCESSED" if ok else "FAILED"}
            self.ended[f"job-{request.job_key}"] = Finished(status=run["status"], run=run)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def _write(path: Path, text: str, *, mtime: float) -> None:
    with path.open("a") as handle:
        handle.write(text)
    os.utime(path, (mtime, mtime))


@pytest.fixture
def setup(tmp_path: Path, redis_client: redis.Redis) -> tuple[Ingester, Pool, Clock]:
    pool, clock = Pool(), Clock()
    ingester = Ingester(
        folder=tmp_path,
        workflow="workflow_invoice",
        client=redis_client,
        keys=Keys("extendq:"),
        submit=pool.submit,
        outcome=pool.outcome,
        settle_s=2.0,
        clock=clock,
    )
    return ingester, pool, clock


def test_thirty_files_some_still_being_written_each_become_one_job_and_are_filed_away(
    setup: tuple[Ingester, Pool, Clock], tmp_path: Path
) -> None:
    ingester, pool, clock = setup
    # Given 30 files: 25 complete, 5 still being written (and junk that is never a job)
    growing = [tmp_path / f"doc-{n:02d}.txt" for n in range(25, 30)]
    for n in range(30):
        _write(tmp_path / f"doc-{n:02d}.txt", f"Invoice #: {n}\n", mtime=START - 60)
    (tmp_path / ".hidden").write_text("x")
    (tmp_path / "upload.pdf.part").write_text("x")
    # When the first scan sees them all, and the writers append before the second
    assert ingester.scan() == {"settling": 30}
    clock.now += 5
    for path in growing:
        _write(path, "Total: 10.00\n", mtime=clock.now - 0.5)
    assert ingester.scan() == {"submitted": 25, "settling": 5}
    # and the writers are done before the third scan, by which time the first jobs ended
    clock.now += 5
    pool.finish_all()
    counts = ingester.scan()
    assert counts == {"done": 16, "failed": 9, "submitted": 5}
    pool.finish_all()
    assert ingester.scan() == {"done": 4, "failed": 1}
    # Then every file became exactly one job, with one job key each, and sits in done/ or failed/ by its run
    keys = [request.job_key for request in pool.submitted]
    assert len(keys) == 30 and len(set(keys)) == 30
    done, failed = sorted((tmp_path / "done").glob("*.txt")), sorted((tmp_path / "failed").glob("*.txt"))
    assert len(done) + len(failed) == 30 and len(failed) == 10
    sidecar = json.loads((tmp_path / "failed" / "doc-03.txt.json").read_text())
    assert (sidecar["file"], sidecar["status"], sidecar["run"]["id"]) == ("doc-03.txt", "FAILED", "run-doc-03.txt")
    assert sidecar["job_id"] == f"job-{sidecar['job_key']}"
    assert (tmp_path / "done" / "doc-29.txt").read_text() == "Invoice #: 29\nTotal: 10.00\n"
    # And scans after that find nothing more to do
    assert ingester.scan() == {} and len(pool.submitted) == 30
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden", "done", "failed", "upload.pdf.part"]


def test_the_request_names_the_file_by_path_with_a_key_from_path_size_and_mtime(
    setup: tuple[Ingester, Pool, Clock], tmp_path: Path
) -> None:
    ingester, pool, clock = setup
    path = tmp_path / "inv.txt"
    _write(path, "Invoice", mtime=START - 60)
    ingester.scan()
    ingester.scan()
    [request] = pool.submitted
    assert request.workflow.id == "workflow_invoice"
    assert request.file is not None and request.file.model_dump() == {"path": str(path.resolve()), "name": "inv.txt"}
    stat = path.stat()
    assert request.job_key == Ingester.job_key(path, stat.st_size, stat.st_mtime_ns)
    assert Ingester.job_key(path, stat.st_size, stat.st_mtime_ns + 1) != request.job_key


def test_a_lost_scan_memory_resubmits_under_the_same_job_key(
    setup: tuple[Ingester, Pool, Clock], tmp_path: Path
) -> None:
    # The job key, not the memory, is what keeps a file to one run: the same key is the same job.
    ingester, pool, _ = setup
    _write(tmp_path / "inv.txt", "Invoice", mtime=START - 60)
    ingester.scan()
    ingester.scan()
    ingester.client.delete("extendq:ingest:seen")
    ingester.scan()
    ingester.scan()
    assert len(pool.submitted) == 2 and pool.submitted[0].job_key == pool.submitted[1].job_key


def test_an_error_lands_in_failed_with_the_error_in_the_sidecar(
    setup: tuple[Ingester, Pool, Clock], tmp_path: Path
) -> None:
    ingester, pool, _ = setup
    (tmp_path / "done").mkdir()
    _write(tmp_path / "inv.txt", "Invoice", mtime=START - 60)
    _write(tmp_path / "done" / "inv.txt", "an older file of the same name", mtime=START - 60)
    ingester.scan()
    ingester.scan()
    job_id = f"job-{pool.submitted[0].job_key}"
    error = {"error": "auth", "message": "401", "run_id": None}
    pool.ended[job_id] = Finished(status="FAILURE", error=error)
    assert ingester.scan() == {"failed": 1}
    sidecar = json.loads((tmp_path / "failed" / "inv.txt.json").read_text())
    assert (sidecar["status"], sidecar["error"]) == ("FAILURE", error)
    # A name already taken in the target folder gets the job id's start, never overwrites
    _write(tmp_path / "inv.txt", "Invoice again", mtime=START - 30)
    pool.ended.clear()
    ingester.scan()
    ingester.scan()
    second = f"job-{pool.submitted[1].job_key}"
    pool.ended[second] = Finished(status="FAILURE", error=error)
    ingester.scan()
    assert {p.name for p in (tmp_path / "failed").iterdir()} == {
        "inv.txt",
        "inv.txt.json",
        f"inv.{second[:8]}.txt",
        f"inv.{second[:8]}.txt.json",
    }


def test_a_missing_folder_is_reported_not_raised(setup: tuple[Ingester, Pool, Clock], tmp_path: Path) -> None:
    ingester, pool, _ = setup
    ingester.folder = tmp_path / "not-mounted"
    assert ingester.scan() == {"missing_folder": 1} and pool.submitted == []
