"""What a worker checks before it takes any message, and the one line it logs about what it will do.

A worker that cannot run jobs must not take them: each check raises `ConfigError` with a message naming the
variable to fix, and the worker refuses to start (`extendq.tasks.startup`). Without an API key a worker starts only
when its base URL is extendq's emulator, recognised by what it answers (`GET /_emulator/health`), never by its
address: a tunnel on 127.0.0.1 may lead to Extend itself.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Sequence
from urllib.parse import parse_qs, urlsplit

import redis

from extendq.config.redis_connection import is_tls, redis_client, tls_description
from extendq.config.sentinel_url import is_sentinel, parse_sentinel_url
from extendq.config.settings import Settings
from extendq.config.tenants import load_tenants
from extendq.errors import ConfigError
from extendq.worker.extend import answers_as_emulator
from extendq.worker.ratelimit import PLANS, Limits
from extendq.worker.secrets import check_key

# The key a worker sends to an emulator when none is set: the emulator takes any key unless told otherwise.
EMULATOR_STAND_IN_KEY = "extendq-emulator-stand-in"
_PING_TIMEOUT_S = 2.0
_PING_EVERY_S = 0.5


def keyless_emulator(settings: Settings, *, is_emulator: Callable[[str], bool] = answers_as_emulator) -> bool:
    """Whether the worker runs without an API key, against the emulator (False: it has a key).

    Raises:
        ConfigError: no key, and the base URL is Extend's (a region's, or one that does not answer as the emulator).
    """
    if settings.api_key is not None:
        return False
    missing = "EXTEND_API_KEY is not set (nor EXTENDQ_API_KEY)"
    if settings.base_url is None:
        raise ConfigError(f"{missing}: it is needed to call Extend at {origin(settings.extend_base_url)}")
    if not is_emulator(settings.extend_base_url):
        raise ConfigError(
            f"{missing}, and {origin(settings.extend_base_url)} does not answer as an extendq emulator "
            "(GET /_emulator/health): set the key"
        )
    return True


def api_key_of(settings: Settings, *, keyless: bool = False) -> str:
    """The key the worker calls Extend with: the configured one, or with `keyless` the emulator's stand-in."""
    if settings.api_key is not None:
        return settings.api_key.get_secret_value()
    if keyless:
        return EMULATOR_STAND_IN_KEY
    raise ConfigError("EXTEND_API_KEY is not set (nor EXTENDQ_API_KEY)")


def check_values(settings: Settings) -> None:
    """The values Settings cannot check alone; `ConfigError` naming the variable."""
    if settings.secrets_key is not None:
        check_key(settings.secrets_key.get_secret_value())


def wait_for_redis(
    settings: Settings,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Wait up to `EXTENDQ_REDIS_WAIT_S` for each Redis the worker uses to answer PING.

    Raises:
        ConfigError: naming the variable of a Redis that did not answer in time, or refused (a wrong password).
    """
    deadline = clock() + settings.redis_wait_s
    for variable, url in redis_urls(settings).items():
        while not _answers(settings, variable, url):
            if clock() >= deadline:
                raise ConfigError(
                    f"{variable}: no Redis answered at {redis_where(url)} within {settings.redis_wait_s:g} s"
                )
            sleep(_PING_EVERY_S)


def _answers(settings: Settings, variable: str, url: str) -> bool:
    client = redis_client(settings, url, socket_connect_timeout=_PING_TIMEOUT_S, socket_timeout=_PING_TIMEOUT_S)
    try:
        return bool(client.ping())
    except redis.AuthenticationError as exc:  # a ConnectionError, but one that waiting cannot mend
        raise _refused(variable, url, exc) from None
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        if isinstance(exc.__cause__, ssl.SSLCertVerificationError):  # nor can waiting mend a certificate
            raise _unverified(variable, url, exc.__cause__) from None
        return False
    except redis.RedisError as exc:
        raise _refused(variable, url, exc) from None
    finally:
        client.close()


def _refused(variable: str, url: str, exc: Exception) -> ConfigError:
    return ConfigError(f"{variable}: Redis at {redis_where(url)} refused: {type(exc).__name__}")


def _unverified(variable: str, url: str, exc: ssl.SSLCertVerificationError) -> ConfigError:
    why = str(exc.verify_message).rstrip(".")
    return ConfigError(
        f"{variable}: the TLS certificate of Redis at {redis_where(url)} did not verify ({why}): "
        "check EXTENDQ_REDIS_TLS_CA_FILE and EXTENDQ_REDIS_TLS_VERIFY"
    )


def redis_urls(settings: Settings) -> dict[str, str]:
    """Each Redis the worker uses, by the variable that names it (one entry when all three are the same)."""
    urls = {"EXTENDQ_REDIS_URL": settings.redis_url}
    others = {"EXTENDQ_BROKER_URL": settings.broker, "EXTENDQ_RESULT_BACKEND_URL": settings.result_backend}
    for variable, url in others.items():
        if url not in urls.values():
            urls[variable] = url
    return urls


def start_line(settings: Settings, *, queues: Sequence[str], keyless: bool) -> str:
    """What the worker will do, in one line: no path, key or password in it."""
    extend = f"Extend {origin(settings.extend_base_url)}"
    if settings.base_url is None:
        extend += f" (region {settings.region.value})"
    key = "no key (the emulator's stand-in)" if keyless else "key set"
    tenants = sorted(load_tenants(settings))
    parts = [
        f"{extend}, API version {settings.api_version}, {key}" + (f", tenants {', '.join(tenants)}" if tenants else ""),
        _rate_limit(settings),
        f"webhooks {'on' if settings.webhooks_enabled else 'off'}",
        _sweeps(settings),
        _redis_part(settings),
        f"queues {', '.join(queues)}",
    ]
    return "extendq worker starting: " + "; ".join(parts)


def _rate_limit(settings: Settings) -> str:
    plan = PLANS.get(settings.rate_limit_plan or "", Limits())
    rps = settings.rate_limit_requests_per_second or plan.requests_per_second
    rpm = settings.rate_limit_runs_per_minute or plan.runs_per_minute
    if rps is None and rpm is None:
        return "rate limit none (pauses on 429 only)"
    numbers = f"{_number(rps)} requests/s, {_number(rpm)} runs/min"
    plan_name = f" plan {settings.rate_limit_plan}:" if settings.rate_limit_plan else ""
    return f"rate limit{plan_name} {numbers}"


def _number(value: float | None) -> str:
    return "unlimited" if value is None else f"{value:g}"


def _sweeps(settings: Settings) -> str:
    if settings.sweep == "auto":
        return f"sweeps auto (from {settings.sweep_min_in_flight} jobs in flight)"
    return f"sweeps {settings.sweep}"


def _redis_part(settings: Settings) -> str:
    urls = redis_urls(settings)
    named = "Redis " + ", ".join(_redis_named(variable, url) for variable, url in urls.items())
    return named + (f" ({tls_description(settings)})" if any(is_tls(url) for url in urls.values()) else "")


def _redis_named(variable: str, url: str) -> str:
    what = {"EXTENDQ_BROKER_URL": "broker ", "EXTENDQ_RESULT_BACKEND_URL": "results "}.get(variable, "")
    return what + redis_where(url)


def origin(url: str) -> str:
    """A URL's scheme, host and port only: never its path, query or credentials."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def redis_where(url: str) -> str:
    """A Redis URL's host, port and database (or socket path; or the Sentinels' service): never its password."""
    if is_sentinel(url):
        sentinel = parse_sentinel_url(url)
        hosts = ",".join(f"{host}:{port}" for host, port in sentinel.sentinels)
        return f"Sentinel {sentinel.service_name!r} at {hosts}/{sentinel.db}"
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    if parts.scheme == "unix":
        return f"unix:{parts.path}/{query.get('db', ['0'])[0]}"
    host = parts.netloc.rpartition("@")[2] or "localhost"
    if ":" not in host.rpartition("]")[2]:
        host += ":6379"
    database = parts.path.strip("/") or query.get("db", ["0"])[0]
    return ("TLS " if parts.scheme == "rediss" else "") + f"{host}/{database}"
