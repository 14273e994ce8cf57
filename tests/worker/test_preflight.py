"""A worker's checks before it takes any message, and its start line (the emulator served over real HTTP)."""

from __future__ import annotations

import pytest
from celery import Celery
from starlette.applications import Starlette

from extendq.config.settings import Settings
from extendq.emulator.app import create_app as create_emulator
from extendq.errors import ConfigError
from extendq.tasks.base import build_runner
from extendq.tasks.celery import create_app
from extendq.worker.extend import answers_as_emulator
from extendq.worker.preflight import (
    EMULATOR_STAND_IN_KEY,
    api_key_of,
    check_values,
    keyless_emulator,
    origin,
    redis_where,
    start_line,
    wait_for_redis,
)
from tests.support.asgi import free_port, served


def never_asked(url: str) -> bool:
    raise AssertionError(f"{url} was probed")


def test_a_key_set_needs_no_probe() -> None:
    settings = Settings.from_env({"EXTEND_API_KEY": "sk_test_1", "EXTENDQ_BASE_URL": "http://127.0.0.1:9"})
    assert keyless_emulator(settings, is_emulator=never_asked) is False
    assert api_key_of(settings) == "sk_test_1"


def test_no_key_against_extend_itself_is_refused_without_a_probe() -> None:
    with pytest.raises(ConfigError, match="^EXTEND_API_KEY is not set .*https://api.eu1.extend.ai$"):
        keyless_emulator(Settings.from_env({"EXTENDQ_REGION": "eu"}), is_emulator=never_asked)
    with pytest.raises(ConfigError, match="EXTEND_API_KEY"):
        api_key_of(Settings.from_env({}))


def test_the_emulator_is_recognised_by_its_answer_and_gets_the_stand_in_key() -> None:
    # Given the emulator served over HTTP, and a base URL with a path of its own
    with served(create_emulator(profile="fast")) as url:
        settings = Settings.from_env({"EXTENDQ_BASE_URL": f"{url}/v1"})
        # Then a worker without a key may run against it, with the stand-in key
        assert keyless_emulator(settings) is True
    assert api_key_of(settings, keyless=True) == EMULATOR_STAND_IN_KEY


def test_a_server_that_is_not_the_emulator_is_refused_even_on_loopback() -> None:
    # Given a server on 127.0.0.1 that answers 404 to everything (a tunnel to Extend would), and a closed port
    with served(Starlette()) as url:
        settings = Settings.from_env({"EXTENDQ_BASE_URL": url})
        with pytest.raises(ConfigError, match=f"^EXTEND_API_KEY is not set .*, and {url} does not answer as"):
            keyless_emulator(settings)
    assert answers_as_emulator(f"http://127.0.0.1:{free_port()}") is False


def test_a_runner_without_a_key_is_built_only_for_a_worker_that_found_the_emulator() -> None:
    settings = Settings.from_env({"EXTENDQ_BASE_URL": "http://127.0.0.1:9"})
    with pytest.raises(ConfigError, match="EXTEND_API_KEY"):
        build_runner(settings, Celery(broker="memory://"))
    app = create_app(settings)
    app.keyless_emulator = True
    assert build_runner(settings, app).api is not None


def test_a_secrets_key_that_is_not_a_key_is_refused_naming_it() -> None:
    with pytest.raises(ConfigError, match="EXTENDQ_SECRETS_KEY"):
        check_values(Settings.from_env({"EXTENDQ_SECRETS_KEY": "not-a-key"}))
    check_values(Settings.from_env({}))


def test_waiting_for_redis_ends_at_the_deadline_naming_the_variable_never_the_password(redis_url: str) -> None:
    # Given a Redis that answers, a broker URL where nothing listens, and a wait of 2 s on a fake clock
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    port = free_port()
    broker = f"redis://user:hunter2@127.0.0.1:{port}/5"
    settings = Settings.from_env(
        {"EXTENDQ_REDIS_URL": redis_url, "EXTENDQ_BROKER_URL": broker, "EXTENDQ_REDIS_WAIT_S": "2"}
    )
    # When the worker waits for it
    with pytest.raises(ConfigError) as raised:
        wait_for_redis(settings, sleep=sleep, clock=lambda: now[0])
    # Then it tried until the deadline and names the variable and the address only
    assert str(raised.value) == f"EXTENDQ_BROKER_URL: no Redis answered at 127.0.0.1:{port}/5 within 2 s"
    assert "hunter2" not in str(raised.value)
    assert slept == [0.5, 0.5, 0.5, 0.5]


def test_waiting_for_redis_passes_when_it_answers(redis_url: str) -> None:
    wait_for_redis(Settings.from_env({"EXTENDQ_REDIS_URL": redis_url, "EXTENDQ_REDIS_WAIT_S": "0"}))


def test_the_start_line_says_what_the_worker_will_do_and_holds_no_secret() -> None:
    # Given a worker for a region, with explicit limits, separate broker and backend, and tenants
    settings = Settings.from_env(
        {
            "EXTEND_API_KEY": "sk_live_SECRET",
            "EXTENDQ_REGION": "us2",
            "EXTENDQ_RATE_LIMIT_REQUESTS_PER_SECOND": "5",
            "EXTENDQ_WEBHOOKS_ENABLED": "true",
            "EXTENDQ_SWEEP": "off",
            "EXTENDQ_REDIS_URL": "redis://:pw1@cache:6380/2",
            "EXTENDQ_BROKER_URL": "rediss://:pw2@broker.example/0",
            "EXTENDQ_TENANTS": '{"acme": {"api_key": "sk_acme_SECRET"}}',
        }
    )
    # Then its start line says all that, in order, without a key or a password
    line = start_line(settings, queues=["extendq"], keyless=False)
    assert line == (
        "extendq worker starting: Extend https://api.us2.extend.app (region us2), API version 2026-02-09, key set, "
        "tenants acme; rate limit 5 requests/s, unlimited runs/min; webhooks on; sweeps off; "
        "Redis cache:6380/2, broker TLS broker.example:6379/0 (tls verify required); queues extendq"
    )


def test_the_start_line_of_a_keyless_worker_on_the_emulator() -> None:
    settings = Settings.from_env(
        {"EXTENDQ_BASE_URL": "http://emulator:8765/x?token=abc", "EXTENDQ_RATE_LIMIT_PLAN": "payg"}
    )
    line = start_line(settings, queues=["extendq.checks", "extendq"], keyless=True)
    assert line == (
        "extendq worker starting: Extend http://emulator:8765, API version 2026-02-09, no key (the emulator's "
        "stand-in); rate limit plan payg: 10 requests/s, 80 runs/min; webhooks off; sweeps auto (from 20 jobs in "
        "flight); Redis 127.0.0.1:6379/0; queues extendq.checks, extendq"
    )


def test_addresses_keep_host_and_port_only() -> None:
    assert origin("https://user:pw@[::1]:8443/a/b?c=d") == "https://[::1]:8443"
    assert redis_where("redis://localhost") == "localhost:6379/0"
    assert redis_where("unix:///run/redis.sock?db=3&password=pw") == "unix:/run/redis.sock/3"


def test_a_redis_that_refuses_the_password_is_refused_at_once(redis_url: str) -> None:
    # Given the test Redis reached as a user it does not know
    url = redis_url.replace("redis://", "redis://nobody:wrong-pass@")
    settings = Settings.from_env({"EXTENDQ_REDIS_URL": url, "EXTENDQ_REDIS_WAIT_S": "60"})
    # Then the worker does not wait: it is refused, naming the variable and never the password
    with pytest.raises(ConfigError, match="^EXTENDQ_REDIS_URL: Redis at .* refused: ") as raised:
        wait_for_redis(settings, sleep=never_slept)
    assert "wrong-pass" not in str(raised.value)


def never_slept(seconds: float) -> None:
    raise AssertionError("waited for a Redis that answered")
