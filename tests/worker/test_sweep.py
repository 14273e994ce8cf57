"""List sweeps on a real Redis: the window they look back over, their place in the rate limit, and 429s."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis

from extendq.errors import ApiUnavailable, AuthFailed, ExtendqError, RateLimited
from extendq.worker.keys import Keys
from extendq.worker.models import JobRequest
from extendq.worker.ratelimit import Bucket, Limits, RateLimiter
from extendq.worker.store import RedisJobStore
from extendq.worker.sweep import SweepConfig, Sweeper

KEYS = Keys("extendq-sw:")


class ListingApi:
    """Answers list calls from a script: an error to raise, or the runs of one page."""

    def __init__(self, *answers: ExtendqError | list[dict[str, Any]]) -> None:
        self.answers = list(answers)
        self.lists = 0
        self.page_sizes: list[int] = []

    def list_runs(self, **params: Any) -> dict[str, Any]:
        self.lists += 1
        self.page_sizes.append(params["maxPageSize"])
        answer = self.answers.pop(0) if self.answers else []
        if isinstance(answer, ExtendqError):
            raise answer
        return {"data": answer, "nextPageToken": None}

    def create_run(self, body: dict[str, Any]) -> dict[str, Any]:
        raise AssertionError("sweeps only list")

    def get_run(self, run_id: str) -> dict[str, Any]:
        raise AssertionError("sweeps only list")

    def create_batch(self, body: dict[str, Any]) -> str:
        raise AssertionError("sweeps only list")

    def cancel_run(self, run_id: str) -> dict[str, Any]:
        raise AssertionError("sweeps only list")

    def upload(self, path: str, name: str | None = None) -> str:
        raise AssertionError("sweeps only list")

    def recent_runs(
        self, workflow_id: str, since: float, pace: Callable[[], None] | None = None
    ) -> Iterator[dict[str, Any]]:
        raise AssertionError("sweeps only list")

    def close(self) -> None:
        pass


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def ended(run_id: str, at: float) -> dict[str, Any]:
    updated = datetime.fromtimestamp(at, tz=UTC).isoformat().replace("+00:00", "Z")
    return {"id": run_id, "status": "PROCESSED", "updatedAt": updated}


def store_with_a_run(client: redis.Redis, *, now: float) -> RedisJobStore:
    """A store holding job-1, whose run workflow_run_1 is in flight, checked next far in the future."""
    store = RedisJobStore(client, keys=KEYS, result_ttl_s=60)
    request = JobRequest.parse({"workflow": "workflow_x", "file": {"id": "file_1"}})
    store.create("job-1", request, now=now, lease_s=1, secrets=None)
    store.record_run("job-1", "workflow_run_1", submitted_at=now)
    store.schedule("job-1", now + 300, stretched=True)
    return store


def sweeper(store: RedisJobStore, api: ListingApi, clock: Clock, **extra: Any) -> Sweeper:
    config = SweepConfig(mode="on", interval_s=2.0)
    return Sweeper(api=api, store=store, client=store.client, config=config, clock=clock, **extra)


def test_a_first_sweep_that_fails_keeps_its_window_for_the_next(redis_client: redis.Redis) -> None:
    # Given a run that ended at 1010, while the first sweep (at 1000) failed and the next came only at 1030
    clock = Clock(1000.0)
    store = store_with_a_run(redis_client, now=990.0)
    api = ListingApi(ApiUnavailable("Extend answered 503"), [ended("workflow_run_1", 1010.0)])
    sweeps = sweeper(store, api, clock)
    with pytest.raises(ApiUnavailable):
        sweeps.sweep_once()
    clock.now = 1030.0
    # When the next sweep succeeds
    made_due = sweeps.sweep_once()
    # Then it looked back to where the sweeps began and made the job due as of its run's end (so it is checked
    # ahead of jobs whose runs ended later), not at its safety-net check
    assert made_due == 1
    assert store.due_at("job-1") == 1010.0


def test_with_webhooks_a_sweep_leaves_an_ended_run_to_its_webhook_for_the_grace(redis_client: redis.Redis) -> None:
    # Given webhooks on with a 15 s grace, and a run that ended at 1010, found by a sweep at 1012
    store = store_with_a_run(redis_client, now=990.0)
    api = ListingApi([ended("workflow_run_1", 1010.0)])
    config = SweepConfig(mode="on", interval_s=2.0, webhook_grace_s=15.0)
    made_due = Sweeper(api=api, store=store, client=store.client, config=config, clock=Clock(1012.0)).sweep_once()
    # Then its job is checked 15 s after the run's end (not now, not at its safety-net check at 1290)
    assert (made_due, store.due_at("job-1")) == (1, 1025.0)
    # And a job already due sooner keeps its earlier time
    store.schedule("job-1", 1011.0)
    api.answers.append([ended("workflow_run_1", 1010.0)])
    Sweeper(api=api, store=store, client=store.client, config=config, clock=Clock(1014.0)).sweep_once()
    assert store.due_at("job-1") == 1011.0


@pytest.mark.parametrize("within_s", [1.0, 60.0])
def test_sweeps_stopping_hand_stretched_jobs_back_within_their_regular_cadence(
    redis_client: redis.Redis, within_s: float
) -> None:
    # Given a job whose check was stretched to 1290 for sweeps
    store = store_with_a_run(redis_client, now=990.0)
    # When sweeps stop at 1000 (fewer jobs in flight than the threshold)
    config = SweepConfig(mode="auto", min_in_flight=5, hand_back_within_s=within_s)
    Sweeper(api=ListingApi(), store=store, client=redis_client, config=config, clock=Clock(1000.0)).sweep_once()
    # Then it is checked within the hand-back time (1 s polling, the webhook check interval with webhooks)
    due = store.due_at("job-1")
    assert due is not None and 1000.0 <= due <= 1000.0 + within_s
    assert store.stretched() == []


def test_sweeps_stopping_close_their_window(redis_client: redis.Redis) -> None:
    clock = Clock(1000.0)
    store = store_with_a_run(redis_client, now=990.0)
    api = ListingApi()
    assert sweeper(store, api, clock).sweep_once() == 0
    assert redis_client.exists(KEYS.sweep("mark"))
    # When sweeps are no longer wanted (fewer jobs in flight than the threshold)
    config = SweepConfig(mode="auto", min_in_flight=5)
    Sweeper(api=api, store=store, client=redis_client, config=config, clock=clock).sweep_once()
    # Then the next start opens a new window instead of listing back to the old one
    assert not redis_client.exists(KEYS.sweep("mark"))


@pytest.mark.parametrize(("in_flight", "page_size"), [(1, 100), (450, 450), (5000, 1000)])
def test_a_sweep_reads_the_runs_in_flight_in_one_page(
    redis_client: redis.Redis, in_flight: int, page_size: int
) -> None:
    # Given this many jobs in flight (one of them with a run)
    store = store_with_a_run(redis_client, now=990.0)
    for index in range(2, in_flight + 1):
        store.schedule(f"job-{index}", 2000.0)
    api = ListingApi()
    # When a sweep lists recently updated runs
    sweeper(store, api, Clock(1000.0)).sweep_once()
    # Then its page is as long as the jobs in flight, within 100 and the endpoint's maximum of 1,000
    assert api.page_sizes == [page_size]


def test_a_sweep_waits_its_turn_for_a_token_instead_of_giving_up(redis_client: redis.Redis) -> None:
    # Given a limit of 10 requests per second whose next 5 tokens jobs have already reserved
    limiter = RateLimiter(redis_client, keys=KEYS, limits=Limits(requests_per_second=10))
    before = limiter.server_time()
    for _ in range(5):
        limiter.reserve(Bucket.REQUESTS)
    waits: list[float] = []
    api = ListingApi()
    sweeps = sweeper(store_with_a_run(redis_client, now=990.0), api, Clock(1000.0), limiter=limiter)
    sweeps.sleep = lambda seconds: bool(waits.append(seconds))
    # When a sweep is due
    sweeps.sweep_once()
    elapsed = limiter.server_time() - before
    # Then it waited for the token after theirs (0.575 s after the first, less the time gone since) and listed
    assert api.lists == 1
    assert len(waits) == 1 and 0.575 - elapsed - 1e-3 <= waits[0] <= 0.575 + 1e-3, (waits, elapsed)
    assert redis_client.get(KEYS.sweep("mark")) == repr(1000.0)


def test_a_sweep_told_to_stop_while_waiting_lists_nothing(redis_client: redis.Redis) -> None:
    limiter = RateLimiter(redis_client, keys=KEYS, limits=Limits(requests_per_second=10))
    limiter.reserve(Bucket.REQUESTS)
    api = ListingApi()
    sweeps = sweeper(store_with_a_run(redis_client, now=990.0), api, Clock(1000.0), limiter=limiter)
    sweeps.sleep = lambda seconds: True
    sweeps.sweep_once()
    assert api.lists == 0


def test_a_429_on_a_sweep_pauses_the_whole_pool(redis_client: redis.Redis) -> None:
    limiter = RateLimiter(redis_client, keys=KEYS, limits=Limits(requests_per_second=100))
    api = ListingApi(RateLimited("Extend rate limit", 2.0))
    sweeps = sweeper(store_with_a_run(redis_client, now=990.0), api, Clock(1000.0), limiter=limiter)
    before = limiter.server_time()
    with pytest.raises(RateLimited):
        sweeps.sweep_once()
    after = limiter.server_time()
    grant = limiter.reserve(Bucket.REQUESTS)
    assert grant.reserved and grant.slot is not None and before + 2.0 <= grant.slot <= after + 2.0


class EndlessListing(ListingApi):
    """Every page holds a run updated after any window: the listing never gets back to its mark."""

    def list_runs(self, **params: Any) -> dict[str, Any]:
        self.lists += 1
        self.page_sizes.append(params["maxPageSize"])
        return {"data": [ended(f"workflow_run_other_{self.lists}", 5000.0)], "nextPageToken": "more"}


def test_a_window_out_of_reach_gives_way_to_checks_of_their_own(redis_client: redis.Redis) -> None:
    # Given a pool held to 10 requests/s whose sweep window lies further back than any sweep can page
    # (a long outage on a busy account), and job-1's check stretched to its safety net at 1290
    clock = Clock(1000.0)
    store = store_with_a_run(redis_client, now=990.0)
    limiter = RateLimiter(redis_client, keys=KEYS, limits=Limits(requests_per_second=10))
    api = EndlessListing()
    sweeps = sweeper(store, api, clock, limiter=limiter)
    sweeps.sleep = lambda seconds: False  # the token waits pass at once
    # When a sweep runs, and the next one after it
    sweeps.sweep_once()
    first = api.lists
    clock.now = 1002.0
    sweeps.sweep_once()
    # Then each listed its share of the requests (0.25 x 10/s x 2 s = 5 pages), not 50 pages every time;
    # job-1 was handed a check of its own at once, and the window moved on to the latest sweep
    assert (first, api.lists) == (5, 10)
    assert store.due_at("job-1") == 1000.0
    assert store.stretched() == []
    assert redis_client.get(KEYS.sweep("mark")) == repr(1002.0)


def store_with_runs(client: redis.Redis, count: int, *, now: float) -> RedisJobStore:
    """A store holding job-1..job-`count`, whose runs workflow_run_<i> are in flight, checked far in the future."""
    store = RedisJobStore(client, keys=KEYS, result_ttl_s=60)
    request = JobRequest.parse({"workflow": "workflow_x", "file": {"id": "file_1"}})
    for index in range(1, count + 1):
        store.create(f"job-{index}", request, now=now, lease_s=1, secrets=None)
        store.record_run(f"job-{index}", f"workflow_run_{index}", submitted_at=now)
        store.schedule(f"job-{index}", now + 300, stretched=True)
    return store


def test_sweeps_come_sooner_while_many_runs_end_and_slow_down_when_few_do(redis_client: redis.Redis) -> None:
    # Given 30 runs that all ended within the first sweep's 2 s window, and none after
    clock = Clock(1000.0)
    store = store_with_runs(redis_client, 30, now=990.0)
    api = ListingApi([ended(f"workflow_run_{index}", 999.0) for index in range(1, 31)])
    sweeps = sweeper(store, api, clock)
    assert sweeps.interval_s == 2.0
    # When the first sweep makes them due (15 a second, above the 10 that make sweeps busy)
    assert sweeps.sweep_once() == 30
    # Then sweeps come every 0.5 s while the last 2 s of sweeps made 10 jobs due a second or more (30 in 3 s)
    intervals = []
    for now in (1000.5, 1001.0, 1001.5):
        clock.now = now
        assert sweeps.sweep_once() == 0
        intervals.append(sweeps.interval_s)
    # And every 2 s once fewer (30 in 3.5 s)
    assert intervals == [0.5, 0.5, 2.0]


def test_a_few_ended_runs_keep_the_interval_after_one_quick_sweep(redis_client: redis.Redis) -> None:
    # Given 15 runs ended in a sweep's 2 s window: 7.5 a second
    clock = Clock(1000.0)
    store = store_with_runs(redis_client, 15, now=990.0)
    api = ListingApi([ended(f"workflow_run_{index}", 999.0) for index in range(1, 16)])
    sweeps = sweeper(store, api, clock)
    # When they are swept: a sweep that made 5 or more due is followed by a busy one, which finds out whether more end
    assert sweeps.sweep_once() == 15 and sweeps.interval_s == 0.5
    clock.now = 1000.5
    # Then, 15 in 2.5 s being under 10 a second, the next sweep comes after the interval
    assert sweeps.sweep_once() == 0 and sweeps.interval_s == 2.0


def test_with_no_busy_interval_sweeps_keep_theirs_however_many_runs_end(redis_client: redis.Redis) -> None:
    # Given sweeps with no busy interval (webhooks on: they only catch missed deliveries), and 30 runs ended
    store = store_with_runs(redis_client, 30, now=990.0)
    api = ListingApi([ended(f"workflow_run_{index}", 999.0) for index in range(1, 31)])
    config = SweepConfig(mode="on", interval_s=1.0, busy_interval_s=None)
    sweeps = Sweeper(api=api, store=store, client=redis_client, config=config, clock=Clock(1000.0))
    # When they are swept, then the next sweep comes after the interval
    assert sweeps.sweep_once() == 30 and sweeps.interval_s == 1.0


def _tenant_job(store: RedisJobStore, job_id: str, run_id: str, *, tenant: str, now: float) -> None:
    request = JobRequest.parse({"workflow": "workflow_x", "file": {"id": "file_1"}, "tenant": tenant})
    store.create(job_id, request, now=now, lease_s=1, secrets=None)
    store.record_run(job_id, run_id, submitted_at=now)
    store.schedule(job_id, now + 300, stretched=True, tenant=tenant)


def test_a_tenants_sweep_lists_its_own_account_and_keeps_its_own_window(redis_client: redis.Redis) -> None:
    # Given a default job and two of acme's in flight, each checked next far in the future
    store = store_with_a_run(redis_client, now=990.0)
    _tenant_job(store, "acme-1", "workflow_run_a1", tenant="acme", now=990.0)
    _tenant_job(store, "acme-2", "workflow_run_a2", tenant="acme", now=990.0)
    acme_api = ListingApi([ended("workflow_run_a1", 1005.0)])
    config = SweepConfig(mode="auto", min_in_flight=2, interval_s=2.0)
    acme = Sweeper(api=acme_api, store=store, client=redis_client, config=config, clock=Clock(1010.0), tenant="acme")
    # When acme's sweeper runs (two of its jobs in flight: its threshold)
    made_due = acme.sweep_once()
    # Then it listed acme's account and made acme's job due as of its run's end, in acme's own sweep state
    assert (acme_api.lists, made_due, store.due_at("acme-1")) == (1, 1, 1005.0)
    assert store.stretched(tenant="acme") == ["acme-2"] and store.stretched() == ["job-1"]
    assert redis_client.exists(KEYS.sweep("active", "acme"), KEYS.sweep("mark", "acme")) == 2
    assert not redis_client.exists(KEYS.sweep("active"), KEYS.sweep("mark"))


def test_the_default_accounts_sweeps_do_not_count_a_tenants_jobs(redis_client: redis.Redis) -> None:
    # Given one default job and three of acme's in flight, and a threshold of two jobs in flight
    store = store_with_a_run(redis_client, now=990.0)
    for index in range(3):
        _tenant_job(store, f"acme-{index}", f"workflow_run_a{index}", tenant="acme", now=990.0)
    config = SweepConfig(mode="auto", min_in_flight=2, interval_s=2.0)
    api = ListingApi()
    default = Sweeper(api=api, store=store, client=redis_client, config=config, clock=Clock(1000.0), tenants={"acme"})
    # When the default account's sweeper runs, it does not sweep: it has one job in flight, not four
    assert default.sweep_once() == 0 and api.lists == 0
    # And its stretched job is handed back, while acme's stay stretched for acme's sweeps
    assert store.stretched() == [] and len(store.stretched(tenant="acme")) == 3


def test_busy_sweeps_keep_to_their_share_of_a_small_request_limit(redis_client: redis.Redis) -> None:
    # Given a pool held to 4 requests/s (a quarter of it: one page a second) and 30 runs ended
    store = store_with_runs(redis_client, 30, now=990.0)
    limiter = RateLimiter(redis_client, keys=KEYS, limits=Limits(requests_per_second=4))
    api = ListingApi([ended(f"workflow_run_{index}", 999.0) for index in range(1, 31)])
    sweeps = sweeper(store, api, Clock(1000.0), limiter=limiter)
    sweeps.sleep = lambda seconds: False
    # When they are swept, then busy sweeps come every second, not every 0.5 s
    assert sweeps.sweep_once() == 30 and sweeps.interval_s == 1.0


def test_a_sweep_that_finds_fewer_than_a_busy_sweeps_worth_keeps_the_interval(redis_client: redis.Redis) -> None:
    # Given 4 runs ended in a sweep's 2 s window (a busy sweep stands in for 5 checks at least)
    store = store_with_runs(redis_client, 4, now=990.0)
    api = ListingApi([ended(f"workflow_run_{index}", 999.0) for index in range(1, 5)])
    sweeps = sweeper(store, api, Clock(1000.0))
    # When they are swept, then the next sweep comes after the interval
    assert sweeps.sweep_once() == 4 and sweeps.interval_s == 2.0


def test_runs_created_fast_make_the_next_sweep_quick_before_any_ends(redis_client: redis.Redis) -> None:
    # Given 30 runs created within the last 2 s, none ended yet (a pool that just started to take 15 jobs a second)
    store = store_with_runs(redis_client, 30, now=990.0)
    running = [{**ended(f"workflow_run_{index}", 999.0), "status": "PROCESSING"} for index in range(1, 31)]
    sweeps = sweeper(store, ListingApi(running), Clock(1000.0))
    # When they are swept, then nothing is due yet, but the next sweep comes after the busy interval
    assert sweeps.sweep_once() == 0 and sweeps.interval_s == 0.5


def test_a_key_the_account_refuses_hands_the_stretched_jobs_back_to_their_checks_at_once(
    redis_client: redis.Redis,
) -> None:
    # Given job-1's check stretched to the safety net at 1290 for sweeps, and an account that now refuses the key
    store = store_with_a_run(redis_client, now=990.0)
    api = ListingApi(AuthFailed("Extend answered 401: invalid API key", status_code=401))
    sweeps = sweeper(store, api, Clock(1000.0))
    redis_client.set(KEYS.sweep("active"), "1")
    # When a sweep runs, then it fails with the account's error
    with pytest.raises(AuthFailed):
        sweeps.sweep_once()
    # And job-1 is checked now (its check meets the same error and fails the job), no longer stretched
    assert store.due_at("job-1") == 1000.0 and store.stretched() == []
    assert not redis_client.exists(KEYS.sweep("active"))
