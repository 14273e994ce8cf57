"""Who may act in the dashboard and what the actions do, in process on the module's Redis with no worker: refused
without credentials or without the identity's CSRF token (changing nothing), a token as a bearer header or a
session cookie, basic auth; a retry records the replay and queues its message, once."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis

from extendq.config.settings import Settings
from extendq.dashboard import create_app
from extendq.dashboard.auth import SESSION_COOKIE
from extendq.errors import ConfigError
from extendq.tasks.base import store_for
from extendq.worker.joblog import ACTION_STATE
from extendq.worker.keys import QUEUE, Keys, queue_lists
from extendq.worker.store import RedisJobStore
from tests.support.asgi_client import AsgiClient, csrf_of
from tests.support.jobs import finished_job, in_flight_job

TOKEN = "dashboard-token-7c1d"
USER, PASSWORD = "alice", "correct horse"
KEYS = Keys("extendq:")

Make = Callable[..., AsgiClient]


def _env(redis_url: str, **extra: str) -> dict[str, str]:
    return {
        "EXTENDQ_REDIS_URL": redis_url,
        "EXTEND_API_KEY": "sk_test",
        "EXTENDQ_BASE_URL": "http://127.0.0.1:9",
        **extra,
    }


@pytest.fixture
def make(module_redis_url: str, module_redis: redis.Redis) -> Iterator[Make]:
    """Builds the dashboard with the given `EXTENDQ_DASHBOARD_*` settings and a client on it (closed after)."""
    made: list[tuple[AsgiClient, Any]] = []

    def build(**dashboard: str) -> AsgiClient:
        extra = {f"EXTENDQ_DASHBOARD_{name.upper()}": value for name, value in dashboard.items()}
        app = create_app(Settings.from_env(_env(module_redis_url, **extra)), live=False)
        client = AsgiClient(app)
        made.append((client, app))
        return client

    yield build
    for client, app in made:
        client.close()
        app.state.dashboard.celery.close()


@pytest.fixture
def store(module_redis_url: str, module_redis: redis.Redis) -> RedisJobStore:
    """The module database's store, with jobs: `failed` (FAILED run), `refused` (FAILURE), `ok` (PROCESSED) of
    workflow_a, `failed-b` (FAILED) and `review-b` (NEEDS_REVIEW) of workflow_b, and `running` in flight."""
    store = store_for(Settings.from_env(_env(module_redis_url)))
    now = time.time()
    for i, (job_id, outcome, workflow) in enumerate(
        (
            ("failed", "FAILED", "workflow_a"),
            ("refused", "FAILURE", "workflow_a"),
            ("ok", "PROCESSED", "workflow_a"),
            ("failed-b", "FAILED", "workflow_b"),
            ("review-b", "NEEDS_REVIEW", "workflow_b"),
        )
    ):
        finished_job(store, job_id, at=now - 60 + i, outcome=outcome, workflow=workflow)
    in_flight_job(store, "running", at=now - 30)
    return store


def _bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _basic(user: str = USER, password: str = PASSWORD) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _queued(client: redis.Redis) -> int:
    """Messages waiting on the broker's `extendq` queue (every priority step)."""
    return sum(int(client.llen(name)) for name in queue_lists(QUEUE))


def _actions(client: redis.Redis) -> list[dict[str, str]]:
    """The ACTION entries of the events stream (dashboard actions told), oldest first."""
    entries: Any = client.xrange(KEYS.events)
    return [fields for _, fields in entries if fields.get("state") == ACTION_STATE]


def _replayed_as(client: redis.Redis, job_id: str) -> str | None:
    """The job a dashboard retry started for `job_id`, if any."""
    new_id: Any = client.get(KEYS.replayed(job_id))
    return None if new_id is None else str(new_id)


def _untouched(client: redis.Redis, job_ids: tuple[str, ...] = ("failed", "refused", "failed-b")) -> None:
    """Nothing an action would leave: no ACTION entry, no message queued, no replay marker, no new job."""
    assert _actions(client) == []
    assert _queued(client) == 0
    assert [job_id for job_id in job_ids if client.exists(KEYS.replayed(job_id))] == []
    assert len(list(client.scan_iter(match=KEYS.job("*")))) == 6


# ---- No credentials configured: read-only ----


def test_without_credentials_every_action_is_refused_and_no_page_offers_one(
    make: Make, store: RedisJobStore, module_redis: redis.Redis
) -> None:
    # Given a dashboard with no token and no user
    client = make()
    # When every action is posted, even with a bearer header and a made-up CSRF token
    posts = {
        path: client.post(path, data={"csrf_token": "0" * 64}, headers=_bearer()).status_code
        for path in ("/jobs/failed/retry", "/jobs/running/cancel", "/jobs/retry-failed", "/logout")
    }
    # Then each is refused, and nothing changed
    assert posts == dict.fromkeys(posts, 403)
    _untouched(module_redis)
    # And no page shows a form that acts, nor a way to sign in
    for path in ("/jobs/failed", "/jobs/running", "/jobs?view=finished", "/jobs"):
        page = client.get(path, headers=_bearer())
        assert page.status_code == 200 and 'method="post"' not in page.text and "csrf_token" not in page.text, path
        assert "Sign in" not in page.text
    login = client.get("/login")
    assert login.status_code == 403 and "read-only" in login.text


# ---- A token ----


def test_a_bearer_token_acts_and_a_wrong_one_is_refused(
    make: Make, store: RedisJobStore, module_redis: redis.Redis
) -> None:
    client = make(token=TOKEN)
    # Given the job's page as the token sees it, and as a wrong token sees it
    page = client.get("/jobs/failed", headers=_bearer())
    wrong = client.get("/jobs/failed", headers=_bearer("not-the-token"))
    assert 'action="/jobs/failed/retry"' in page.text and "signed in as token" in page.text
    assert "csrf_token" not in wrong.text and "Sign in" in wrong.text
    # When a wrong token posts the form with the right CSRF token
    refused = client.post("/jobs/failed/retry", data={"csrf_token": csrf_of(page)}, headers=_bearer("nope"))
    # Then it is refused and nothing changed
    assert refused.status_code == 403
    _untouched(module_redis)
    # When the token posts it
    done = client.post("/jobs/failed/retry", data={"csrf_token": csrf_of(page)}, headers=_bearer())
    # Then the job was retried
    assert done.status_code == 303 and module_redis.get(KEYS.replayed("failed")) is not None


def test_the_login_form_sets_a_strict_http_only_cookie_that_is_not_the_token(
    make: Make, store: RedisJobStore, module_redis: redis.Redis
) -> None:
    client = make(token=TOKEN)
    # Given the sign-in page, which asks for the token
    assert 'name="token"' in client.get("/login").text
    # When a wrong token is typed, then the right one
    wrong = client.post("/login", data={"token": "guess"})
    signed = client.post("/login", data={"token": TOKEN, "next": "/jobs/failed"})
    # Then the wrong one sets no cookie; the right one sets an HttpOnly SameSite=Strict cookie and goes on
    assert wrong.status_code == 403 and "set-cookie" not in wrong.headers
    assert (signed.status_code, signed.headers["location"]) == (303, "/jobs/failed")
    set_cookie = signed.headers["set-cookie"]
    name, _, rest = set_cookie.partition("=")
    value = rest.split(";", 1)[0]
    attributes = {part.strip().lower() for part in set_cookie.split(";")[1:]}
    assert name == SESSION_COOKIE and value and TOKEN not in set_cookie
    assert {"httponly", "samesite=strict", "path=/"} <= attributes
    # When the cookie carries the page's form back
    cookie = {"Cookie": f"{SESSION_COOKIE}={value}"}
    page = client.get("/jobs/refused", headers=cookie)
    done = client.post("/jobs/refused/retry", data={"csrf_token": csrf_of(page)}, headers=cookie)
    # Then it acts, and a forged cookie does not
    assert "signed in as token" in page.text and done.status_code == 303
    forged = {"Cookie": f"{SESSION_COOKIE}={TOKEN}"}
    assert client.post("/jobs/failed/retry", data={"csrf_token": csrf_of(page)}, headers=forged).status_code == 403
    assert module_redis.exists(KEYS.replayed("failed")) == 0


def test_signing_out_takes_the_cookie_away(make: Make, store: RedisJobStore) -> None:
    client = make(token=TOKEN)
    value = client.post("/login", data={"token": TOKEN}).headers["set-cookie"].partition("=")[2].split(";")[0]
    cookie = {"Cookie": f"{SESSION_COOKIE}={value}"}
    out = client.post("/logout", data={"csrf_token": csrf_of(client.get("/jobs", headers=cookie))}, headers=cookie)
    assert out.status_code == 303 and out.headers["location"] == "/?done=logout"
    assert f'{SESSION_COOKIE}=""' in out.headers["set-cookie"] and "Max-Age=0" in out.headers["set-cookie"]


@pytest.mark.parametrize("target", ["//evil.example", "//evil.example/jobs", "https://evil.example", "/\\evil.example"])
def test_login_never_sends_anyone_to_another_site(make: Make, target: str) -> None:
    client = make(token=TOKEN)
    # When one signs in with `next` naming another site, or visits the login page signed in
    signed = client.post("/login", data={"token": TOKEN, "next": target})
    visited = client.get("/login", params={"next": target}, headers=_bearer())
    # Then both stay on this site
    for response in (signed, visited):
        location = response.headers["location"]
        assert response.status_code == 303 and location.startswith("/"), location
        assert not location.startswith(("//", "/\\")) and "evil.example" not in httpx.URL(location).host


# ---- Basic auth ----


def test_basic_auth_asks_for_credentials_acts_with_them_and_refuses_wrong_ones(
    make: Make, store: RedisJobStore, module_redis: redis.Redis
) -> None:
    client = make(user=USER, password=PASSWORD)
    # When the login page is asked for without credentials
    asked = client.get("/login")
    # Then the browser is asked for a user and password
    assert asked.status_code == 401 and asked.headers["www-authenticate"].startswith('Basic realm="extendq dashboard"')
    assert client.get("/login", headers=_basic()).status_code == 303
    # When a wrong password posts the form the right user was shown
    page = client.get("/jobs/failed", headers=_basic())
    assert f"signed in as {USER}" in page.text
    refused = client.post("/jobs/failed/retry", data={"csrf_token": csrf_of(page)}, headers=_basic(password="wrong"))
    # Then it is refused and nothing changed
    assert refused.status_code == 403
    _untouched(module_redis)
    # And the right credentials act
    done = client.post("/jobs/failed/retry", data={"csrf_token": csrf_of(page)}, headers=_basic())
    assert done.status_code == 303
    assert [(entry["action"], entry["by"]) for entry in _actions(module_redis)] == [("retry", USER)]


@pytest.mark.parametrize(
    "dashboard",
    [{"EXTENDQ_DASHBOARD_USER": USER}, {"EXTENDQ_DASHBOARD_PASSWORD": PASSWORD}],
    ids=["user-only", "password-only"],
)
def test_a_user_without_a_password_is_refused_at_startup(module_redis_url: str, dashboard: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="EXTENDQ_DASHBOARD_USER and EXTENDQ_DASHBOARD_PASSWORD go together"):
        Settings.from_env(_env(module_redis_url, **dashboard))


# ---- CSRF ----


@pytest.mark.parametrize("path", ["/jobs/failed/retry", "/jobs/running/cancel", "/jobs/retry-failed"])
def test_a_form_without_its_identitys_csrf_token_changes_nothing(
    make: Make, store: RedisJobStore, module_redis: redis.Redis, path: str
) -> None:
    # Given a dashboard with both a token and a user, so two identities, each with its own CSRF token
    client = make(token=TOKEN, user=USER, password=PASSWORD)
    alices = csrf_of(client.get("/jobs/failed", headers=_basic()))
    tokens = csrf_of(client.get("/jobs/failed", headers=_bearer()))
    assert alices != tokens
    # When the token posts with no CSRF token, with alice's, and alice with the token's
    answers = [
        client.post(path, data={"view": "finished"}, headers=_bearer()).status_code,
        client.post(path, data={"view": "finished", "csrf_token": alices}, headers=_bearer()).status_code,
        client.post(path, data={"view": "finished", "csrf_token": tokens}, headers=_basic()).status_code,
    ]
    # Then every one is refused and nothing changed: no action told, no replay started, no marker set
    assert answers == [403, 403, 403]
    _untouched(module_redis)
    assert store.load("running") is not None and not store.load("running").cancel_requested  # type: ignore[union-attr]


# ---- What the actions do ----


def test_a_retry_records_the_replay_queues_it_and_shows_it_once(
    make: Make, store: RedisJobStore, module_redis: redis.Redis
) -> None:
    client = make(token=TOKEN)
    csrf = csrf_of(client.get("/jobs/refused", headers=_bearer()))
    queued = _queued(module_redis)
    # When the failed job is retried
    done = client.post("/jobs/refused/retry", data={"csrf_token": csrf}, headers=_bearer())
    # Then the new job is recorded as its replay, its message is queued, and its page is shown next
    assert done.status_code == 303
    new_id = _replayed_as(module_redis, "refused")
    assert new_id and done.headers["location"] == f"/jobs/{new_id}?done=retry"
    replay = store.load(new_id)
    assert replay is not None and replay.request.replay_of == "refused" and replay.request.workflow.id == "workflow_a"
    assert _queued(module_redis) == queued + 1
    assert [(entry["job_id"], entry["action"], entry["by"]) for entry in _actions(module_redis)] == [
        ("refused", "retry", "token")
    ]
    # And the old job's page links the new one and offers no second retry
    page = client.get("/jobs/refused", headers=_bearer())
    assert f'href="/jobs/{new_id}"' in page.text and 'action="/jobs/refused/retry"' not in page.text
    # When it is retried again
    again = client.post("/jobs/refused/retry", data={"csrf_token": csrf}, headers=_bearer())
    # Then nothing new is started
    assert again.status_code == 409 and new_id in again.text
    assert _queued(module_redis) == queued + 1 and len(_actions(module_redis)) == 1


def test_what_cannot_be_done_is_a_conflict_and_an_unknown_job_is_not_found(
    make: Make, store: RedisJobStore, module_redis: redis.Redis
) -> None:
    client = make(token=TOKEN)
    csrf = {"csrf_token": csrf_of(client.get("/jobs", headers=_bearer()))}
    answers = {
        "cancel a finished job": client.post("/jobs/failed/cancel", data=csrf, headers=_bearer()).status_code,
        "retry a processed job": client.post("/jobs/ok/retry", data=csrf, headers=_bearer()).status_code,
        "retry a job in flight": client.post("/jobs/running/retry", data=csrf, headers=_bearer()).status_code,
        "retry an unknown job": client.post("/jobs/nope/retry", data=csrf, headers=_bearer()).status_code,
        "cancel an unknown job": client.post("/jobs/nope/cancel", data=csrf, headers=_bearer()).status_code,
    }
    assert answers == {
        "cancel a finished job": 409,
        "retry a processed job": 409,
        "retry a job in flight": 409,
        "retry an unknown job": 404,
        "cancel an unknown job": 404,
    }
    _untouched(module_redis, ("failed", "ok", "running"))


def test_a_cancel_of_a_job_in_flight_is_sent_and_told(
    make: Make, store: RedisJobStore, module_redis: redis.Redis
) -> None:
    client = make(token=TOKEN)
    page = client.get("/jobs/running", headers=_bearer())
    assert 'action="/jobs/running/cancel"' in page.text and 'action="/jobs/running/retry"' not in page.text
    done = client.post("/jobs/running/cancel", data={"csrf_token": csrf_of(page)}, headers=_bearer())
    assert (done.status_code, done.headers["location"]) == (303, "/jobs/running?done=cancel")
    assert [(entry["job_id"], entry["action"]) for entry in _actions(module_redis)] == [("running", "cancel")]


def test_retry_all_failed_retries_the_failed_jobs_of_the_filter_once(
    make: Make, store: RedisJobStore, module_redis: redis.Redis
) -> None:
    client = make(token=TOKEN)
    # Given the finished jobs of workflow_a, as the token sees them, with the form that retries their failed ones
    page = client.get("/jobs", params={"view": "finished", "workflow": "workflow_a"}, headers=_bearer())
    assert 'action="/jobs/retry-failed"' in page.text and 'name="workflow" value="workflow_a"' in page.text
    form = {"csrf_token": csrf_of(page), "view": "finished", "workflow": "workflow_a"}
    # When it is pressed
    first = client.post("/jobs/retry-failed", data=form, headers=_bearer())
    # Then the FAILED and FAILURE jobs of workflow_a were retried, and nothing else
    assert first.status_code == 200 and "Started 2 new job(s)" in first.text
    replayed = {
        job_id for job_id in ("failed", "refused", "ok", "failed-b", "review-b") if _replayed_as(module_redis, job_id)
    }
    assert replayed == {"failed", "refused"}
    assert _queued(module_redis) == 2
    # When it is pressed again
    second = client.post("/jobs/retry-failed", data=form, headers=_bearer())
    # Then none is started twice
    assert (
        second.status_code == 200
        and "Started 0 new job(s)" in second.text
        and "2 had been retried already" in second.text
    )
    assert _queued(module_redis) == 2 and len(_actions(module_redis)) == 2


def test_retry_all_failed_with_a_bad_filter_is_refused(
    make: Make, store: RedisJobStore, module_redis: redis.Redis
) -> None:
    client = make(token=TOKEN)
    csrf = csrf_of(client.get("/jobs", headers=_bearer()))
    bad = client.post("/jobs/retry-failed", data={"csrf_token": csrf, "since": "yesterday"}, headers=_bearer())
    assert bad.status_code == 400 and "since" in bad.text
    _untouched(module_redis)


@pytest.mark.parametrize(
    ("environ", "refusal"),
    [
        ({"EXTENDQ_DASHBOARD_TOKEN": "short-token"}, "EXTENDQ_DASHBOARD_TOKEN must be at least 16 characters"),
        (
            {"EXTENDQ_DASHBOARD_USER": USER, "EXTENDQ_DASHBOARD_PASSWORD": "hunter2"},
            "EXTENDQ_DASHBOARD_PASSWORD must be at least 12 characters",
        ),
    ],
)
def test_a_secret_short_enough_to_guess_is_refused_at_startup(environ: dict[str, str], refusal: str) -> None:
    # Given a token or password that the login form would let anyone guess
    # Then settings refuse it, naming the variable
    with pytest.raises(ConfigError, match=refusal):
        Settings.from_env({"EXTENDQ_REDIS_URL": "redis://127.0.0.1:6379/0", **environ})


def test_an_empty_credential_is_no_credential() -> None:
    # Given the variables set but empty, as compose passes `${EXTENDQ_DASHBOARD_TOKEN:-}` when .env leaves them out
    empty = {"EXTENDQ_DASHBOARD_TOKEN": "", "EXTENDQ_DASHBOARD_USER": "", "EXTENDQ_DASHBOARD_PASSWORD": ""}
    settings = Settings.from_env({"EXTENDQ_REDIS_URL": "redis://127.0.0.1:6379/0", **empty})
    # Then the dashboard starts read-only
    assert (settings.dashboard_token, settings.dashboard_user, settings.dashboard_password) == (None, None, None)
