"""Checks of the TLS files settings name (`EXTENDQ_REDIS_TLS_*`), made when settings are read."""

from __future__ import annotations

import os
import ssl
from typing import Any

__all__ = ["check_tls_files"]


def check_tls_files(ca_file: str | None, cert_file: str | None, key_file: str | None) -> None:
    """Refuse TLS files that cannot work: ValueError naming the variable (Settings reports it as ConfigError)."""
    if bool(cert_file) != bool(key_file):
        given, missing = ("CERT", "KEY") if cert_file else ("KEY", "CERT")
        raise ValueError(f"EXTENDQ_REDIS_TLS_{given}_FILE is set without EXTENDQ_REDIS_TLS_{missing}_FILE")
    for variable, path in (("CA", ca_file), ("CERT", cert_file), ("KEY", key_file)):
        if path and not (os.path.isfile(path) and os.access(path, os.R_OK)):
            raise ValueError(f"EXTENDQ_REDIS_TLS_{variable}_FILE: no readable file at {path}")
    context = ssl.create_default_context()
    if ca_file:
        _load(context.load_verify_locations, "EXTENDQ_REDIS_TLS_CA_FILE is not a PEM CA bundle", ca_file)
    if cert_file and key_file:
        problem = (
            "EXTENDQ_REDIS_TLS_CERT_FILE and EXTENDQ_REDIS_TLS_KEY_FILE are not a PEM certificate and its "
            "unencrypted key"
        )
        _load(context.load_cert_chain, problem, cert_file, key_file, _no_password)


def _load(load: Any, problem: str, *args: Any) -> None:
    try:
        load(*args)
    except (ssl.SSLError, OSError, ValueError):
        raise ValueError(problem) from None


def _no_password() -> str:
    """An encrypted key is refused at once rather than asking for its password on the terminal."""
    return ""
