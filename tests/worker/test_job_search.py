"""Jobs found by filters a page at a time (`worker.job_search`), over jobs recorded and finished by the real store."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from extendq.errors import InvalidJobRequest
from extendq.worker.job_search import Cursor, JobFilter, JobPage, search
from extendq.worker.keys import Keys
from extendq.worker.models import JobState
from extendq.worker.store import RedisJobStore
from tests.support.jobs import finished_job, in_flight_job

KEYS = Keys("extendq:")
T0 = 1_800_000_000.0  # finish times are the test's own: only their order and distance matter


@pytest.fixture
def store(redis_client: redis.Redis) -> RedisJobStore:
    return RedisJobStore(redis_client, keys=KEYS, result_ttl_s=86_400)


def _ids(page: JobPage) -> list[str]:
    return [row["job_id"] for row in page.rows]


def _finished(wanted: dict[str, Any] | None = None) -> JobFilter:
    return JobFilter(view="finished", **(wanted or {}))


@pytest.fixture
def mixed(store: RedisJobStore) -> RedisJobStore:
    """Six finished jobs, one a second: every outcome kind, two workflows, the default account and two tenants."""
    jobs = [
        ("ok-1", "PROCESSED", "workflow_a", None, {"customer": "ACME Corp", "order": 1}),
        ("fail-1", "FAILED", "workflow_a", "acme", {"customer": "Globex"}),
        ("refused-1", "FAILURE", "workflow_b", None, {}),
        ("review-1", "NEEDS_REVIEW", "workflow_b", "globex", {"note": "Scan of page 2"}),
        ("fail-2", "FAILED", "workflow_b", None, {"customer": "acme corp"}),
        ("ok-2", "PROCESSED", "workflow_a", "acme", {}),
    ]
    for i, (job_id, outcome, workflow, tenant, metadata) in enumerate(jobs):
        extra: dict[str, Any] = {"tenant": tenant} if tenant else {}
        finished_job(store, job_id, at=T0 + i, outcome=outcome, workflow=workflow, metadata=metadata, **extra)
    return store


def test_each_facet_finds_exactly_its_jobs_newest_first(mixed: RedisJobStore) -> None:
    # When each facet is asked for on its own
    found = {
        name: _ids(search(mixed, _finished(wanted)))
        for name, wanted in {
            "every": {},
            "failed": {"outcome": "FAILED"},
            "failure": {"outcome": "FAILURE"},
            "review": {"outcome": "NEEDS_REVIEW"},
            "cancelled": {"outcome": "CANCELLED"},
            "workflow_a": {"workflow": "workflow_a"},
            "acme": {"tenant": "acme"},
            "default": {"tenant": "default"},
            "nobody": {"tenant": "initech"},
        }.items()
    }
    # Then each finds exactly the jobs that match, the newest first
    assert found == {
        "every": ["ok-2", "fail-2", "review-1", "refused-1", "fail-1", "ok-1"],
        "failed": ["fail-2", "fail-1"],
        "failure": ["refused-1"],
        "review": ["review-1"],
        "cancelled": [],
        "workflow_a": ["ok-2", "fail-1", "ok-1"],
        "acme": ["ok-2", "fail-1"],
        "default": ["fail-2", "refused-1", "ok-1"],
        "nobody": [],
    }


def test_a_facet_reads_its_own_index_and_the_others_are_checked_on_the_records(mixed: RedisJobStore) -> None:
    # When an outcome, a workflow and a tenant are asked for together
    page = search(mixed, _finished({"outcome": "FAILED", "workflow": "workflow_b", "tenant": "default"}))
    # Then the outcome's index is read, and only its jobs are examined
    assert _ids(page) == ["fail-2"]
    assert (page.source, page.index_size, page.examined) == ("finished:outcome:FAILED", 2, 2)
    assert page.rows[0]["outcome"] == "FAILED" and page.rows[0]["run_id"] == "workflow_run_fail-2"
    assert page.next is None and page.complete


def test_a_time_range_bounds_the_finish_times_at_both_ends(mixed: RedisJobStore) -> None:
    # When a range covers the second to fourth finish times (both ends included)
    page = search(mixed, _finished({"since": T0 + 1, "until": T0 + 3}))
    since_only = search(mixed, _finished({"since": T0 + 4}))
    until_only = search(mixed, _finished({"until": T0 + 0.5}))
    # Then only the jobs finished within it are found
    assert _ids(page) == ["review-1", "refused-1", "fail-1"]
    assert _ids(since_only) == ["ok-2", "fail-2"]
    assert _ids(until_only) == ["ok-1"]


def test_text_is_found_in_the_metadata_without_case_and_in_the_ids(mixed: RedisJobStore) -> None:
    # When text is searched for in different cases, and a job's id and a run's id are searched for
    acme = _ids(search(mixed, _finished({"text": "AcMe CoRp"})))
    page = _ids(search(mixed, _finished({"text": "page 2"})))
    by_id = _ids(search(mixed, _finished({"text": "REFUSED-1"})))
    by_run = _ids(search(mixed, _finished({"text": "workflow_run_ok-2"})))
    none = _ids(search(mixed, _finished({"text": "initech"})))
    # Then each finds the jobs holding it, whatever its case
    assert acme == ["fail-2", "ok-1"]
    assert page == ["review-1"]
    assert by_id == ["refused-1"]
    assert by_run == ["ok-2"]
    assert none == []


def test_in_flight_jobs_are_found_by_state_tenant_and_enqueue_time(store: RedisJobStore) -> None:
    # Given four jobs in flight, one a second, and one that was in flight and finished
    in_flight_job(store, "queued-1", at=T0, state=JobState.QUEUED)
    in_flight_job(store, "running-1", at=T0 + 1, tenant="acme")
    in_flight_job(store, "submitting-1", at=T0 + 2, state=JobState.SUBMITTING)
    in_flight_job(store, "running-2", at=T0 + 3, metadata={"batch": "Night-Run"})
    in_flight_job(store, "done", at=T0 + 4)
    done = store.load("done")
    assert done is not None
    store.finish(done, now=T0 + 5, state=JobState.FAILURE, error="rejected", event={"job_id": "done"})
    # When the in-flight view is searched
    every = search(store, JobFilter())
    running = search(store, JobFilter(state="RUNNING"))
    acme = search(store, JobFilter(tenant="acme"))
    default = search(store, JobFilter(tenant="default", state="RUNNING"))
    ranged = search(store, JobFilter(since=T0 + 1, until=T0 + 2))
    text = search(store, JobFilter(text="night-run"))
    # Then the finished job is never among them, and each filter finds its jobs newest first
    assert _ids(every) == ["running-2", "submitting-1", "running-1", "queued-1"]
    assert [row["state"] for row in every.rows] == ["RUNNING", "SUBMITTING", "RUNNING", "QUEUED"]
    assert every.rows[0]["outcome"] is None and every.rows[0]["finished_at"] is None
    assert _ids(running) == ["running-2", "running-1"]
    assert _ids(acme) == ["running-1"] and acme.source == "tenant:acme:inflight"
    assert _ids(default) == ["running-2"]
    assert _ids(ranged) == ["submitting-1", "running-1"]
    assert _ids(text) == ["running-2"]


def test_walking_the_cursors_yields_every_job_once_in_order_through_ties(store: RedisJobStore) -> None:
    # Given 130 finished jobs; whole runs of them finished at the very same time (ties across page ends)
    times = [T0 + (i // 7) for i in range(130)]
    for i, at in enumerate(times):
        finished_job(store, f"job-{i:03d}", at=at, outcome="FAILED" if i % 2 else "PROCESSED")
    # When the pages are walked from the newest, 50 jobs a page, each page's `next` passed on as text
    pages: list[JobPage] = []
    cursor: Cursor | None = None
    while True:
        page = search(store, _finished(), cursor=cursor, page_size=50)
        pages.append(page)
        if page.next is None:
            break
        cursor = Cursor.parse(page.next.text())
    # Then three pages hold every job exactly once, by finish time newest first
    walked = [row for page in pages for row in page.rows]
    assert [len(page.rows) for page in pages] == [50, 50, 30]
    assert all(page.complete for page in pages)
    assert sorted(row["job_id"] for row in walked) == [f"job-{i:03d}" for i in range(130)]
    finish_times = [row["finished_at"] for row in walked]
    assert finish_times == sorted(finish_times, reverse=True)
    # And a page end inside a tie starts the next page on the rest of that tie
    assert pages[0].rows[-1]["finished_at"] == pages[1].rows[0]["finished_at"]


def test_a_filtered_walk_through_ties_finds_each_match_once(store: RedisJobStore) -> None:
    # Given 60 jobs all finished at the same time, every third one marked in its metadata
    for i in range(60):
        finished_job(store, f"job-{i:02d}", at=T0, metadata={"kind": "wanted" if i % 3 == 0 else "other"})
    # When the marked ones are walked 7 a page (the text is checked on the records, so pages skip the others)
    found: list[str] = []
    cursor: Cursor | None = None
    while True:
        page = search(store, _finished({"text": "WANTED"}), cursor=cursor, page_size=7)
        found += _ids(page)
        if page.next is None:
            break
        cursor = page.next
    # Then each marked job is found exactly once, though every cursor points into the one tie
    assert sorted(found) == [f"job-{i:02d}" for i in range(0, 60, 3)] and len(found) == 20


def test_a_read_budget_too_small_gives_a_partial_page_and_a_cursor_that_goes_on(store: RedisJobStore) -> None:
    # Given 130 finished jobs of which only three hold the text asked for, far apart
    rare = {5: "rare-a", 60: "rare-b", 85: "rare-c"}
    for i in range(130):
        finished_job(store, f"job-{i:03d}", at=T0 + i, metadata={"tag": rare.get(i, "common")})
    wanted = _finished({"text": "RARE"})
    # When a page may read only 40 records
    first = search(store, wanted, page_size=50, max_examined=40)
    # Then it is a partial page: what it found in its 40, and where to go on
    assert first.examined == 40 and not first.complete and first.next is not None
    assert _ids(first) == []  # the newest 40 (job-129 .. job-090) hold none
    # And following the cursors finds the three, newest first, each once
    found, pages = _ids(first), 1
    cursor: Cursor | None = first.next
    while cursor is not None:
        page = search(store, wanted, cursor=cursor, page_size=50, max_examined=40)
        found += _ids(page)
        cursor, pages = page.next, pages + 1
    assert found == ["job-085", "job-060", "job-005"]
    assert pages == 4


def test_a_full_page_before_the_budget_is_complete(store: RedisJobStore) -> None:
    for i in range(10):
        finished_job(store, f"job-{i}", at=T0 + i)
    page = search(store, _finished(), page_size=3, max_examined=5)
    assert _ids(page) == ["job-9", "job-8", "job-7"] and page.complete and page.examined == 3
    assert page.next == Cursor(T0 + 7, 1)


def test_a_job_whose_record_expired_is_skipped(mixed: RedisJobStore, redis_client: redis.Redis) -> None:
    # Given a job's record gone (expired) while its index entries remain
    redis_client.delete(KEYS.job("fail-2"))
    # When the jobs are searched
    every = search(mixed, _finished())
    failed = search(mixed, _finished({"outcome": "FAILED"}))
    # Then it is not shown, though it was read
    assert _ids(every) == ["ok-2", "review-1", "refused-1", "fail-1", "ok-1"] and every.examined == 6
    assert _ids(failed) == ["fail-1"]


def test_the_facet_indexes_keep_what_the_finished_index_keeps(store: RedisJobStore, redis_client: redis.Redis) -> None:
    # Given results kept 600 s, and a job finished 700 s before another of the same outcome, workflow and tenant
    short = RedisJobStore(redis_client, keys=KEYS, result_ttl_s=600)
    finished_job(short, "old", at=T0, outcome="FAILED", workflow="workflow_a", tenant="acme")
    finished_job(short, "new", at=T0 + 700, outcome="FAILED", workflow="workflow_a", tenant="acme")
    # Then the old entry left the finished index and every facet index with it
    facets = [KEYS.finished_by(facet, value) for facet, value in (("outcome", "FAILED"), ("workflow", "workflow_a"))]
    for key in (KEYS.finished, *facets, KEYS.finished_by("tenant", "acme")):
        assert redis_client.zrange(key, 0, -1) == ["new"], key
    # And each facet index expires with the results
    for key in (*facets, KEYS.finished_by("tenant", "acme")):
        assert 0 < redis_client.ttl(key) <= 600, key
    assert _ids(search(short, _finished({"outcome": "FAILED"}))) == ["new"]


def test_the_default_account_has_its_own_tenant_index(mixed: RedisJobStore, redis_client: redis.Redis) -> None:
    assert redis_client.zrevrange(KEYS.finished_by("tenant", ""), 0, -1) == ["fail-2", "refused-1", "ok-1"]


@pytest.mark.parametrize(
    ("wanted", "named"),
    [
        ({"view": "all"}, "view must be one of"),
        ({"state": "SUCCESS"}, "in flight is QUEUED, SUBMITTING, RUNNING"),
        ({"view": "finished", "state": "RUNNING"}, "finished is SUCCESS, FAILURE"),
        ({"outcome": "FAILED"}, "for finished jobs only"),
        ({"view": "finished", "outcome": "BROKEN"}, "outcome is one of"),
    ],
)
def test_bad_filter_values_are_refused(wanted: dict[str, Any], named: str) -> None:
    with pytest.raises(InvalidJobRequest, match=named):
        JobFilter(**wanted)


@pytest.mark.parametrize("text", ["", "abc", "1.5:x", "x:1"])
def test_a_bad_cursor_is_refused(text: str) -> None:
    with pytest.raises(InvalidJobRequest, match="not a page cursor"):
        Cursor.parse(text)


def test_a_cursor_reads_back_from_its_text() -> None:
    assert Cursor.parse(Cursor(1_800_000_000.123456, 3).text()) == Cursor(1_800_000_000.123456, 3)
    assert Cursor.parse("12.5") == Cursor(12.5, 0)
