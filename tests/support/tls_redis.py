"""A Redis server that speaks only TLS, for tests: certificates made on the spot, a private redis-server process.

`make_pki` writes a CA, a server certificate (for 127.0.0.1 and localhost) and a client certificate, all signed by
that CA; `TlsRedis` runs `redis-server --port 0 --tls-port <free>` with them (client certificates required or not).
"""

from __future__ import annotations

import datetime
import ipaddress
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from extendq.cli.redis_server import redis_answers
from tests.support.asgi import free_port
from tests.support.groups import stop_group

_Key = ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class Pki:
    """PEM files: a CA, a server certificate and a client certificate it signed (keys unencrypted)."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_pki(folder: Path, *, name: str = "extendq test", hosts: tuple[str, ...] = ("localhost", "127.0.0.1")) -> Pki:
    """A fresh CA named `name` and the two certificates it signs (for `hosts`), written under `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} CA")])
    ca = (
        _builder(ca_name, ca_name, ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(*_CA_USAGE), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server_key, server = _leaf(ca, ca_key, "redis server", ExtendedKeyUsageOID.SERVER_AUTH, hosts)
    client_key, client = _leaf(ca, ca_key, "extendq client", ExtendedKeyUsageOID.CLIENT_AUTH, hosts)
    return Pki(
        ca_cert=_write_cert(folder / "ca.crt", ca),
        server_cert=_write_cert(folder / "server.crt", server),
        server_key=_write_key(folder / "server.key", server_key),
        client_cert=_write_cert(folder / "client.crt", client),
        client_key=_write_key(folder / "client.key", client_key),
    )


# digital_signature, content_commitment, key_encipherment, data_encipherment, key_agreement, key_cert_sign,
# crl_sign, encipher_only, decipher_only
_CA_USAGE = (True, False, False, False, False, True, True, False, False)


def _builder(subject: x509.Name, issuer: x509.Name, key: _Key) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
    )


def _leaf(
    ca: x509.Certificate, ca_key: _Key, common_name: str, usage: x509.ObjectIdentifier, hosts: tuple[str, ...]
) -> tuple[_Key, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    names = [_name(host) for host in hosts]
    cert = (
        _builder(subject, ca.subject, key)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _write_cert(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _write_key(path: Path, key: _Key) -> Path:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.write_bytes(pem)
    path.chmod(0o600)
    return path


class TlsRedis:
    """`redis-server` listening on a TLS port only (no plaintext port), in a child process of its own."""

    def __init__(self, pki: Pki, folder: Path, *, client_certificates: bool = False) -> None:
        self.pki = pki
        self.folder = folder
        self.port = free_port()
        self.client_certificates = client_certificates
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The server's database 0 as a `rediss://` URL."""
        return f"rediss://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 30.0) -> TlsRedis:
        """Start the server and wait until it answers PING over TLS."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._log = (self.folder / "redis.log").open("ab")
        self.proc = subprocess.Popen(self._args(), stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited early:\n{self.log_text()[-4000:]}")
            if self._answers():
                return self
            time.sleep(0.1)
        raise RuntimeError(f"redis-server did not answer over TLS within {timeout_s}s:\n{self.log_text()[-4000:]}")

    def _args(self) -> list[str]:
        return [
            "redis-server",
            "--port", "0",
            "--tls-port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.folder),
            "--tls-cert-file", str(self.pki.server_cert),
            "--tls-key-file", str(self.pki.server_key),
            "--tls-ca-cert-file", str(self.pki.ca_cert),
            "--tls-auth-clients", "yes" if self.client_certificates else "no",
        ]  # fmt: skip

    def client(self, **kwargs: object) -> redis.Redis:
        """A client that trusts the test CA and shows the client certificate."""
        return redis.Redis.from_url(self.url, **self._tls(), **kwargs)

    def _tls(self) -> dict[str, str]:
        return {
            "ssl_ca_certs": str(self.pki.ca_cert),
            "ssl_certfile": str(self.pki.client_cert),
            "ssl_keyfile": str(self.pki.client_key),
        }

    def _answers(self) -> bool:
        return redis_answers(self.url, timeout_s=1.0, tls={**self._tls(), "ssl_check_hostname": False})

    def log_text(self) -> str:
        """What the server logged so far."""
        path = self.folder / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM the server (the whole group if it lingers) and close its log."""
        stop_group(self.proc, timeout_s)
        log = getattr(self, "_log", None)
        if log is not None and not log.closed:
            log.close()

    def __enter__(self) -> TlsRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
