"""One `EXTENDQ_REDIS_URL` for every client: kombu, the result backend and redbeat get it in their own forms, redis-py
clients ask the Sentinels; passwords come from the URL or from settings and never appear in a URL or a repr."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import sentinel as async_sentinel
from redis.sentinel import SentinelConnectionPool

from extendq.config.celery_redis import celery_redis_config, celery_url
from extendq.config.redis_connection import async_redis_client, redis_client, redis_password
from extendq.config.settings import Settings
from extendq.tasks.celery import celery_config, create_app

SENTINELS = "redis+sentinel://10.0.0.1:26379,sentinel-b:26380/mymaster/3"
REDIS_PW, SENTINEL_PW = "redis-pw-never-shown", "sentinel-pw-never-shown"


def sentinel_settings(url: str = SENTINELS, **env: str) -> Settings:
    return Settings.from_env(
        {"EXTENDQ_REDIS_URL": url, "EXTENDQ_REDIS_PASSWORD": REDIS_PW, "EXTENDQ_REDIS_SENTINEL_PASSWORD": SENTINEL_PW}
        | env
    )


def test_a_sentinel_url_becomes_one_celery_url_per_sentinel_without_a_password() -> None:
    assert celery_url("redis+sentinel://:pw@a:1,[::1]:2/svc/4") == "sentinel://a:1/4;sentinel://[::1]:2/4"
    assert celery_url("rediss://:pw@h:1/0") == "rediss://:pw@h:1/0"  # any other URL is left as it is


def test_broker_backend_and_beat_all_ask_the_sentinels_for_the_master() -> None:
    config = celery_config(sentinel_settings())
    celery_form = "sentinel://10.0.0.1:26379/3;sentinel://sentinel-b:26380/3"
    assert config["broker_url"] == config["result_backend"] == celery_form
    sentinels = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0, "password": SENTINEL_PW}
    assert config["broker_transport_options"]["master_name"] == "mymaster"
    assert config["broker_transport_options"]["sentinel_kwargs"] == sentinels
    assert config["broker_transport_options"]["visibility_timeout"] == 900  # the broker's own options kept
    assert config["result_backend_transport_options"] == {"master_name": "mymaster", "sentinel_kwargs": sentinels}
    assert config["broker_password"] == config["redis_password"] == REDIS_PW
    assert config["redbeat_redis_url"].startswith("redis-sentinel://")
    redbeat = config["redbeat_redis_options"]
    assert redbeat["sentinels"] == [("10.0.0.1", 26379), ("sentinel-b", 26380)]
    assert (redbeat["service_name"], redbeat["db"], redbeat["password"]) == ("mymaster", 3, REDIS_PW)
    assert redbeat["sentinel_kwargs"] == sentinels
    # A message sent during a failover is tried until the new primary is named, not given up after a second
    assert config["task_publish_retry_policy"]["max_retries"] >= 10


def test_the_urls_password_wins_over_the_setting() -> None:
    settings = sentinel_settings("redis+sentinel://:from-url@a:1/mymaster/0")
    assert redis_password(settings, settings.redis_url) == "from-url"
    assert celery_redis_config(settings)["broker_password"] == "from-url"


def test_a_plain_url_keeps_its_celery_settings_and_takes_the_password_setting() -> None:
    settings = Settings.from_env({"EXTENDQ_REDIS_URL": "redis://r:6379/2", "EXTENDQ_REDIS_PASSWORD": REDIS_PW})
    config = celery_config(settings)
    assert config["broker_url"] == config["result_backend"] == config["redbeat_redis_url"] == "redis://r:6379/2"
    assert config["broker_password"] == config["redis_password"] == REDIS_PW
    assert config["redbeat_redis_options"] == {"password": REDIS_PW}
    assert config["result_backend_transport_options"] == {}
    assert "master_name" not in config["broker_transport_options"] and "task_publish_retry_policy" not in config
    client = redis_client(settings)
    assert client.connection_pool.connection_kwargs["password"] == REDIS_PW


def test_without_any_password_none_is_sent() -> None:
    config = celery_config(Settings.from_env({"EXTENDQ_REDIS_URL": SENTINELS}))
    assert config["broker_password"] is None and config["redis_password"] is None
    assert "password" not in config["broker_transport_options"]["sentinel_kwargs"]
    assert "password" not in config["redbeat_redis_options"]


def test_a_redis_py_client_of_a_sentinel_url_asks_the_sentinels_for_the_master() -> None:
    client = redis_client(sentinel_settings(), decode_responses=True)
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "mymaster" and pool.is_master
    assert pool.connection_kwargs["password"] == REDIS_PW and pool.connection_kwargs["db"] == 3
    manager = pool.sentinel_manager
    assert [(s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"]) for s in
            manager.sentinels] == [("10.0.0.1", 26379), ("sentinel-b", 26380)]  # fmt: skip
    assert {s.connection_pool.connection_kwargs["password"] for s in manager.sentinels} == {SENTINEL_PW}


def test_an_asyncio_client_of_a_sentinel_url_waits_for_one_of_its_few_connections() -> None:
    async def pool_of_a_client() -> async_sentinel.SentinelConnectionPool:
        client = async_redis_client(sentinel_settings(), SENTINELS, max_connections=3)
        pool = client.connection_pool
        await client.aclose()
        assert isinstance(pool, async_sentinel.SentinelConnectionPool)
        return pool

    pool = asyncio.run(pool_of_a_client())
    assert pool.service_name == "mymaster" and pool.max_connections == 3
    assert pool.connection_kwargs["password"] == REDIS_PW


@pytest.mark.parametrize("url", [SENTINELS, "redis+sentinel://:" + REDIS_PW + "@a:1/mymaster/0"])
def test_no_password_shows_in_settings_celery_urls_or_the_apps_shown_configuration(url: str) -> None:
    settings = sentinel_settings(url)
    app = create_app(settings)
    shown = [
        repr(settings),
        str(app.conf.broker_url),
        str(app.conf.result_backend),
        str(app.conf.redbeat_redis_url),
        app.connection_for_write().as_uri(),
        repr(app.conf.humanize(with_defaults=False, censored=True)),
    ]
    for text in shown:
        assert REDIS_PW not in text and SENTINEL_PW not in text, text
