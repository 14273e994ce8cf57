"""An error nobody foresaw inside a job's step: it ends the job as `Internal`, with its type and a redacted message.

Such an error (a bug, or an answer from Extend the worker cannot read) must not leave a job without a record and a
result. Its message goes to the job's result, its events and the logs, so every secret the worker knows is cut out
first: API keys, the secrets key, webhook signing secrets, Redis passwords and the job's own secrets, and anything
shaped like a bearer token or a password in a URL.
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote, urlsplit

from extendq.config.settings import Settings
from extendq.config.tenants import load_tenants
from extendq.errors import ExtendqError, Internal
from extendq.worker.secrets import unseal

log = logging.getLogger("extendq.jobs")
REDACTED = "[redacted]"
_MAX_MESSAGE = 500
_PATTERNS = (
    (re.compile(r"(?i)\b(bearer|basic|token)(\s+)[^\s'\",;]+"), rf"\1\2{REDACTED}"),
    (re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)[^'\",}]+"), rf"\1{REDACTED}"),
    (re.compile(r"(//[^/\s:@]*:)[^/\s@]+@"), rf"\1{REDACTED}@"),
)
# Shorter values are not cut out of messages: they would redact common words, and no key is that short.
_MIN_SECRET = 6


class Redactor:
    """Cuts known secret values, and bearer tokens or URL passwords, out of a text (its repr shows none)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = sorted({s for s in secrets if len(s) >= _MIN_SECRET}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def job(self, sealed: str | None, key: str | None) -> Redactor:
        """This redactor, plus the job's own secrets (sealed in its record) when they can be opened."""
        try:
            own = _strings(unseal(sealed, key)) if sealed else []
        except ExtendqError:
            own = []
        return Redactor([*self._secrets, *own]) if own else self

    def __repr__(self) -> str:
        return f"Redactor({len(self._secrets)} secrets)"


def internal_failure(exc: Exception, *, job_id: str, run_id: str | None, redact: Redactor) -> Internal:
    """The job's `Internal` failure for `exc` (its class name and message, at most 500 chars), logged at ERROR with
    its traceback; secrets are cut out of both."""
    trace = "".join(traceback.format_exception(exc)).rstrip()
    log.error("job %s: unforeseen error in a step\n%s", job_id, redact(trace))
    name = type(exc).__name__
    detail = redact(str(exc))
    if len(detail) > _MAX_MESSAGE:
        detail = detail[: _MAX_MESSAGE - 1] + "…"
    message = f"unforeseen error in a step: {name}" + (f": {detail}" if detail else "")
    return Internal(message, run_id, None, name)


def known_secrets(settings: Settings) -> list[str]:
    """Every secret `settings` hold: API keys (tenants' too), the secrets key, signing secrets, Redis passwords."""
    values = [secret.get_secret_value() for secret in (settings.api_key, settings.secrets_key) if secret is not None]
    values += settings.signing_secrets
    values += [tenant.api_key.get_secret_value() for tenant in load_tenants(settings).values()]
    redis_secrets = (settings.redis_password, settings.redis_sentinel_password)
    values += [secret.get_secret_value() for secret in redis_secrets if secret is not None]
    for url in {settings.redis_url, settings.broker, settings.result_backend}:
        password = urlsplit(url).password
        if password:
            values.append(unquote(password))
    return values


def _strings(value: Any) -> list[str]:
    """Every string (and number) inside a job's secrets."""
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return [str(value)]
    return []
