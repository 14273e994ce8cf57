"""TLS settings for `rediss://` URLs: checked when read, and the one set of options every client is given."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from extendq.config.redis_connection import redis_client, tls_options, tls_options_for
from extendq.config.settings import Settings
from extendq.errors import ConfigError
from extendq.tasks.celery import celery_config
from extendq.worker.preflight import start_line
from tests.support.tls_redis import Pki, make_pki

TLS_URL = "rediss://:hunter2@redis.internal:6380/0"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def tls_settings(pki: Pki, **env: str) -> Settings:
    return Settings.from_env(
        {
            "EXTENDQ_REDIS_URL": TLS_URL,
            "EXTENDQ_REDIS_TLS_CA_FILE": str(pki.ca_cert),
            "EXTENDQ_REDIS_TLS_CERT_FILE": str(pki.client_cert),
            "EXTENDQ_REDIS_TLS_KEY_FILE": str(pki.client_key),
            **env,
        }
    )


def test_by_default_a_rediss_url_checks_the_certificate_and_host_name_against_the_system_cas() -> None:
    settings = Settings.from_env({"EXTENDQ_REDIS_URL": TLS_URL})
    assert settings.redis_tls_verify == "required"
    assert tls_options(settings) == {"ssl_cert_reqs": "required", "ssl_check_hostname": True}


def test_the_files_and_the_verify_mode_become_redis_py_options(pki: Pki) -> None:
    settings = tls_settings(pki, EXTENDQ_REDIS_TLS_VERIFY="optional")
    assert tls_options(settings) == {
        "ssl_cert_reqs": "optional",
        "ssl_check_hostname": False,
        "ssl_ca_certs": str(pki.ca_cert),
        "ssl_certfile": str(pki.client_cert),
        "ssl_keyfile": str(pki.client_key),
    }


def test_verify_none_with_a_ca_file_is_accepted(pki: Pki) -> None:
    settings = Settings.from_env(
        {
            "EXTENDQ_REDIS_URL": TLS_URL,
            "EXTENDQ_REDIS_TLS_CA_FILE": str(pki.ca_cert),
            "EXTENDQ_REDIS_TLS_VERIFY": "none",
        }
    )
    assert tls_options(settings)["ssl_cert_reqs"] == "none"
    assert tls_options(settings)["ssl_check_hostname"] is False


@pytest.mark.parametrize(("given", "missing"), [("CERT", "KEY"), ("KEY", "CERT")])
def test_a_certificate_without_its_key_is_refused_naming_both(pki: Pki, given: str, missing: str) -> None:
    path = str(pki.client_cert if given == "CERT" else pki.client_key)
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({"EXTENDQ_REDIS_URL": TLS_URL, f"EXTENDQ_REDIS_TLS_{given}_FILE": path})
    assert str(refused.value) == (
        f"invalid settings: EXTENDQ_REDIS_TLS_{given}_FILE is set without EXTENDQ_REDIS_TLS_{missing}_FILE"
    )


@pytest.mark.parametrize("variable", ["CA", "CERT", "KEY"])
def test_a_missing_file_is_refused_naming_its_variable(pki: Pki, tmp_path: Path, variable: str) -> None:
    with pytest.raises(ConfigError, match=f"^invalid settings: EXTENDQ_REDIS_TLS_{variable}_FILE: no readable file"):
        tls_settings(pki, **{f"EXTENDQ_REDIS_TLS_{variable}_FILE": str(tmp_path / "absent.pem")})


def test_a_ca_file_that_is_no_certificate_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "ca.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="^invalid settings: EXTENDQ_REDIS_TLS_CA_FILE is not a PEM CA bundle$"):
        Settings.from_env({"EXTENDQ_REDIS_URL": TLS_URL, "EXTENDQ_REDIS_TLS_CA_FILE": str(junk)})


def test_a_key_of_another_certificate_is_refused(pki: Pki) -> None:
    with pytest.raises(ConfigError, match="EXTENDQ_REDIS_TLS_CERT_FILE and EXTENDQ_REDIS_TLS_KEY_FILE are not"):
        tls_settings(pki, EXTENDQ_REDIS_TLS_KEY_FILE=str(pki.server_key))


def test_tls_files_without_a_rediss_url_are_refused(pki: Pki) -> None:
    with pytest.raises(ConfigError, match="EXTENDQ_REDIS_TLS_CA_FILE is set but no Redis URL is a rediss://"):
        Settings.from_env(
            {"EXTENDQ_REDIS_URL": "redis://127.0.0.1:6379/0", "EXTENDQ_REDIS_TLS_CA_FILE": str(pki.ca_cert)}
        )


def test_an_unknown_verify_mode_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="EXTENDQ_REDIS_TLS_VERIFY"):
        Settings.from_env({"EXTENDQ_REDIS_URL": TLS_URL, "EXTENDQ_REDIS_TLS_VERIFY": "maybe"})


def test_only_rediss_urls_get_the_options_in_celery_redbeat_and_redis_py(pki: Pki) -> None:
    # Given job records and the result backend over TLS, and a plain broker
    settings = tls_settings(pki, EXTENDQ_BROKER_URL="redis://127.0.0.1:6379/1", EXTENDQ_RESULT_BACKEND_URL=TLS_URL)
    config = celery_config(settings)
    # Then the broker gets none, the backend and redbeat (on EXTENDQ_REDIS_URL) get the same options
    assert config["broker_use_ssl"] is None
    assert config["redis_backend_use_ssl"] == config["redbeat_redis_use_ssl"] == tls_options(settings)
    assert tls_options_for(settings, settings.broker) == {}
    # And redis-py clients: TLS with the files for the rediss:// URL, a plain connection for the other
    secure = redis_client(settings).connection_pool.connection_kwargs
    assert (secure["ssl_ca_certs"], secure["ssl_certfile"]) == (str(pki.ca_cert), str(pki.client_cert))
    plain = redis_client(settings, settings.broker).connection_pool
    assert plain.connection_class is redis.Connection and "ssl_ca_certs" not in plain.connection_kwargs


def test_the_start_line_says_tls_without_a_path_or_password(pki: Pki) -> None:
    line = start_line(tls_settings(pki, EXTEND_API_KEY="sk_test_1"), queues=["extendq"], keyless=False)
    assert "Redis TLS redis.internal:6380/0 (tls verify required, own CA, client certificate)" in line
    assert "hunter2" not in line and str(pki.ca_cert.parent) not in line
