"""docker-compose.yml and the Dockerfile: services run programs of this project, and the file is valid Compose."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer.core
import typer.main
import yaml

from extendq.cli.main import app

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.yml"


def _compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def _app_services() -> dict[str, dict[str, Any]]:
    """The services built from this repository (redis runs its own image)."""
    return {name: spec for name, spec in _compose()["services"].items() if "build" in spec}


def _argv(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def _celery_app_module(argv: list[str]) -> str:
    for index, arg in enumerate(argv):
        if arg in ("-A", "--app"):
            return argv[index + 1]
        if arg.startswith("--app="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"no -A/--app in {argv}")


def _module_exists(dotted: str) -> bool:
    path = REPO.joinpath(*dotted.split(":")[0].split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


@pytest.mark.parametrize("service", sorted(_app_services()))
def test_service_command_runs_a_program_of_this_project(service: str) -> None:
    argv = _argv(_app_services()[service]["command"])
    program = argv[0]
    if program == "extendq":
        group = typer.main.get_command(app)
        assert isinstance(group, typer.core.TyperGroup)
        registered = group.commands
        assert argv[1] in registered, f"{service}: `extendq {argv[1]}` is not a command (have {sorted(registered)})"
    elif program == "celery":
        module = _celery_app_module(argv)
        assert _module_exists(module), f"{service}: celery app module {module} has no file in the repo"
    else:
        pytest.fail(f"{service}: unexpected program {program!r}")


def test_app_services_share_one_image_and_its_settings() -> None:
    for name, spec in _app_services().items():
        assert (spec["build"], spec["image"]) == (".", "extendq:local"), name
        assert spec["env_file"] == [{"path": ".env", "required": False}], name
        assert spec["environment"]["EXTENDQ_REDIS_URL"] == "redis://redis:6379/0", name
        assert spec["depends_on"]["redis"]["condition"] == "service_healthy", name
        assert "container_name" not in spec, name


def test_compose_file_has_no_version_key_and_redis_persists() -> None:
    compose = _compose()
    redis = compose["services"]["redis"]
    assert "version" not in compose
    assert "--appendonly" in _argv(redis["command"]) and redis["volumes"]
    assert redis["healthcheck"]["test"][-2:] == ["redis-cli", "ping"]


def test_dockerfile_runs_as_a_user_and_installs_the_ops_extra() -> None:
    lines = [line.strip() for line in (REPO / "Dockerfile").read_text().splitlines()]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert any('pip install ".[ops]"' in line for line in lines)
    assert ".env" in (REPO / ".dockerignore").read_text().split()


def _compose_tool() -> list[str] | None:
    """`docker compose` (v2) when it works, else `docker-compose`, else None."""
    for tool in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(tool[0]) and subprocess.run([*tool, "version"], capture_output=True).returncode == 0:
            return tool
    return None


def _major_version(tool: list[str]) -> int:
    out = subprocess.run([*tool, "version", "--short"], capture_output=True, text=True).stdout.strip()
    return int(out.lstrip("v").split(".")[0] or 0)


def _for_compose_v1(compose: dict[str, Any]) -> dict[str, Any]:
    """Compose 1.x predates optional env files (`required: false`, Compose 2.24): drop those entries only."""
    for spec in compose["services"].values():
        entries = spec.pop("env_file", [])
        entries = [entries] if isinstance(entries, str) else entries
        kept = [entry for entry in entries if not (isinstance(entry, dict) and entry.get("required") is False)]
        if kept:
            spec["env_file"] = [entry["path"] if isinstance(entry, dict) else entry for entry in kept]
    return compose


def test_compose_file_is_valid_compose(tmp_path: Path) -> None:
    tool = _compose_tool()
    if tool is None:
        if os.environ.get("CI"):
            pytest.fail("neither `docker compose` nor `docker-compose` is installed (.ci/run installs docker-compose)")
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    command = [*tool, "config", "-q"]
    if _major_version(tool) < 2:
        # Given a copy without what v1 cannot parse, with paths still relative to the repo
        copy = tmp_path / "docker-compose.yml"
        copy.write_text(yaml.safe_dump(_for_compose_v1(_compose())))
        command = [*tool, "-f", str(copy), "--project-directory", str(REPO), "config", "-q"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr or done.stdout
