"""Recovery over several accounts: each tenant's recent runs are adopted onto its account; one failing is skipped."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import redis

from extendq.errors import AuthFailed
from extendq.worker.keys import Keys
from extendq.worker.models import JOB_ID_KEY
from extendq.worker.recover import Recovery
from extendq.worker.store import RedisJobStore
from extendq.worker.tenants import TenantAccounts

NOW = 1_800_000_000.0


class AccountApi:
    """One account's runs, each made by extendq for a job id; listing fails with `error` when set."""

    def __init__(self, *job_ids: str, error: Exception | None = None) -> None:
        created = datetime.fromtimestamp(NOW - 10, tz=UTC).isoformat().replace("+00:00", "Z")
        self.runs = {
            f"run-{job_id}": {
                "id": f"run-{job_id}",
                "createdAt": created,
                "status": "PROCESSING",
                "workflow": {"id": "workflow_x"},
                "files": [{"id": f"file-{job_id}"}],
                "metadata": {JOB_ID_KEY: job_id},
            }
            for job_id in job_ids
        }
        self.error = error

    def list_runs(self, **params: Any) -> dict[str, Any]:
        if self.error is not None:
            raise self.error
        return {"data": [dict(run) for run in self.runs.values()], "nextPageToken": None}

    def get_run(self, run_id: str) -> dict[str, Any]:
        return dict(self.runs[run_id])

    def create_run(self, body: dict[str, Any]) -> dict[str, Any]:
        raise AssertionError("recovery never creates a run")

    def create_batch(self, body: dict[str, Any]) -> str:
        raise AssertionError("recovery never creates a run")

    def cancel_run(self, run_id: str) -> dict[str, Any]:
        raise AssertionError("recovery never cancels a run")

    def upload(self, path: str, name: str | None = None) -> str:
        raise AssertionError("recovery never uploads")

    def recent_runs(
        self, workflow_id: str, since: float, pace: Callable[[], None] | None = None
    ) -> Iterator[dict[str, Any]]:
        raise AssertionError("recovery lists all runs")

    def close(self) -> None:
        pass


def test_each_accounts_runs_are_adopted_onto_its_account_and_a_failing_one_is_skipped(
    redis_client: redis.Redis,
) -> None:
    # Given lost jobs on the default account and on acme's, and globex's key revoked
    store = RedisJobStore(redis_client, keys=Keys("extendq:"), result_ttl_s=3600)
    apis = {"acme": AccountApi("a-1", "a-2"), "globex": AccountApi(error=AuthFailed("key revoked", None))}
    tenants = TenantAccounts(apis, build_api=apis.__getitem__, build_limiter=lambda name: None)
    recovery = Recovery(api=AccountApi("d-1"), store=store, tenants=tenants, clock=lambda: NOW)
    # When a recovery pass runs
    counts = recovery.run(since=NOW - 60)
    # Then every lost job is adopted, each on the account it was listed in, and globex's failure is counted
    assert (counts["listed"], counts["adopted"], counts["accounts_failed"]) == (3, 3, 1), counts
    tenants_of = {job_id: (record := store.load(job_id)) and record.request.tenant for job_id in ("d-1", "a-1", "a-2")}
    assert tenants_of == {"d-1": None, "a-1": "acme", "a-2": "acme"}
    assert store.in_flight_of("acme") == 2 and store.in_flight_of(None, tenants={"acme", "globex"}) == 1
