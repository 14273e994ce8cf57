"""List sweeps: with many runs in flight, one page of recently updated runs replaces a check per run.

Every few seconds one sweeper (a lease in Redis elects it among all workers) lists
`GET /workflow_runs?sortBy=updatedAt&sortDir=desc` back to where the previous sweep started, and makes
every job whose run ended there due at once: that job's next check fetches the full run and publishes
it. While sweeps run, per-job checks stretch to a slow safety net. With few runs in flight a sweep would
cost more calls than it saves, so in `auto` mode sweeps start only above a number of jobs in flight.

Each Extend account sweeps on its own: the default one, and each tenant (`EXTENDQ_TENANTS`) with its own API,
rate limit, window, leader and count of jobs in flight, so a tenant's runs are found by listing its account,
and one account's trouble (a revoked key, a 429 pause) never holds up another's sweeps.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Literal

import redis

from extendq.errors import AuthFailed, RateLimited
from extendq.worker.extend import ExtendApi, api_time
from extendq.worker.models import is_terminal
from extendq.worker.periodic import repeat
from extendq.worker.ratelimit import RateLimiter
from extendq.worker.store import RedisJobStore

log = logging.getLogger("extendq.sweep")
Reach = Literal["complete", "cut_short", "too_far"]
_RATE_INTERVALS = 5  # the sweeps whose rate of runs ended sets the next interval: those of the last five intervals
_SKEW_S = 3.0  # Extend's clock may be behind ours: look this much further back than the last sweep began


def _sleep(seconds: float) -> bool:
    time.sleep(seconds)
    return False


_UNSEEN = (False, 0.0, 0)
# How long a batch run handed to an adopting task is not handed again (the task may wait for tokens meanwhile); should
# the task be lost, a sweep after this hands the run again.
_ADOPTION_SENT_S = 60


@dataclass
class SweepWatch:
    """Whether each account's list sweeps are running, as a runner last saw it, and the safety-net checks they
    leave. Accounts are named by tenant (None: the default account)."""

    # Per account: sweeping, known until (monotonic), jobs in flight.
    seen: dict[str | None, tuple[bool, float, int]] = field(default_factory=dict)

    def sweeping(
        self, store: RedisJobStore, min_in_flight: int, tenant: str | None = None, tenants: Collection[str] = ()
    ) -> bool:
        """The account's sweeps are running, or will be within one interval (enough of its jobs in flight); a yes
        is kept a second. `tenants`: those configured (the default account's jobs are all the others)."""
        now = time.monotonic()
        if now >= self.seen.get(tenant, _UNSEEN)[1]:
            active = store.client.exists(store.keys.sweep("active", tenant))
            in_flight = store.in_flight_of(tenant, tenants=tenants)
            sweeping = bool(active) or in_flight >= min_in_flight
            self.seen[tenant] = (sweeping, now + 1.0 if sweeping else now, in_flight)
        return self.seen[tenant][0]

    def safety_interval_s(self, interval_s: float, checks_per_s: float | None, tenant: str | None = None) -> float:
        """A run's safety-net check interval: with many of its account's runs in flight it is spread further, so
        that the safety net never spends more than its share of the account's API (`checks_per_s`)."""
        in_flight = self.seen.get(tenant, _UNSEEN)[2]
        return max(interval_s, in_flight / checks_per_s) if checks_per_s else interval_s


@dataclass(frozen=True, kw_only=True)
class SweepConfig:
    """When and how to sweep."""

    mode: str = "auto"
    interval_s: float = 2.0
    min_in_flight: int = 20
    # Pages are as long as the jobs in flight, within these bounds (1,000 is the list endpoint's documented maximum):
    # a sweep is then one request, and a failed one costs one retry, not a chain of pages that must all succeed.
    page_size: int = 100
    max_page_size: int = 1000
    max_pages: int = 50
    # The most of the pool's requests a second that sweeps may spend, as a share: a sweep lists at most
    # `max_share * requests/s * interval_s` pages (at least one); with no request limit, `max_pages`.
    max_share: float = 0.25
    # How far ahead a page may reserve its token: as far as jobs do, so a busy pool never starves the sweeps.
    max_wait_s: float = 60.0
    # With webhooks on, a run that ended is checked only this long after its end: its webhook is on its way
    # and finishes the job with no request. 0 (polling): checked at once.
    webhook_grace_s: float = 0.0
    # Sweeps stopped: the jobs whose checks were stretched for them are checked within this (spread at random),
    # or sooner when they were due sooner. With webhooks on, the webhook check interval: checks only catch
    # missed deliveries.
    hand_back_within_s: float = 1.0
    # While runs end fast (the last sweeps made at least `busy_ended_per_s` jobs due a second), sweeps come every
    # `busy_interval_s` instead of `interval_s`: each list still stands in for several checks, and results come
    # sooner. None: always `interval_s` (with webhooks on, sweeps only catch missed deliveries).
    busy_interval_s: float | None = 0.5
    busy_ended_per_s: float = 10.0


@dataclass(kw_only=True)
class Sweeper:
    """Finds runs of one account that ended by listing its recently updated runs; one sweeper per account at a
    time across all workers."""

    api: ExtendApi
    store: RedisJobStore
    client: redis.Redis
    config: SweepConfig
    limiter: RateLimiter | None = None
    # Hands ended runs of our batches to the adopting task, with the account (tenant) they belong to.
    adopt: Callable[[list[str], str | None], None] | None = None
    tenant: str | None = None  # the account swept: a tenant's, or None for the default one
    tenants: Collection[str] = ()  # the tenants configured (the default account's jobs are all the others)
    clock: Callable[[], float] = time.time
    # Waits for a reserved token, in the sweeper's own thread; True means stop (the worker is shutting down).
    sleep: Callable[[float], bool] = _sleep
    _token: str = field(default_factory=lambda: uuid.uuid4().hex)
    # This process's recent sweeps (start on its clock, seconds since the sweep before, jobs made due) and the wait
    # it chose from them; empty and None while it does not sweep.
    _recent: list[tuple[float, float, int]] = field(default_factory=list)
    _next_s: float | None = None

    @property
    def interval_s(self) -> float:
        """The wait from one sweep's start to the next: `busy_interval_s` while runs end fast, else `interval_s`."""
        return self._next_s if self._next_s is not None else self.config.interval_s

    def sweep_once(self) -> int:
        """One sweep if this process leads and sweeps are wanted; how many jobs it made due."""
        if not self._wanted() or not self._lead():
            self._recent, self._next_s = [], None
            return 0
        keys = self.store.keys
        started = self.clock()
        try:
            ended, reach, updated = self._ended_since(self._window_start(started) - _SKEW_S, self._budget_s(started))
        except AuthFailed:
            self._refused(started)
            raise
        made_due = self._make_due(ended)
        if reach == "too_far":
            made_due += self._give_way(started)
        pipe = self.client.pipeline()
        if reach != "cut_short":  # a sweep cut short (no token) leaves the mark, so the next one looks as far back
            pipe.set(keys.sweep("mark", self.tenant), repr(started))
        pipe.set(keys.sweep("active", self.tenant), "1", px=int(self.config.interval_s * 3000))
        pipe.execute()
        self._pace(started, made_due, updated)
        return made_due

    def _pace(self, started: float, made_due: int, updated: int) -> None:
        """Set the next interval: the busy one after a sweep that made as many jobs due as a busy sweep must (ten a
        second's worth: 5 by default) or saw as many runs a second updated (runs being created fast end fast soon
        after), and while the sweeps of the last five intervals made as many due a second; `interval_s` otherwise.
        Runs end in waves under load, and a lull of a second or two must not leave the next wave waiting for a slow
        sweep; a sweep that found a wave is followed by a quick one, which finds out whether it goes on."""
        busy, interval, wanted = self.config.busy_interval_s, self.config.interval_s, self.config.busy_ended_per_s
        rps = self._requests_per_second
        if busy is not None and rps:
            busy = max(busy, 1 / (self.config.max_share * rps))  # a page a sweep stays within the sweeps' share
        if busy is None or busy >= interval:
            self._next_s = interval
            return
        span = started - self._recent[-1][0] if self._recent else interval
        horizon = started - interval * _RATE_INTERVALS
        self._recent = [entry for entry in self._recent if entry[0] > horizon] + [(started, span, made_due)]
        rate = sum(due for _, _, due in self._recent) / max(sum(span for _, span, _ in self._recent), busy)
        fast = made_due >= wanted * busy or updated >= wanted * max(span, busy) or rate >= wanted
        self._next_s = busy if fast else interval

    def active(self) -> bool:
        """Whether sweeps are running now (checks then stretch to the safety net)."""
        return bool(self.client.exists(self.store.keys.sweep("active", self.tenant)))

    def _window_start(self, started: float) -> float:
        """Where this sweep looks back to: where the last complete one began, or where the sweeps began.

        The first sweep's start is written before it lists anything, so a first sweep that fails or is cut short
        leaves it for the next: checks stretch as soon as sweeps are due, and the runs that end meanwhile must
        not fall out of the window (their jobs would wait for the safety-net check).
        """
        key = self.store.keys.sweep("mark", self.tenant)
        pipe = self.client.pipeline()
        pipe.set(key, repr(started - self.config.interval_s), nx=True)
        pipe.get(key)
        return float(pipe.execute()[1])

    def _wanted(self) -> bool:
        mode = self.config.mode
        if mode == "off" or (mode == "auto" and self._in_flight() < self.config.min_in_flight):
            # Sweeps stopped: a later start opens a new window (the jobs are back to regular checks).
            self.client.delete(self.store.keys.sweep("active", self.tenant), self.store.keys.sweep("mark", self.tenant))
            self._hand_back()
            return False
        return True

    def _hand_back(self) -> None:
        """Sweeps stopped: jobs whose checks were stretched for them go back to the normal cadence."""
        stretched = self.store.stretched(tenant=self.tenant)
        if not stretched:
            return
        now, within = self.clock(), self.config.hand_back_within_s
        self.store.bring_forward({job: now + random.random() * within for job in self.store.unfinished(stretched)})
        self.store.unstretch(stretched, self.tenant)
        log.info("sweeps stopped: %d jobs back to regular checks", len(stretched))

    def _in_flight(self) -> int:
        return self.store.in_flight_of(self.tenant, tenants=self.tenants)

    def _lead(self) -> bool:
        key, ttl_ms = self.store.keys.sweep("leader", self.tenant), int(self.config.interval_s * 3000)
        if self.client.set(key, self._token, nx=True, px=ttl_ms):
            return True
        if self.client.get(key) in (self._token, self._token.encode()):
            self.client.pexpire(key, ttl_ms)
            return True
        return False

    def _ended_since(self, since: float, budget_s: float) -> tuple[list[dict[str, Any]], Reach, int]:
        """Summaries of runs that ended since `since`, how far the listing got: back to `since` ("complete"),
        stopped for want of a token ("cut_short"), or out of pages before it ("too_far"), and how many runs were
        updated (created, moved on or ended) since the last sweep began (`since` less the skew)."""
        ended: list[dict[str, Any]] = []
        token: str | None = None
        updated = 0
        size = min(max(self.config.page_size, self._in_flight()), self.config.max_page_size)
        for _ in range(self._page_budget(budget_s)):
            if not self._paced():
                return ended, "cut_short", updated
            page = self._page(token, size)
            summaries: list[dict[str, Any]] = page.get("data") or []
            for summary in summaries:
                at = api_time(summary.get("updatedAt"))
                if at < since:
                    return ended, "complete", updated
                updated += at >= since + _SKEW_S
                if is_terminal(summary.get("status")):
                    ended.append(summary)
            token = page.get("nextPageToken")
            if not token:
                return ended, "complete", updated
        return ended, "too_far", updated

    @property
    def _requests_per_second(self) -> float | None:
        """The account's request limit (None: no limit, or no limiter)."""
        return self.limiter.limits.requests_per_second if self.limiter is not None else None

    def _budget_s(self, started: float) -> float:
        """The seconds of the request budget this sweep may spend its share of: those since the last sweep, at most
        an interval."""
        since = started - self._recent[-1][0] if self._recent else self.config.interval_s
        return min(max(since, 0.0), self.config.interval_s)

    def _page_budget(self, seconds: float) -> int:
        """Pages one sweep may list: `max_pages`, and no more than its share of the pool's request rate over
        `seconds`."""
        rps = self._requests_per_second
        if not rps:
            return self.config.max_pages
        share = int(self.config.max_share * rps * seconds)
        return max(1, min(self.config.max_pages, share))

    def _give_way(self, now: float) -> int:
        """The window is out of a sweep's reach (a long outage or pause): the jobs whose checks were stretched
        for sweeps get checks of their own now, which cover the gap, and the next sweep starts a new window."""
        handed = self._hand_over(now)
        log.warning("a sweep could not reach its window: %d jobs get checks of their own", handed)
        return handed

    def _refused(self, now: float) -> None:
        """The account refuses the key (revoked, unpaid: 401/402/403): no sweep stands in for its jobs' checks
        while it does. They are checked now, each failing with the error it gets, instead of at the safety net."""
        handed = self._hand_over(now)
        self.client.delete(self.store.keys.sweep("active", self.tenant))
        log.warning("the account refused the sweep's key: %d jobs get checks of their own", handed)

    def _hand_over(self, now: float) -> int:
        stretched = self.store.stretched(tenant=self.tenant)
        unfinished = self.store.unfinished(stretched)
        self.store.make_due(unfinished, now)
        self.store.unstretch(stretched, self.tenant)
        return len(unfinished)

    def _paced(self) -> bool:
        """Wait for a page's token, reserved in line with the jobs'; False: none within reach, or stopping."""
        if self.limiter is None:
            return True
        return self.limiter.wait_turn(self.sleep, max_wait_s=self.config.max_wait_s, on_wait=self._keep_lead) is None

    def _keep_lead(self, wait_s: float) -> None:
        # Waiting for a token may outlast the lease: keep it, so no other process starts a sweep meanwhile.
        key = self.store.keys.sweep("leader", self.tenant)
        if self.client.get(key) in (self._token, self._token.encode()):
            self.client.pexpire(key, int((wait_s + self.config.interval_s * 3) * 1000))

    def _page(self, token: str | None, size: int) -> dict[str, Any]:
        """One page of recently updated runs; a 429 pauses the pool, as any other call's does."""
        try:
            return self.api.list_runs(sortBy="updatedAt", sortDir="desc", maxPageSize=size, nextPageToken=token)
        except RateLimited as exc:
            if self.limiter is not None:
                self.limiter.pause(exc.retry_after_s or 1.0)
            raise

    def _make_due(self, ended: list[dict[str, Any]]) -> int:
        run_ids = [str(summary["id"]) for summary in ended]
        owners = self.store.owners(run_ids)
        jobs = [job for job in owners if job is not None]
        unfinished = set(self.store.unfinished(jobs))
        grace = self.config.webhook_grace_s
        # Due as of the run's end (plus the grace): the dispatcher claims the longest-waiting first, so a sweep's
        # batch of checks serves the runs that ended just after the previous sweep before those that just ended.
        due = {
            job: api_time(summary.get("updatedAt")) + grace
            for summary, job in zip(ended, owners, strict=True)
            if job in unfinished
        }
        self.store.bring_forward(due)
        self.store.unstretch(jobs, self.tenant)
        adopted = self._adopt_batch_runs([s for s, owner in zip(ended, owners, strict=True) if owner is None])
        return len(due) + adopted

    def _adopt_batch_runs(self, unknown: list[dict[str, Any]]) -> int:
        """Runs of our batches have no owner until fetched once: hand them to the adopting task."""
        batched = [s for s in unknown if s.get("batchId")]
        if not batched or self.adopt is None:
            return 0
        ours = self.store.batches_known([str(s["batchId"]) for s in batched])
        run_ids = self._not_sent([str(s["id"]) for s, known in zip(batched, ours, strict=True) if known])
        if run_ids:
            self.adopt(run_ids, self.tenant)
        return len(run_ids)

    def _not_sent(self, run_ids: list[str]) -> list[str]:
        """The runs no sweep handed to an adopting task lately, marked as handed now. Under a busy limit an adoption
        waits for its token while the next sweeps list the run again: handed again each time, the adoptions of
        one run woke at the same token and each fetched it (twice the fetches, and more requests than tokens)."""
        pipe = self.store.client.pipeline(transaction=False)
        for run_id in run_ids:
            pipe.set(self.store.keys.adoption_sent(run_id), 1, nx=True, ex=_ADOPTION_SENT_S)
        return [run_id for run_id, fresh in zip(run_ids, pipe.execute(), strict=True) if fresh]


def run_forever(sweeper: Sweeper, stop: Callable[[float], bool]) -> None:
    """Sweep every interval until `stop(timeout)` answers True; errors are logged and the loop goes on."""

    def sweep() -> None:
        if due := sweeper.sweep_once():
            account = "" if sweeper.tenant is None else f" of tenant {sweeper.tenant}"
            log.info("sweep%s made %d finished runs due", account, due)

    repeat(sweep, every_s=lambda: sweeper.interval_s, stop=stop, what="sweep")
