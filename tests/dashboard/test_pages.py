"""The dashboard's pages in process on the module's Redis with no worker: mounted under another app's path, timed,
never showing per-run secrets, escaping what jobs recorded, filtering, charting, and streaming the overview."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from contextlib import suppress
from typing import Any

import httpx
import pytest
import redis
from starlette.applications import Starlette
from starlette.routing import Mount

from extendq.config.settings import Settings
from extendq.dashboard import create_app
from extendq.tasks.base import store_for
from extendq.tasks.producer import build_request
from extendq.worker.keys import Keys
from extendq.worker.models import JobState
from extendq.worker.secrets import new_key
from extendq.worker.store import RedisJobStore
from tests.support.asgi_client import AsgiClient, csrf_of
from tests.support.jobs import finished_job, in_flight_job

TOKEN = "dashboard-token-3f9a"
SECRETS_KEY = new_key()
PLAINTEXT = "hunter2-plaintext-password"
HOSTILE = "<script>alert('x')</script>"
KEYS = Keys("extendq:")
BEARER = {"Authorization": f"Bearer {TOKEN}"}
_LINK = re.compile(r'(?:href|action|src|data-stream)="([^"]*)"')


@pytest.fixture
def settings(module_redis_url: str, module_redis: redis.Redis) -> Settings:
    """A pool with a token, a PAYG rate limit (so the requests chart is drawn) and a key for per-run secrets."""
    return Settings.from_env(
        {
            "EXTENDQ_REDIS_URL": module_redis_url,
            "EXTEND_API_KEY": "sk_test",
            "EXTENDQ_BASE_URL": "http://127.0.0.1:9",
            "EXTENDQ_RATE_LIMIT_PLAN": "payg",
            "EXTENDQ_DASHBOARD_TOKEN": TOKEN,
            "EXTENDQ_SECRETS_KEY": SECRETS_KEY,
        }
    )


@pytest.fixture
def store(settings: Settings) -> RedisJobStore:
    """Jobs `failed-1`, `failed-2` (FAILED), `refused` (FAILURE), `ok` (PROCESSED), and `running` in flight."""
    store = store_for(settings)
    now = time.time()
    for i, (job_id, outcome) in enumerate(
        (("failed-1", "FAILED"), ("refused", "FAILURE"), ("ok", "PROCESSED"), ("failed-2", "FAILED"))
    ):
        finished_job(store, job_id, at=now - 60 + i, outcome=outcome)
    in_flight_job(store, "running", at=now - 30)
    return store


@pytest.fixture
def app(settings: Settings) -> Iterator[Starlette]:
    dashboard = create_app(settings)
    yield dashboard
    dashboard.state.dashboard.celery.close()


@pytest.fixture
def client(app: Starlette) -> Iterator[AsgiClient]:
    client = AsgiClient(app)
    yield client
    client.close()


@pytest.fixture
def mounted(app: Starlette) -> Iterator[AsgiClient]:
    """A client on another app that mounts the dashboard under `/ops`."""
    client = AsgiClient(Starlette(routes=[Mount("/ops", app=app)]))
    yield client
    client.close()


def _links(page: str) -> list[str]:
    return _LINK.findall(page)


def _rows(page: httpx.Response) -> list[str]:
    return re.findall(r'<tr data-job="([^"]*)">', page.text)


# ---- Mounted under another app ----


def test_mounted_under_a_path_every_link_and_form_follows_it(mounted: AsgiClient, store: RedisJobStore) -> None:
    # When every page is read through the mount, signed in (so the forms that act are shown too)
    paths = ["/ops/", "/ops/jobs", "/ops/jobs?view=finished", "/ops/jobs/failed-1", "/ops/jobs/running", "/ops/review"]
    pages = {path: mounted.get(path, headers=BEARER) for path in paths}
    # Then each is found, and each of its links, form actions, scripts and styles is under the mount
    for path, page in pages.items():
        assert page.status_code == 200, path
        links = _links(page.text)
        assert links, path
        assert [link for link in links if not link.startswith("/ops/")] == [], path
    forms = re.findall(r'action="([^"]*)"', " ".join(page.text for page in pages.values()))
    assert {"/ops/jobs", "/ops/logout", "/ops/jobs/retry-failed", "/ops/jobs/failed-1/retry"} <= set(forms)
    assert "/ops/jobs/running/cancel" in forms
    # And its static files are served there
    css = mounted.get("/ops/static/dashboard.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css") and "{" in css.text


def test_mounted_its_redirects_and_cookie_stay_under_the_mount(mounted: AsgiClient, store: RedisJobStore) -> None:
    # When one signs in through the mount, then retries a job with the cookie
    signed = mounted.post("/ops/login", data={"token": TOKEN})
    cookie = signed.headers["set-cookie"]
    session = {"Cookie": cookie.split(";", 1)[0]}
    csrf = csrf_of(mounted.get("/ops/jobs/refused", headers=session))
    retried = mounted.post("/ops/jobs/refused/retry", data={"csrf_token": csrf}, headers=session)
    # Then the cookie is the mount's, and each redirect goes to a page under it
    assert signed.headers["location"] == "/ops/?done=login" and "Path=/ops/" in cookie
    assert retried.status_code == 303 and re.fullmatch(r"/ops/jobs/[0-9a-f-]+\?done=retry", retried.headers["location"])


def test_mounted_the_live_overview_links_follow_the_mount(mounted: AsgiClient, store: RedisJobStore) -> None:
    # When the overview comes over server-sent events through the mount
    _, event = mounted.run(_first_overview(mounted.app, "/ops/api/stream"))
    # Then its links are under the mount, as those of the page it replaces are
    links = _links(event["html"])
    assert links and [link for link in links if not link.startswith("/ops/")] == []


# ---- Every response ----


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/", 200),
        ("GET", "/jobs", 200),
        ("GET", "/jobs/failed-1", 200),
        ("GET", "/jobs/failed-1.json", 200),
        ("GET", "/jobs/nope", 404),
        ("GET", "/jobs?since=yesterday", 400),
        ("GET", "/review", 200),
        ("GET", "/api/overview", 200),
        ("GET", "/login", 200),
        ("GET", "/health", 200),
        ("GET", "/static/dashboard.css", 200),
        ("GET", "/static/missing.css", 404),
        ("POST", "/jobs/failed-1/retry", 403),
        ("GET", "/no-such-page", 404),
    ],
)
def test_every_response_says_how_long_the_server_took(
    client: AsgiClient, store: RedisJobStore, method: str, path: str, status: int
) -> None:
    response = client.get(path) if method == "GET" else client.post(path)
    assert response.status_code == status
    assert re.fullmatch(r"app;dur=\d+\.\d", response.headers["server-timing"])


# ---- What a page never shows, and what it escapes ----


def test_per_run_secrets_are_never_shown(client: AsgiClient, store: RedisJobStore, module_redis: redis.Redis) -> None:
    # Given a job in flight submitted with per-run secrets, sealed with the pool's key
    request = build_request(
        secrets_key=SECRETS_KEY,
        workflow="workflow_x",
        file={"text": "Total: 1.00"},
        secrets={"password": PLAINTEXT},
        metadata={"order": 7},
    )
    sealed = request.secrets
    assert sealed and PLAINTEXT not in sealed
    store.create("secret-job", request, now=time.time(), lease_s=60, secrets=sealed)
    assert store.load("secret-job").secrets == sealed  # type: ignore[union-attr]
    # When its page, its JSON and the Jobs page are read, signed in
    shown = {
        path: client.get(path, headers=BEARER)
        for path in ("/jobs/secret-job", "/jobs/secret-job.json", "/jobs?q=secret-job", "/jobs?view=in_flight")
    }
    # Then none holds the sealed secrets, any piece of them, nor their plaintext
    for path, response in shown.items():
        assert response.status_code == 200, path
        assert PLAINTEXT not in response.text and sealed[:40] not in response.text and sealed[-40:] not in response.text
    data = shown["/jobs/secret-job.json"].json()
    assert "secrets" not in data["request"] and data["request"]["metadata"] == {"order": 7}


def test_every_value_a_job_recorded_is_escaped(
    client: AsgiClient, settings: Settings, module_redis: redis.Redis
) -> None:
    # Given a finished job whose id, metadata and error hold markup, and one in flight with markup in its metadata
    store = store_for(settings)
    hostile_id = "job-<img src=x onerror=alert(1)>"
    now = time.time()
    store.create(
        hostile_id,
        build_request(workflow="workflow_x", file={"text": "x"}, metadata={"note": HOSTILE}),
        now=now,
        lease_s=60,
        secrets=None,
    )
    record = store.load(hostile_id)
    assert record is not None
    store.finish(record, now=now, state=JobState.FAILURE, error=HOSTILE, event={"job_id": hostile_id})
    in_flight_job(store, "flying", at=now, metadata={"note": HOSTILE})
    # When the Jobs and Job pages show them
    pages = [
        client.get("/jobs?view=finished", headers=BEARER),
        client.get("/jobs?view=in_flight", headers=BEARER),
        client.get(f"/jobs/{hostile_id}", headers=BEARER),
        client.get("/jobs/flying", headers=BEARER),
        client.get("/jobs?q=" + HOSTILE),
    ]
    # Then no recorded markup reaches a page as markup
    for page in pages:
        assert page.status_code == 200
        assert "<script" not in page.text and "<img" not in page.text, page.url
    assert "job-&lt;img src=x onerror=alert(1)&gt;" in pages[0].text and "&lt;script&gt;" in pages[0].text
    assert "&lt;script&gt;" in pages[2].text  # the error, escaped


# ---- Filters ----


def test_a_bad_filter_is_a_page_naming_the_field(client: AsgiClient, store: RedisJobStore) -> None:
    for query, field in (("since=yesterday", "since"), ("until=soon", "until"), ("view=finished&state=RUNNING", "")):
        page = client.get(f"/jobs?{query}")
        assert page.status_code == 400 and "Bad filter" in page.text, query
        assert f"{field} takes an age" in page.text if field else "a job finished is" in page.text
    assert "not a page cursor" in client.get("/jobs?cursor=abc").text


def test_the_finished_failed_filter_lists_exactly_the_failed_jobs(client: AsgiClient, store: RedisJobStore) -> None:
    assert _rows(client.get("/jobs?view=finished&outcome=FAILED")) == ["failed-2", "failed-1"]
    assert _rows(client.get("/jobs?outcome=FAILURE")) == ["refused"]  # an outcome means the finished view
    assert _rows(client.get("/jobs?view=finished")) == ["failed-2", "ok", "refused", "failed-1"]
    assert _rows(client.get("/jobs")) == ["running"]
    assert _rows(client.get("/jobs?state=FAILURE")) == ["refused"]  # so does a finished state
    assert _rows(client.get("/jobs?state=RUNNING")) == ["running"]


def test_the_next_page_link_walks_every_job(client: AsgiClient, store: RedisJobStore) -> None:
    # Given 60 more finished jobs (64 in all), more than a page of 50
    now = time.time()
    for i in range(60):
        finished_job(store, f"more-{i:02d}", at=now - 30)
    # When the pages are followed by their `next` links
    seen: list[str] = []
    path: str | None = "/jobs?view=finished"
    while path is not None:
        page = client.get(path)
        seen += _rows(page)
        found = re.search(r'<a rel="next" href="([^"]*)"', page.text)
        path = found.group(1).replace("&amp;", "&") if found else None
    # Then every job is listed once
    assert len(seen) == 64 and len(set(seen)) == 64


# ---- Charts and the live overview ----


def test_the_charts_have_a_title_and_labelled_axes(client: AsgiClient, store: RedisJobStore) -> None:
    page = client.get("/").text
    assert page.count('<svg viewBox="0 0 640 220" role="img"') == 2
    for title, x_label, y_label in (
        ("Jobs finished per minute", "minute (UTC)", "jobs finished"),
        ("Extend requests per second (default)", "time (UTC)", "requests / s"),
    ):
        assert f"<title>{title}</title>" in page
        assert f'class="label">{x_label}</text>' in page and 'class="label" transform="rotate(-90' in page
        assert f">{y_label}</text>" in page
    assert 'aria-label="Jobs finished per minute: PROCESSED 1, FAILED 2, FAILURE 1 over 60 minutes"' in page


def test_the_stream_sends_the_overview_with_its_version_and_html(client: AsgiClient, store: RedisJobStore) -> None:
    # When the stream is opened
    started = time.time()
    start, event = client.run(_first_overview(client.app, "/api/stream"))
    # Then it is an event stream, not cached, whose first overview is versioned (ms) and rendered
    headers = dict(start["headers"])
    assert headers[b"content-type"].startswith(b"text/event-stream") and headers[b"cache-control"] == b"no-store"
    assert b"server-timing" in headers
    assert int(started * 1000) - 1000 <= event["version"] <= int(time.time() * 1000)
    assert 'data-count="in_flight"' in event["html"] and "<title>Jobs finished per minute</title>" in event["html"]


async def _first_overview(app: Any, path: str, timeout_s: float = 5.0) -> tuple[dict[str, Any], dict[str, Any]]:
    """The response start and the first `overview` event's data of a GET of `path`, calling the ASGI app directly
    (httpx's ASGI transport would wait for the endless stream's end); then the page leaves."""
    messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    gone = asyncio.Event()
    asked = False

    async def receive() -> dict[str, Any]:
        nonlocal asked
        if not asked:
            asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        await messages.put(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"dashboard"), (b"accept", b"text/event-stream")],
        "client": ("127.0.0.1", 50000),
        "server": ("dashboard", 80),
    }
    served = asyncio.create_task(app(scope, receive, send))
    try:
        async with asyncio.timeout(timeout_s):
            start = await messages.get()
            assert start["type"] == "http.response.start" and start["status"] == 200
            text = ""
            while (found := re.search(r"event: overview\ndata: (.*)\n\n", text)) is None:
                text += (await messages.get()).get("body", b"").decode()
    finally:
        gone.set()
        served.cancel()
        with suppress(asyncio.CancelledError):
            await served
    event: dict[str, Any] = json.loads(found.group(1))
    return start, event
