"""Per-run secrets sealed with a key producers and workers share, so Redis only ever holds ciphertext."""

from __future__ import annotations

import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from extendq.errors import ConfigError, InvalidJobRequest


def new_key() -> str:
    """A fresh key for `EXTENDQ_SECRETS_KEY`."""
    return Fernet.generate_key().decode()


def check_key(key: str) -> None:
    """Raise `ConfigError` unless `key` is a valid `EXTENDQ_SECRETS_KEY`."""
    _fernet(key)


def seal(secrets: dict[str, Any], key: str | None) -> str:
    """Encrypt `secrets` for a task message; refuses when no key is configured."""
    if not key:
        raise InvalidJobRequest("secrets need EXTENDQ_SECRETS_KEY set on producers and workers; refusing to queue them")
    try:
        payload = json.dumps(secrets, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise InvalidJobRequest(f"secrets must be JSON-serialisable: {type(exc).__name__}") from None
    return _fernet(key).encrypt(payload).decode()


def unseal(token: str, key: str | None) -> dict[str, Any]:
    """Decrypt sealed secrets inside the worker; a wrong key or a tampered token is an invalid request."""
    if not key:
        raise InvalidJobRequest("the job carries sealed secrets but this worker has no EXTENDQ_SECRETS_KEY")
    try:
        value = json.loads(_fernet(key).decrypt(token.encode()))
    except (InvalidToken, ValueError):
        raise InvalidJobRequest("sealed secrets cannot be opened with this worker's EXTENDQ_SECRETS_KEY") from None
    if not isinstance(value, dict):
        raise InvalidJobRequest("sealed secrets must hold a JSON object")
    return value


def _fernet(key: str) -> Fernet:
    try:
        return Fernet(key.encode())
    except ValueError:
        raise ConfigError("EXTENDQ_SECRETS_KEY is not a valid key (make one with `extendq secrets-key`)") from None
