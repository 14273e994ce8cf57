"""Redis over TLS: a private redis-server that speaks only TLS and requires client certificates.

Every component connects with the same settings: a real worker (broker, result backend, job store and its scripts,
rate limiter), a producer, `result_async`, the CLI, the webhook receiver and beat's lock; plaintext and a wrong CA
are refused.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from typer.testing import CliRunner

from extendq.cli.main import app as cli_app
from extendq.config.redis_connection import redis_client
from extendq.config.settings import Settings
from extendq.errors import ConfigError
from extendq.worker.preflight import wait_for_redis
from tests.e2e.conftest import PROFILE, SECRETS_KEY
from tests.support.emulator import EmulatorProcess
from tests.support.receiver import ReceiverProcess
from tests.support.redis_kinds import BEAT_PREFIX, beat_keys_once_leading, one_job_end_to_end, worker_on
from tests.support.tls_redis import Pki, TlsRedis, make_pki
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_redis(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRedis]:
    """A TLS-only Redis that refuses clients without a certificate of the test CA."""
    with TlsRedis(pki, tmp_path_factory.mktemp("tls-redis"), client_certificates=True) as server:
        yield server


@pytest.fixture(scope="module")
def tls_env(worker_env: dict[str, str], tls_redis: TlsRedis, pki: Pki) -> dict[str, str]:
    """The workers' environment, on the TLS Redis with the client certificate (and the pool's rate limit on)."""
    return {
        **worker_env,
        "EXTENDQ_REDIS_URL": tls_redis.url,
        "EXTENDQ_REDIS_TLS_CA_FILE": str(pki.ca_cert),
        "EXTENDQ_REDIS_TLS_CERT_FILE": str(pki.client_cert),
        "EXTENDQ_REDIS_TLS_KEY_FILE": str(pki.client_key),
        "EXTENDQ_RATE_LIMIT_PLAN": "payg",
    }


@pytest.fixture(scope="module")
def tls_worker(
    tls_env: dict[str, str], emulator: EmulatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    with worker_on(tls_env, emulator, PROFILE, tmp_path_factory.mktemp("tls-worker")) as process:
        yield process


def test_a_job_runs_end_to_end_over_tls(
    tls_env: dict[str, str], tls_worker: WorkerProcess, tls_redis: TlsRedis
) -> None:
    # Given a producer on the same TLS Redis as the worker, when a job is sent and its result awaited, then the
    # terminal run comes back through the result backend and result_async, and the job's record says so
    _, run = one_job_end_to_end(Settings.from_env(tls_env), secrets_key=SECRETS_KEY)
    # And the worker said it uses TLS, with no path or password in its start line
    [line] = [text for text in tls_worker.log_text().splitlines() if "extendq worker starting" in text]
    assert f"Redis TLS 127.0.0.1:{tls_redis.port}/0 (tls verify required, own CA, client certificate)" in line
    assert "rate limit plan payg" in line and str(Path(tls_env["EXTENDQ_REDIS_TLS_CA_FILE"]).parent) not in line


def test_the_cli_and_the_webhook_receiver_read_the_tls_redis(
    tls_env: dict[str, str], tls_worker: WorkerProcess, tmp_path: Path
) -> None:
    # When `extendq info` runs on the TLS Redis
    result = CliRunner().invoke(cli_app, ["info", "--json"], env=tls_env)
    # Then it reads the running worker's heartbeat and the queues there
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["workers"], info
    # And the webhook receiver's metrics read the job store and the broker over TLS
    with ReceiverProcess(tls_env, log_path=tmp_path / "receiver.log") as receiver:
        scrape = httpx.get(f"{receiver.url}/metrics", timeout=30).text
    assert "extendq_redis_up 1.0" in scrape
    assert 'extendq_queue_length{queue="extendq"}' in scrape


def test_beat_takes_its_lock_on_the_tls_redis(tls_env: dict[str, str], tls_redis: TlsRedis, tmp_path: Path) -> None:
    # Given beat on the TLS Redis, when it has taken redbeat's lock, then the lock and the schedule live there
    with tls_redis.client(decode_responses=True) as client:
        beat_keys, _ = beat_keys_once_leading(tls_env, tmp_path / "beat.log", client)
    assert f"{BEAT_PREFIX}:lock" in beat_keys, beat_keys
    assert f"{BEAT_PREFIX}:schedule" in beat_keys, beat_keys


def test_plaintext_and_a_wrong_ca_are_refused(tls_redis: TlsRedis, pki: Pki, tmp_path: Path) -> None:
    # Given the TLS-only server, a plaintext client and clients trusting another CA or showing no certificate
    other = make_pki(tmp_path / "other", name="another")
    plain = redis.Redis.from_url(tls_redis.url.replace("rediss://", "redis://"), socket_timeout=5)
    wrong_ca = redis_client(
        Settings.from_env({"EXTENDQ_REDIS_URL": tls_redis.url, "EXTENDQ_REDIS_TLS_CA_FILE": str(other.ca_cert)})
    )
    no_certificate = redis_client(
        Settings.from_env({"EXTENDQ_REDIS_URL": tls_redis.url, "EXTENDQ_REDIS_TLS_CA_FILE": str(pki.ca_cert)})
    )
    # Then none of them gets an answer
    for client in (plain, wrong_ca, no_certificate):
        with client, pytest.raises(redis.ConnectionError):
            client.ping()
    # While the settings' own client does
    with tls_redis.client() as client:
        assert client.ping() is True


@pytest.fixture(scope="module")
def elsewhere(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRedis]:
    """A TLS Redis whose certificate names another host; it takes clients without a certificate."""
    folder = tmp_path_factory.mktemp("elsewhere")
    with TlsRedis(make_pki(folder / "pki", hosts=("redis.elsewhere.example",)), folder / "server") as server:
        yield server


def answers(settings: Settings) -> bool:
    with redis_client(settings, socket_timeout=5, socket_connect_timeout=5) as client:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False


@pytest.mark.parametrize(
    ("verify", "own_ca", "answered"),
    [
        ("required", True, False),  # the certificate verifies, its host name does not match
        ("optional", True, True),  # the certificate verifies, the host name is not checked
        ("optional", False, False),  # the system's CAs do not know the test CA
        ("required", False, False),
        ("none", False, True),  # anything goes
    ],
)
def test_the_verify_mode_decides_which_server_certificates_pass(
    elsewhere: TlsRedis, verify: str, own_ca: bool, answered: bool
) -> None:
    env = {"EXTENDQ_REDIS_URL": elsewhere.url, "EXTENDQ_REDIS_TLS_VERIFY": verify}
    if own_ca:
        env["EXTENDQ_REDIS_TLS_CA_FILE"] = str(elsewhere.pki.ca_cert)
    assert answers(Settings.from_env(env)) is answered


def test_a_starting_worker_refuses_at_once_a_certificate_that_does_not_verify(elsewhere: TlsRedis) -> None:
    settings = Settings.from_env(
        {"EXTENDQ_REDIS_URL": elsewhere.url, "EXTENDQ_REDIS_TLS_CA_FILE": str(elsewhere.pki.ca_cert)}
    )

    def never(seconds: float) -> None:
        raise AssertionError(f"waited {seconds} s for a certificate that cannot verify")

    with pytest.raises(ConfigError) as refused:
        wait_for_redis(settings, sleep=never)
    assert str(refused.value) == (
        f"EXTENDQ_REDIS_URL: the TLS certificate of Redis at TLS 127.0.0.1:{elsewhere.port}/0 did not verify "
        "(IP address mismatch, certificate is not valid for '127.0.0.1'): "
        "check EXTENDQ_REDIS_TLS_CA_FILE and EXTENDQ_REDIS_TLS_VERIFY"
    )
