"""docker-compose.yml, the Dockerfile and .env.example as an operator meets them; the file is valid Compose.

What no Docker engine is needed for. tests/e2e/test_compose.py runs each service's command and probe from
the package installed as the image installs it.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import typer.core
import typer.main

from extendq.cli.main import app
from extendq.config.settings import Settings
from tests.support.asgi import free_port
from tests.support.compose import (
    ENV_EXAMPLE,
    ROOT,
    SHELL_VARIABLES,
    app_services,
    argv,
    compose,
    compose_text,
    defaults,
    dotenv,
    in_profile,
    interpolate,
)

README = ROOT / "README.md"
# The only services that call the Extend API; every other one must not get the key.
CALLS_EXTEND = {"worker", "worker-ha"}
# The only port Extend itself must reach; the others are published on the host's loopback interface.
PUBLIC_PORTS = {"8000:8000"}


def _celery_app_module(command: list[str]) -> str:
    for index, arg in enumerate(command):
        if arg in ("-A", "--app"):
            return command[index + 1]
        if arg.startswith("--app="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"no -A/--app in {command}")


def _module_exists(dotted: str) -> bool:
    path = ROOT.joinpath(*dotted.split(":")[0].split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _readme() -> str:
    """The README with its lines joined, so a phrase may wrap."""
    return " ".join(README.read_text().split())


def _environment(spec: dict[str, Any]) -> dict[str, str]:
    env = spec.get("environment") or {}
    assert isinstance(env, dict), "environment as a mapping, so services can merge the shared settings"
    return {str(key): str(value) for key, value in env.items()}


@pytest.mark.parametrize("service", sorted(app_services()))
def test_service_command_runs_a_program_of_this_project(service: str) -> None:
    command = argv(app_services()[service]["command"])
    program = command[0]
    if program == "extendq":
        group = typer.main.get_command(app)
        assert isinstance(group, typer.core.TyperGroup)
        registered = group.commands
        assert command[1] in registered, (
            f"{service}: `extendq {command[1]}` is not a command (have {sorted(registered)})"
        )
    elif program == "celery":
        module = _celery_app_module(command)
        assert _module_exists(module), f"{service}: celery app module {module} has no file in the repo"
    else:
        pytest.fail(f"{service}: unexpected program {program!r}")


def test_app_services_share_one_image_and_no_env_file() -> None:
    for name, spec in app_services().items():
        assert (spec["build"], spec["image"]) == (".", "extendq:local"), name
        # An env file that may be missing needs Compose 2.24 (`required: false`); one that must exist breaks a
        # plain `docker compose up`. Compose reads .env for the variables the file names, in every release.
        assert "env_file" not in spec, name
        assert "container_name" not in spec, name


def test_services_that_read_settings_reach_the_stack_redis_once_it_is_healthy() -> None:
    for name, spec in app_services().items():
        if name == "emulator":  # the other side of the API: it reads no settings
            assert not spec.get("environment"), name
            continue
        if in_profile(spec, "ha"):  # tests/test_compose.py's ha tests
            continue
        assert _environment(spec)["EXTENDQ_REDIS_URL"] == "redis://redis:6379/0", name
        assert spec["depends_on"]["redis"]["condition"] == "service_healthy", name


def test_every_service_has_a_healthcheck_and_waits_only_on_healthy_services() -> None:
    services = compose()["services"]
    for name, spec in services.items():
        assert spec.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        for needed, condition in (spec.get("depends_on") or {}).items():
            assert condition == {"condition": "service_healthy"}, f"{name} -> {needed}"
            assert services[needed].get("healthcheck"), f"{name} waits for {needed}, which has no healthcheck"
    # The worker calls the emulator from its first job: it starts once both answer.
    assert set(services["worker"]["depends_on"]) == {"redis", "emulator"}


def test_the_api_key_reaches_only_the_services_that_call_extend() -> None:
    for name, spec in app_services().items():
        env = _environment(spec)
        has_key = {"EXTEND_API_KEY", "EXTENDQ_API_KEY", "EXTENDQ_TENANTS"} & set(env)
        assert bool(has_key) == (name in CALLS_EXTEND), f"{name}: {sorted(has_key)}"
        assert ("EXTENDQ_BASE_URL" in env) == (name in CALLS_EXTEND), name


def test_ports_are_published_on_loopback_except_the_webhook_receiver() -> None:
    for name, spec in compose()["services"].items():
        for port in spec.get("ports", []):
            published = interpolate(str(port), {})
            if published in PUBLIC_PORTS:
                assert name == "webhooks", name
                continue
            assert published.startswith("127.0.0.1:"), f"{name} publishes {published} on every interface"
    assert interpolate(compose()["services"]["redis"]["ports"][0], {}) == "127.0.0.1:6379:6379"


def test_flower_asks_for_basic_auth_whose_default_the_readme_gives() -> None:
    flower = app_services()["flower"]
    credentials = interpolate(_environment(flower)["FLOWER_BASIC_AUTH"], {})
    user, _, password = credentials.partition(":")
    assert user and password, credentials
    assert f"`FLOWER_BASIC_AUTH` (default `{credentials}`" in _readme()


def test_compose_file_has_no_version_key_and_redis_persists() -> None:
    spec = compose()
    redis = spec["services"]["redis"]
    assert "version" not in spec
    assert "--appendonly" in argv(redis["command"]) and redis["volumes"]
    assert redis["healthcheck"]["test"][-2:] == ["redis-cli", "ping"]


def test_env_example_copied_to_dot_env_changes_nothing_in_the_stack() -> None:
    # Given every variable the compose file reads and what it takes when unset
    example, example_text = dotenv(), ENV_EXAMPLE.read_text()
    for name, default in defaults().items():
        if name in SHELL_VARIABLES:
            continue
        # Then .env.example shows it, set or commented out, with compose's value (an empty value means unset)
        shown = re.findall(rf"^#? ?{name}=(.*)$", example_text, re.MULTILINE)
        assert len(shown) == 1, f".env.example shows {name} {len(shown)} times"
        assert shown[0] in (default, ""), f".env.example shows {name}={shown[0]}; compose's default is {default!r}"
    # And copied to .env, it resolves the whole file exactly as no .env does
    assert interpolate(compose_text(), example) == interpolate(compose_text(), {})


def test_dockerfile_runs_as_a_user_and_installs_the_ops_extra() -> None:
    text = (ROOT / "Dockerfile").read_text()
    lines = [line.strip() for line in text.splitlines()]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert any('pip install ".[ops]"' in line for line in lines)
    assert ".env" in (ROOT / ".dockerignore").read_text().split()
    # Beat's schedule lives in Redis (celery-redbeat), so the image keeps no schedule file.
    assert "beat_scheduler" in (ROOT / "tasks" / "celery.py").read_text()
    assert "schedule file there" not in text


def test_readme_states_which_compose_releases_run_the_file() -> None:
    # 1.28: the first docker-compose that reads `profiles`
    assert "Any Compose v2 release, or docker-compose 1.28 or later" in compose_text()
    assert "any Compose v2 release or docker-compose 1.28 and later" in _readme()


def _compose_tools() -> list[list[str]]:
    """`docker compose` (v2) and `docker-compose` (v1, or v2's standalone binary), those that answer."""
    found = []
    for tool in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(tool[0]) and subprocess.run([*tool, "version"], capture_output=True).returncode == 0:
            found.append(tool)
    return found


def _config(tool: list[str], project: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PWD": str(ROOT)}
    for name in defaults():
        if name not in SHELL_VARIABLES:
            env.pop(name, None)  # the shell's own settings would hide what the file and .env do
    command = [*tool, "--project-directory", str(project), "-f", str(project / "docker-compose.yml"), "config"]
    return subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=60)


def test_compose_file_is_valid_compose_unchanged(tmp_path: Path) -> None:
    tools = _compose_tools()
    if not tools:
        if os.environ.get("CI"):
            pytest.fail("neither `docker compose` nor `docker-compose` is installed (.ci/run installs docker-compose)")
        pytest.skip(
            "neither `docker compose` nor `docker-compose` is installed (Debian: apt-get install docker-compose)"
        )
    # Given the compose file alone, and beside it .env.example copied to .env (one project name: Compose v2
    # prints it and names networks and volumes after it)
    bare, with_env = tmp_path / "bare" / "extendq", tmp_path / "with-env" / "extendq"
    for project in (bare, with_env):
        project.mkdir(parents=True)
        shutil.copy(ROOT / "docker-compose.yml", project / "docker-compose.yml")
    shutil.copy(ENV_EXAMPLE, with_env / ".env")
    for tool in tools:
        # When each Compose found here reads them
        plain, copied = _config(tool, bare), _config(tool, with_env)
        # Then the file is valid as it is, and the copied .env changes nothing
        assert plain.returncode == 0, f"{' '.join(tool)}: {plain.stderr or plain.stdout}"
        assert copied.returncode == 0, f"{' '.join(tool)}: {copied.stderr or copied.stdout}"
        assert copied.stdout.replace(str(with_env), str(bare)) == plain.stdout


# ---- Profile `ha`: Redis that fails over ------------------------------------------------------------------

HA_DATA = {"redis-primary", "redis-replica"}
HA_SENTINELS = {"redis-sentinel-1", "redis-sentinel-2", "redis-sentinel-3"}


def _option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def _sentinel_conf(spec: dict[str, Any]) -> list[str]:
    """The lines a Sentinel service writes into its configuration, its name resolved."""
    script = argv(spec["command"], _environment(spec))[2]
    words = shlex.split(script.split(">", 1)[0])  # `[ -f sentinel.conf ] || printf '%s\n' LINE...`
    printed = words[words.index("printf") + 2 :]
    return [line.replace("$SENTINEL_NAME", _environment(spec)["SENTINEL_NAME"]) for line in printed]


def test_the_ha_profile_adds_a_primary_a_replica_three_sentinels_and_a_worker_and_beat() -> None:
    services = compose()["services"]
    ha = {name for name, spec in services.items() if in_profile(spec, "ha")}
    assert ha == HA_DATA | HA_SENTINELS | {"worker-ha", "beat-ha"}
    # A plain `docker compose up` starts none of them, and none of its services waits for one
    for name, spec in services.items():
        if name not in ha:
            assert not set(spec.get("depends_on") or {}) & ha, name
    # None is published on the host
    assert not any(services[name].get("ports") for name in ha)


def test_the_ha_nodes_persist_and_the_primary_refuses_writes_no_replica_has() -> None:
    services = compose()["services"]
    primary, replica = (argv(services[name]["command"]) for name in ("redis-primary", "redis-replica"))
    for command, name in ((primary, "redis-primary"), (replica, "redis-replica")):
        assert (_option(command, "--appendonly"), _option(command, "--appendfsync")) == ("yes", "everysec")
        assert _option(command, "--replica-announce-ip") == name  # containers change addresses, names do not
        assert services[name]["volumes"]
    assert (_option(primary, "--min-replicas-to-write"), _option(primary, "--min-replicas-max-lag")) == ("1", "10")
    assert replica[replica.index("--replicaof") + 1 : replica.index("--replicaof") + 3] == ["redis-primary", "6379"]


def test_three_sentinels_watch_the_primary_each_announcing_its_own_name() -> None:
    services = compose()["services"]
    for name in HA_SENTINELS:
        conf = _sentinel_conf(services[name])
        assert "sentinel monitor mymaster redis-primary 6379 2" in conf, conf
        assert {"sentinel resolve-hostnames yes", "sentinel announce-hostnames yes"} <= set(conf)
        assert f"sentinel announce-ip {name}" in conf
        assert argv(services[name]["healthcheck"]["test"])[1:] == ["redis-cli", "-p", "26379", "ping"]
        assert set(services[name]["depends_on"]) == HA_DATA


def test_the_ha_worker_and_beat_reach_redis_through_every_sentinel() -> None:
    services = compose()["services"]
    for name in ("worker-ha", "beat-ha"):
        settings = Settings.from_env(
            {key: interpolate(value, {}) for key, value in _environment(services[name]).items()}
        )
        sentinel = settings.sentinel_urls()["EXTENDQ_REDIS_URL"]
        assert (sentinel.service_name, sentinel.db) == ("mymaster", 0)
        assert set(sentinel.sentinels) == {(host, 26379) for host in HA_SENTINELS}
        assert {needed for needed in services[name]["depends_on"] if needed in HA_SENTINELS} == HA_SENTINELS
    # The worker runs as the plain one does, but checks only: the stack's receiver writes to the plain Redis
    plain, ha = app_services()["worker"], app_services()["worker-ha"]
    assert argv(ha["command"]) == argv(plain["command"])
    assert _environment(ha)["EXTENDQ_WEBHOOKS_ENABLED"] == "false"
    assert app_services()["beat-ha"]["healthcheck"] == app_services()["beat"]["healthcheck"]


def test_a_sentinel_writes_its_configuration_once_and_redis_runs_it(tmp_path: Path) -> None:
    # Given a Sentinel service's command, run by a shell where `redis-server` only records what it was given
    spec = compose()["services"]["redis-sentinel-2"]
    script = argv(spec["command"], _environment(spec))[2]
    stub = tmp_path / "bin" / "redis-server"
    stub.parent.mkdir()
    stub.write_text('#!/bin/sh\necho "$@" > started-with\n')
    stub.chmod(0o755)
    env = {**os.environ, **_environment(spec), "PATH": f"{stub.parent}{os.pathsep}{os.environ['PATH']}"}
    # When it starts, twice (a restart keeps what the Sentinel rewrote since)
    subprocess.run(["sh", "-c", script], cwd=tmp_path, env=env, check=True, timeout=30)
    conf = tmp_path / "sentinel.conf"
    written = conf.read_text()
    conf.write_text(written + "# learnt since\n")
    subprocess.run(["sh", "-c", script], cwd=tmp_path, env=env, check=True, timeout=30)
    # Then the configuration was written once, and Redis was started as a Sentinel on it
    assert conf.read_text() == written + "# learnt since\n"
    assert written.splitlines() == _sentinel_conf(spec)
    assert (tmp_path / "started-with").read_text().split() == ["sentinel.conf", "--sentinel"]
    if shutil.which("redis-server"):
        _sentinel_runs(written, tmp_path)


def _sentinel_runs(conf: str, folder: Path) -> None:
    """A real redis-server takes the configuration as a Sentinel, watching a primary on this host."""
    primary, sentinel = free_port(), free_port()
    data = subprocess.Popen(["redis-server", "--port", str(primary), "--save", "", "--dir", str(folder)])
    (folder / "local.conf").write_text(conf.replace("redis-primary 6379", f"127.0.0.1 {primary}"))
    watch = subprocess.Popen(["redis-server", str(folder / "local.conf"), "--sentinel", "--port", str(sentinel)])
    try:
        with redis.Redis(port=sentinel, decode_responses=True) as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    assert client.sentinel_get_master_addr_by_name("mymaster") == ("127.0.0.1", primary)
                    return
                except redis.ConnectionError:
                    assert time.monotonic() < deadline, "the Sentinel did not start"
                    time.sleep(0.1)
    finally:
        for proc in (watch, data):
            proc.terminate()
            proc.wait(10)
