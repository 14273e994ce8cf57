from __future__ import annotations

import re
from pathlib import Path

import pytest

from extendq.config.settings import Settings
from extendq.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_match_create_and_poll_and_the_brief() -> None:
    settings = Settings.from_env({})
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.extend_base_url == "https://api.extend.ai"
    assert (settings.fast_poll_interval_s, settings.fast_poll_duration_s, settings.poll_backoff) == (1.0, 30.0, 1.15)
    assert (settings.poll_max_interval_s, settings.poll_jitter) == (30.0, 0.25)
    assert settings.result_ttl_s == 7 * 24 * 3600


def test_sdk_api_key_is_honoured_and_kept_secret() -> None:
    settings = Settings.from_env({"EXTEND_API_KEY": "sk_live_hidden"})
    assert settings.api_key is not None and settings.api_key.get_secret_value() == "sk_live_hidden"
    assert "sk_live_hidden" not in repr(settings)


def test_region_presets_and_explicit_base_url() -> None:
    assert Settings.from_env({"EXTENDQ_REGION": "eu"}).extend_base_url == "https://api.eu1.extend.ai"
    assert Settings.from_env({"EXTENDQ_REGION": "us2"}).extend_base_url == "https://api.us2.extend.app"
    explicit = Settings.from_env({"EXTENDQ_REGION": "eu", "EXTENDQ_BASE_URL": "http://127.0.0.1:8765/"})
    assert explicit.extend_base_url == "http://127.0.0.1:8765"


def test_bad_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="EXTENDQ_POLL_JITTER"):
        Settings.from_env({"EXTENDQ_POLL_JITTER": "2"})
    with pytest.raises(ConfigError, match="EXTENDQ_REGION"):
        Settings.from_env({"EXTENDQ_REGION": "mars"})


def test_a_check_of_several_values_names_them_without_a_bare_prefix() -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"EXTENDQ_LANDING_WINDOW_S": "5"})
    assert str(raised.value) == "invalid settings: EXTENDQ_LANDING_WINDOW_S must exceed EXTENDQ_REQUEST_TIMEOUT_S"


@pytest.mark.parametrize("value", ["0", "-1", "-300"])
def test_webhook_max_age_must_be_positive_so_the_freshness_check_stays_on(value: str) -> None:
    # The SDK reads a max age of 0 as "no timestamp check": a replayed delivery of any age would verify.
    with pytest.raises(ConfigError, match="EXTENDQ_WEBHOOK_MAX_AGE_S"):
        Settings.from_env({"EXTENDQ_WEBHOOK_MAX_AGE_S": value})
    assert Settings.from_env({"EXTENDQ_WEBHOOK_MAX_AGE_S": "1"}).webhook_max_age_s == 1


def test_env_example_and_readme_list_every_setting() -> None:
    example = (ROOT / ".env.example").read_text()
    readme = (ROOT / "README.md").read_text()
    for name in Settings.model_fields:
        variable = "EXTEND_API_KEY" if name == "api_key" else f"EXTENDQ_{name.upper()}"
        assert re.search(rf"^#? ?{variable}=", example, re.MULTILINE), variable
        assert variable in readme, variable
