"""Redis Sentinel URLs: `redis+sentinel://[:password@]host1:port1,host2:port2/SERVICE_NAME/DB`, parsed into a value.

Parsed and checked when settings are read (a bad one stops the process naming its variable); every client of such a
URL asks the Sentinels where the primary is (config/redis_connection.py, config/celery_redis.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote

__all__ = ["DEFAULT_SENTINEL_PORT", "SENTINEL_SCHEME", "SentinelUrl", "is_sentinel", "parse_sentinel_url"]

SENTINEL_SCHEME = "redis+sentinel://"
DEFAULT_SENTINEL_PORT = 26379


@dataclass(frozen=True)
class SentinelUrl:
    """Where the Sentinels are, the name of the master they watch, the database, and the Redis password."""

    sentinels: tuple[tuple[str, int], ...]
    service_name: str
    db: int = 0
    password: str | None = field(default=None, repr=False)


def is_sentinel(url: str) -> bool:
    """Whether `url` names Redis through Sentinels."""
    return url.lower().startswith(SENTINEL_SCHEME)


def parse_sentinel_url(url: str) -> SentinelUrl:
    """The parts of a `redis+sentinel://` URL; ValueError saying what is wrong (never the password)."""
    if not is_sentinel(url):
        raise ValueError(f"not a {SENTINEL_SCHEME} URL")
    netloc, _, path = url[len(SENTINEL_SCHEME) :].partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    password = unquote(userinfo.partition(":")[2]) if at else None
    sentinels = tuple(_host_port(part) for part in hosts.split(","))
    service_name, _, db = path.strip("/").partition("/")
    if not service_name:
        raise ValueError(f"a {SENTINEL_SCHEME} URL needs the master's service name: host:port,.../SERVICE_NAME/DB")
    if db and not db.isdigit():
        raise ValueError(f"the database of a {SENTINEL_SCHEME} URL is a number, not {db!r}")
    return SentinelUrl(
        sentinels=sentinels, service_name=unquote(service_name), db=int(db or 0), password=password or None
    )


def _host_port(part: str) -> tuple[str, int]:
    host, colon, port = part.strip().rpartition(":")
    if not colon or host.endswith(":"):  # no port, or a bare IPv6 address
        host, port = part.strip(), ""
    host = host.strip("[]")
    if not host:
        raise ValueError(f"a {SENTINEL_SCHEME} URL lists an empty Sentinel address")
    if port and not port.isdigit():
        raise ValueError(f"a Sentinel port is a number, not {port!r}")
    number = int(port) if port else DEFAULT_SENTINEL_PORT
    if not 0 < number < 65536:
        raise ValueError(f"a Sentinel port is between 1 and 65535, not {number}")
    return host, number
