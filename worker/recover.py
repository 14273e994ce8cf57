"""Recovery after Redis lost its data: jobs whose Extend run exists get their results again, from Extend's side.

Every run extendq creates carries its job id (and job key) in its metadata. When Redis restarts without
persistence, the job records, the due schedule, the broker's queue and the results are gone, but the runs
are not. A recovery pass lists the runs created since a given time (`GET /workflow_runs`, newest first,
one shared rate-limit token per request), skips those a recorded job owns, fetches each other run once to
read its metadata, and *adopts* every run whose job id has no record: one atomic step
(`RedisJobStore.adopt`) records the job as RUNNING on that run, due now. The dispatchers then check it like
any job in flight and publish its terminal run under its own job id (`AsyncResult(job_id).get()`), or keep
checking it while it runs. No run is ever created, and a run is adopted once however many passes run at
once on however many machines: the step does nothing when the job or the run is recorded already.

What cannot be recovered: jobs whose run was never created (queued, or waiting for a rate-limit token, at
the loss). Their request lived only in Redis; their producers must enqueue them again. An adopted job gets
back its result, its job key and its metadata; callbacks, deadlines, `needs_review="watch"` and per-run
secrets were in the lost request and are not restored. A pass lists the default account, then each tenant's
(`EXTENDQ_TENANTS`), and a tenant's adopted jobs go on in its account; an account that fails (a revoked key)
is logged and skipped, never the others. A pass adopts any run carrying a job id this Redis does not know: where
another deployment shares an Extend account, turn the automatic pass off (`EXTENDQ_RECOVER_ON_RESTART`).

When it runs: `extendq recover [--since 24h]` by hand, and automatically once per data loss, after a restart
or a failover (worker/dataloss.py).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

from extendq.errors import ExtendqError, InvalidJobRequest, RateLimited, RetryableError, RunRejected
from extendq.worker.extend import ExtendApi, api_time
from extendq.worker.jobs import JobRunner
from extendq.worker.models import JOB_ID_KEY, JOB_KEY_KEY, JobRequest
from extendq.worker.ratelimit import RateLimiter
from extendq.worker.store import RedisJobStore
from extendq.worker.tenants import TenantAccounts

log = logging.getLogger("extendq.recover")
T = TypeVar("T")


@dataclass(kw_only=True)
class Recovery:
    """One recovery pass: adopts every recent run whose job lost its record in Redis (see the module docstring)."""

    api: ExtendApi
    store: RedisJobStore
    limiter: RateLimiter | None = None
    # Called as follow(owner, job_id) when another job took the run's job key meanwhile: the job shares its result.
    follow: Callable[[str, str], None] | None = None
    tenant: str | None = None  # the account listed: a tenant's, or None for the default one
    tenants: TenantAccounts | None = None  # the other accounts, each listed after this one
    page_size: int = 100
    attempts: int = 6
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], object] = time.sleep

    @classmethod
    def for_runner(cls, runner: JobRunner) -> Recovery:
        """A pass over the runner's accounts (the default one, then its tenants'), with its store, shared limiters
        and result publisher."""
        return cls(
            api=runner.api, store=runner.store, limiter=runner.limiter, follow=runner.follow, tenants=runner.tenants
        )

    def run(self, *, since: float) -> dict[str, int]:
        """Adopt the runs created since `since` (unix seconds) in every account; counts by outcome.

        `listed` runs were looked at: `adopted` ones got a record, `known` ones had one, `foreign` ones carry no
        extendq job id, `key_taken` ones joined the job that took their job key, `gone` ones vanished meanwhile,
        `unreadable` ones could not be read as a request; `accounts_failed` accounts could not be listed (a
        tenant's revoked key, say: the other accounts are recovered all the same). The default account's failure
        is raised (the pass is run again).
        """
        counts = self._run_account(since)
        for name in sorted(self.tenants.names) if self.tenants is not None else ():
            counts.update(self._run_tenant(name, since))
        return {name: counts[name] for name in ("listed", "adopted", "known", "foreign")} | dict(counts)

    def _run_tenant(self, name: str, since: float) -> Counter[str]:
        """The pass over one tenant's account; a failure there is logged and counted, never raised."""
        assert self.tenants is not None
        try:
            api, limiter = self.tenants.api(name), self.tenants.limiter(name)
            return replace(self, api=api, limiter=limiter, tenant=name, tenants=None)._run_account(since)
        except ExtendqError as exc:
            log.warning("recovery of tenant %s failed: %s", name, exc)
            return Counter(accounts_failed=1)

    def _run_account(self, since: float) -> Counter[str]:
        counts: Counter[str] = Counter()
        for page in self._pages(since):
            counts["listed"] += len(page)
            for summary, known in zip(page, self.store.known_runs([str(s["id"]) for s in page]), strict=True):
                counts["known" if known else self._recover(summary)] += 1
        account = "" if self.tenant is None else f" of tenant {self.tenant}"
        tally = " ".join(f"{k}={v}" for k, v in sorted(counts.items()))
        log.info("recovery%s since %s: %s", account, _iso(since), tally)
        return counts

    def _pages(self, since: float) -> Iterator[list[dict[str, Any]]]:
        """Summaries of runs created at or after `since`, newest first, a page at a time."""
        token: str | None = None
        while True:
            page = self._call(partial(self._list, token))
            data: list[dict[str, Any]] = page.get("data") or []
            recent = [summary for summary in data if _created_at(summary) >= since]
            if recent:
                yield recent
            token = page.get("nextPageToken")
            if len(recent) < len(data) or not token:
                return

    def _list(self, token: str | None) -> dict[str, Any]:
        return self.api.list_runs(sortBy="createdAt", sortDir="desc", maxPageSize=self.page_size, nextPageToken=token)

    def _recover(self, summary: dict[str, Any]) -> str:
        run_id = str(summary["id"])
        try:
            run = self._call(lambda: self.api.get_run(run_id))
        except RunRejected:
            return "gone"  # deleted on Extend since it was listed
        job_id = (run.get("metadata") or {}).get(JOB_ID_KEY)
        if not isinstance(job_id, str) or not job_id:
            return "foreign"
        request = adopted_request(run, self.tenant)
        if request is None:
            log.warning("run %s of job %s cannot be read as a job request; not adopted", run_id, job_id)
            return "unreadable"
        now = self.clock()
        created = min(_created_at(summary), now)
        outcome, owner = self.store.adopt(job_id, request, run_id, submitted_at=created, due_at=now)
        if outcome == "adopted":
            log.info("job %s adopted run %s (status %s) after a Redis data loss", job_id, run_id, run.get("status"))
        elif outcome == "key_taken" and self.follow is not None:
            self.follow(owner, job_id)
        return outcome

    def _call(self, fn: Callable[[], T]) -> T:
        """One Extend request on a shared rate-limit token; transient failures are waited out a few times."""
        for attempt in range(1, self.attempts + 1):
            self._take_token()
            try:
                return fn()
            except RetryableError as exc:
                if attempt == self.attempts:
                    raise
                if isinstance(exc, RateLimited) and self.limiter is not None:
                    self.limiter.pause(exc.retry_after_s or 1.0)
                    continue
                self.sleep(exc.retry_after_s or min(2.0**attempt, 30.0))
        raise AssertionError("unreachable")  # pragma: no cover

    def _take_token(self) -> None:
        # This pass runs in a thread or a command of its own, so it waits for its turn instead of rescheduling.
        while self.limiter is not None and (wait := self.limiter.wait_turn(self._nap, max_wait_s=60.0)) is not None:
            self.sleep(wait)

    def _nap(self, seconds: float) -> bool:
        self.sleep(seconds)
        return False


def adopted_request(run: dict[str, Any], tenant: str | None = None) -> JobRequest | None:
    """A request standing for the lost one: the run's workflow, its files by id, its metadata and job key, on the
    account (`tenant`) it was listed in."""
    metadata = run.get("metadata") or {}
    file_ids = [str(item["id"]) for item in run.get("files") or [] if isinstance(item, dict) and item.get("id")]
    if not file_ids:
        return None
    package = {"files": [{"id": file_id} for file_id in file_ids]}
    files = {"file": {"id": file_ids[0]}} if len(file_ids) == 1 else {"package": package}
    base = {"workflow": (run.get("workflow") or {}).get("id"), **files, "job_key": metadata.get(JOB_KEY_KEY)}
    if tenant is not None:
        base["tenant"] = tenant
    own = {key: value for key, value in metadata.items() if not str(key).startswith("extendq:")}
    for payload in ({**base, "metadata": own}, base):  # metadata Extend holds but we would refuse: left out
        try:
            return JobRequest.parse(payload)
        except InvalidJobRequest:
            continue
    return None


def _created_at(summary: dict[str, Any]) -> float:
    return api_time(summary.get("createdAt"))  # none given: never the end of the window


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at).astimezone().isoformat(timespec="seconds")
