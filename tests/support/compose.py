"""docker-compose.yml read as Compose reads it: services, their commands and healthchecks, `${VAR:-default}`."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
# `$$` is a literal dollar; `${NAME}`, `${NAME-default}`, `${NAME:-default}`, `${NAME?err}`, `${NAME:?err}`.
_VARIABLE = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<default>[^}]*))?\}")
# Variables the shell gives Compose, never a setting of ours.
SHELL_VARIABLES = frozenset({"PWD"})


def compose_text() -> str:
    """The compose file as text, as Compose interpolates it."""
    return COMPOSE_FILE.read_text()


def compose() -> dict[str, Any]:
    """The compose file as YAML (anchors and merge keys applied, variables not yet interpolated)."""
    loaded = yaml.safe_load(compose_text())
    assert isinstance(loaded, dict)
    return loaded


def app_services() -> dict[str, dict[str, Any]]:
    """The services built from this repository (redis runs its own image)."""
    return {name: spec for name, spec in compose()["services"].items() if "build" in spec}


def in_profile(spec: Mapping[str, Any], profile: str | None) -> bool:
    """Whether a service starts with `profile` (None: a plain `docker compose up`, services of no profile only)."""
    profiles = spec.get("profiles") or []
    return not profiles if profile is None else profile in profiles


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """`value` with its variables replaced as Compose does, from `env` (the shell and the `.env` file)."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, default = match.group("name"), match.group("op"), match.group("default") or ""
        if op == ":-":
            return env.get(name) or default
        if op == "-":
            return env.get(name, default)
        return env.get(name, "")

    return _VARIABLE.sub(replace, value)


def defaults() -> dict[str, str]:
    """Every variable the compose file reads, with the value it takes when the variable is unset."""
    found: dict[str, str] = {}
    for match in _VARIABLE.finditer(compose_text()):
        name = match.group("name")
        if name and match.group("op") in (":-", "-"):
            assert found.setdefault(name, match.group("default")) == match.group("default"), f"{name}: two defaults"
        elif name:
            found.setdefault(name, "")
    return found


def dotenv(path: Path = ENV_EXAMPLE) -> dict[str, str]:
    """The variables a `.env` file sets (its commented-out lines set nothing)."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            name, value = line.split("=", 1)
            values[name.strip()] = value.strip()
    return values


def argv(command: str | list[Any], env: Mapping[str, str] | None = None) -> list[str]:
    """A service's command as the container runs it, its variables resolved from `env` (unset: the defaults)."""
    parts = shlex.split(command) if isinstance(command, str) else [str(part) for part in command]
    return [interpolate(part, env or {}) for part in parts]


def healthcheck_argv(test: list[str] | str) -> list[str]:
    """A healthcheck's `test` as the engine runs it: `CMD` as is, `CMD-SHELL` (or a string) through `/bin/sh -c`."""
    if isinstance(test, str):
        return ["/bin/sh", "-c", interpolate(test, {})]
    kind, *rest = test
    resolved = [interpolate(part, {}) for part in rest]
    if kind == "CMD":
        return resolved
    assert kind == "CMD-SHELL", f"unknown healthcheck form {kind!r}"
    return ["/bin/sh", "-c", " ".join(resolved)]
