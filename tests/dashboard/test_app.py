"""The dashboard on a real Redis with no worker process: a worker entry and jobs put in place, then the JSON
equals the overview's own read and the page shows the same counts, with every recorded string escaped."""

from __future__ import annotations

import asyncio
import html
from collections.abc import Iterator

import httpx
import pytest
import redis
from starlette.applications import Starlette

from extendq.config.settings import Settings
from extendq.dashboard import create_app
from extendq.dashboard.app import templates
from extendq.tasks.base import store_for
from extendq.tasks.celery import create_app as create_celery
from extendq.tasks.overview import gather
from extendq.worker.keys import queue_lists
from tests.support.pool_state import record_pool

HOSTILE = "celery@<script>alert(1)</script>"


@pytest.fixture
def settings(module_redis_url: str, module_redis: redis.Redis) -> Iterator[Settings]:
    """A pool on the module's database, with a PAYG rate limit, a worker, two jobs in flight and a 429 pause."""
    module_redis.delete(*queue_lists("celery"))
    settings = Settings.from_env(
        {
            "EXTENDQ_REDIS_URL": module_redis_url,
            "EXTEND_API_KEY": "sk_test",
            "EXTENDQ_BASE_URL": "http://127.0.0.1:9",
            "EXTENDQ_RATE_LIMIT_PLAN": "payg",
        }
    )
    record_pool(settings, worker_name=HOSTILE)
    yield settings
    module_redis.delete(*queue_lists("celery"))


class Client:
    """GETs from the app in process, over httpx's ASGI transport."""

    def __init__(self, app: Starlette) -> None:
        self._app = app

    def get(self, path: str) -> httpx.Response:
        return asyncio.run(self._get(path))

    async def _get(self, path: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=self._app)
        async with httpx.AsyncClient(transport=transport, base_url="http://dashboard") as client:
            return await client.get(path)


@pytest.fixture
def client(settings: Settings) -> Client:
    return Client(create_app(settings))


def _expected(settings: Settings) -> dict[str, object]:
    celery_app = create_celery(settings)
    try:
        return gather(settings, celery_app, store_for(settings))
    finally:
        celery_app.close()


def test_api_overview_equals_the_overview_read(settings: Settings, client: Client) -> None:
    report = client.get("/api/overview").json()
    expected = _expected(settings)
    assert [part for part in report if part not in ("series", "review")] == list(expected)
    assert set(report["series"]["finished_last_hour"]) == {
        "PROCESSED",
        "FAILED",
        "FAILURE",
        "CANCELLED",
        "NEEDS_REVIEW",
        "REJECTED",
    }
    for part in ("queues", "misrouted", "sweeps", "webhooks"):
        assert report[part] == expected[part]
    assert report["jobs"]["in_flight"] == 2
    assert report["jobs"]["by_state"] == expected["jobs"]["by_state"]  # type: ignore[index]
    assert report["jobs"]["oldest"]["job_id"] == "job-old"
    assert [worker["name"] for worker in report["workers"]] == [HOSTILE]
    assert report["rate_limit"]["default"]["pauses_last_hour"] >= 1


def test_the_page_shows_the_counts_and_escapes_recorded_strings(settings: Settings, client: Client) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    report = _expected(settings)
    assert f'<span data-count="in_flight">{report["jobs"]["in_flight"]}</span>' in page  # type: ignore[index]
    assert '<span data-count="workers">1</span>' in page
    for state, count in report["jobs"]["by_state"].items():  # type: ignore[index]
        assert f'data-state="{state}">{count}</td>' in page
    for queue, depth in report["queues"].items():  # type: ignore[attr-defined]
        assert f'data-queue="{queue}">{depth["messages"]}</td>' in page
    pauses = report["rate_limit"]["default"]["pauses_last_hour"]  # type: ignore[index]
    assert f'data-pauses="default">{pauses}</td>' in page
    assert "<script>" not in page
    assert html.escape(HOSTILE, quote=False) in page


def test_templates_escape_every_value() -> None:
    assert templates().from_string("{{ value }}").render(value="<b>&") == "&lt;b&gt;&amp;"


def test_health(client: Client) -> None:
    response = client.get("/health")
    assert (response.status_code, response.text) == (200, "ok")
