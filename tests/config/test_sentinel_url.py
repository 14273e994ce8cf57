"""`redis+sentinel://` URLs: parsed into a value when settings are read, a bad one refused naming its variable."""

from __future__ import annotations

import pytest

from extendq.config.sentinel_url import SentinelUrl, parse_sentinel_url
from extendq.config.settings import Settings
from extendq.errors import ConfigError
from extendq.worker.preflight import check_values, redis_where


def test_every_part_of_a_sentinel_url_is_parsed() -> None:
    parsed = parse_sentinel_url("redis+sentinel://:s%40cret@10.0.0.1:26379,sentinel-b:26380/mymaster/2")
    assert parsed == SentinelUrl(
        sentinels=(("10.0.0.1", 26379), ("sentinel-b", 26380)), service_name="mymaster", db=2, password="s@cret"
    )
    assert "s@cret" not in repr(parsed)


def test_the_port_and_the_database_have_defaults() -> None:
    parsed = parse_sentinel_url("redis+sentinel://a,[::1]/cache")
    assert parsed == SentinelUrl(sentinels=(("a", 26379), ("::1", 26379)), service_name="cache", db=0)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis+sentinel://a:26379", "needs the master's service name"),
        ("redis+sentinel://a:26379/mymaster/one", "database of a redis+sentinel:// URL is a number"),
        ("redis+sentinel://a:port/mymaster", "a Sentinel port is a number"),
        ("redis+sentinel://a:70000/mymaster", "between 1 and 65535"),
        ("redis+sentinel://a,,b/mymaster", "empty Sentinel address"),
    ],
)
def test_a_bad_sentinel_url_is_refused_naming_the_variable(url: str, problem: str) -> None:
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({"EXTENDQ_BROKER_URL": url})
    assert str(refused.value).startswith("invalid settings: EXTENDQ_BROKER_URL: ")
    assert problem in str(refused.value)


def test_settings_hold_the_parsed_url_and_a_worker_accepts_it() -> None:
    settings = Settings.from_env({"EXTENDQ_REDIS_URL": "redis+sentinel://:pw-never-shown@a:1,b:2/mymaster/3"})
    assert settings.sentinel_urls()["EXTENDQ_REDIS_URL"].service_name == "mymaster"
    check_values(settings)
    assert redis_where(settings.redis_url) == "Sentinel 'mymaster' at a:1,b:2/3"
