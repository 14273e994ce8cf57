"""docker-compose.yml's services run from the package installed as the Dockerfile installs it, with no engine.

A fresh venv gets the built wheel with the Dockerfile's extras; the services' commands and healthchecks run
from it, in a copy of the sources (the image's working directory, /app). The stack is started as Compose would
start it, in `depends_on` order, each service once the ones it waits for pass their probes; only its host names
and ports change (to 127.0.0.1, this test's Redis database and free ports). Each probe must fail before its
service runs and pass once it does. tests/test_compose.py checks the file itself, with `docker-compose config`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from tests.e2e.test_install import _wheel
from tests.support.compose import ROOT, app_services, argv, healthcheck_argv, in_profile, interpolate
from tests.support.emulator import free_port
from tests.support.groups import stop_group
from tests.support.sentinel_redis import SentinelGroup

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

SAMPLE = "samples/invoices/northwind-1042.txt"
# Settings of the machine running the tests must not leak into the services (compose gives each its own).
_LEAKY = re.compile(r"^(EXTENDQ_|EXTEND_API_KEY$|FLOWER_)")


def _dockerfile_env() -> dict[str, str]:
    """The variables the Dockerfile's ENV instructions set (PYTHONDONTWRITEBYTECODE, ...)."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    found = dict(re.findall(r"(\w+)=(\S+)", " ".join(re.findall(r"^ENV (.*)$", text, re.MULTILINE))))
    assert found.get("PYTHONDONTWRITEBYTECODE") == "1", found
    return found


def _files(folder: Path) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*")}


def _dockerfile_extras() -> str:
    """The extras the Dockerfile installs (`pip install ".[ops]"` -> "[ops]")."""
    found = re.search(r'pip install "\.(\[[^\]]*\])"', (ROOT / "Dockerfile").read_text())
    assert found, 'the Dockerfile no longer installs the package as `pip install ".[extras]"`'
    return found.group(1)


@dataclass(frozen=True)
class Image:
    """The image's Python environment: its venv (bin first on PATH) and its working directory (the sources)."""

    venv: Path
    workdir: Path

    @property
    def bin(self) -> Path:
        """Where the image's programs are (/usr/local/bin in the image)."""
        return self.venv / "bin"

    def env(self, extra: Mapping[str, str]) -> dict[str, str]:
        """A container's environment: this machine's, without its extendq settings, plus the Dockerfile's ENV."""
        base = {key: value for key, value in os.environ.items() if not _LEAKY.match(key)}
        path = f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}"
        return {**base, **_dockerfile_env(), "PATH": path, **extra}

    def run(self, args: list[str], env: Mapping[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """`args` run in the image's working directory with `env` added to a container's environment."""
        return subprocess.run(
            args, cwd=self.workdir, env=self.env(env), capture_output=True, text=True, timeout=timeout, check=False
        )


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    """A fresh venv with the wheel and the Dockerfile's extras, non-editable, as `docker build` makes it."""
    tmp = tmp_path_factory.mktemp("image")
    wheel = _wheel(tmp)  # also leaves the copied sources in tmp/source, as COPY leaves them in /app
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    done = subprocess.run([*pip, f"{wheel}{_dockerfile_extras()}"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    workdir = tmp / "source"
    assert (workdir / SAMPLE).is_file()
    return Image(venv=venv, workdir=workdir)


@pytest.mark.parametrize("service", sorted(app_services()))
def test_the_service_command_is_a_program_of_the_image_and_takes_its_options(image: Image, service: str) -> None:
    # Given the service's command as the container runs it
    command = argv(app_services()[service]["command"])
    # Then its program is one the image installed, and it answers --help with those very arguments
    assert (image.bin / command[0]).is_file(), f"{service}: {command[0]} is not in the image's venv"
    done = image.run([*command, "--help"], env={})
    assert done.returncode == 0, f"{service}: {done.stdout}{done.stderr}"
    assert "Usage" in done.stdout or "usage" in done.stdout


@pytest.mark.parametrize("service", sorted(app_services()))
def test_the_healthcheck_program_is_in_the_image(image: Image, service: str) -> None:
    probe = healthcheck_argv(app_services()[service]["healthcheck"]["test"])
    programs = [probe[0]] if probe[0] != "/bin/sh" else ["/bin/sh", probe[2].split()[0]]
    for program in programs:
        if os.path.isabs(program):  # the base image's own, e.g. /bin/sh
            assert os.access(program, os.X_OK), f"{service}: {program} is missing"
            continue
        # A bare name is one the image's Python installed (the venv here; /usr/local/bin in the image).
        assert os.access(image.bin / program, os.X_OK), f"{service}: {program} is not in the image's venv"


# ---- The stack, started from the image's venv ------------------------------------------------------------


@dataclass
class Service:
    """One compose service as a child process: its command, environment and probe, moved to this host."""

    name: str
    command: list[str]
    env: dict[str, str]
    probe: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    def start(self, image: Image) -> None:
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.command,
            cwd=image.workdir,
            env=image.env(self.env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def healthy(self, image: Image) -> bool:
        """Whether the probe passes now (as the engine runs it: in the container, with its environment)."""
        return image.run(self.probe, env={**self.env, "HOSTNAME": socket.gethostname()}, timeout=60).returncode == 0

    def wait_healthy(self, image: Image, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, f"{self.name} exited:\n{self.log()}"
            if self.healthy(image):
                return
            time.sleep(1)
        raise AssertionError(f"{self.name} not healthy after {timeout_s}s:\n{self.log()}")

    def stop(self) -> None:
        stop_group(self.proc, 15)
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # children that outlived their parent
            except ProcessLookupError:
                pass
        if self._log is not None:
            self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""


class _Host:
    """How the stack's names and ports map onto this machine."""

    def __init__(self, redis_url: str, sentinel_url: str = "") -> None:
        published = [str(port).rsplit(":", 1)[-1] for spec in app_services().values() for port in spec.get("ports", [])]
        # Every container port the file uses (and the workers' metrics port) gets a free port here.
        defaults = {"EXTENDQ_METRICS_PORT": "9540"}
        metrics = interpolate(str(app_services()["worker"]["environment"]["EXTENDQ_METRICS_PORT"]), defaults)
        self.ports = {port: str(free_port()) for port in {*published, metrics}}
        self.redis_url = redis_url
        self.sentinel_url = sentinel_url

    def move(self, value: str) -> str:
        value = value.replace("redis://redis:6379/0", self.redis_url)
        if self.sentinel_url:
            value = re.sub(r"redis\+sentinel://[^ ]*/mymaster/0", self.sentinel_url, value)
        value = re.sub(r"//(emulator|webhooks):", "//127.0.0.1:", value)
        for port, free in self.ports.items():
            value = re.sub(rf"(?<![\d.]){port}(?!\d)", free, value)
        return value


def _service(name: str, host: _Host, logs: Path) -> Service:
    spec = app_services()[name]
    env = {key: host.move(interpolate(str(value), {})) for key, value in (spec.get("environment") or {}).items()}
    return Service(
        name=name,
        command=[host.move(part) for part in argv(spec["command"])],
        env=env,
        probe=[host.move(part) for part in healthcheck_argv(spec["healthcheck"]["test"])],
        log_path=logs / f"{name}.log",
    )


def _services(profile: str | None) -> dict[str, dict[str, Any]]:
    """The app services a `docker compose up` starts with `profile` (None: none), those of the plain stack left out."""
    return {name: spec for name, spec in app_services().items() if in_profile(spec, profile)}


def _start_order(profile: str | None = None) -> list[str]:
    """The app services of `profile` in an order that starts each after those it depends on (Redis, its Sentinels
    and the plain stack run already)."""
    services, order = _services(profile), []
    while len(order) < len(services):
        ready = [
            name
            for name, spec in sorted(services.items())
            if name not in order
            and all(needed not in services or needed in order for needed in spec.get("depends_on", {}))
        ]
        assert ready, f"a depends_on cycle among {sorted(set(services) - set(order))}"
        order += ready
    return order


@dataclass
class Stack:
    image: Image
    host: _Host
    services: dict[str, Service]
    unhealthy_before_start: dict[str, bool]
    workdir_before: set[str]

    def url(self, service: str) -> str:
        container_port = str(app_services()[service]["ports"][0]).rsplit(":", 1)[-1]
        return f"http://127.0.0.1:{self.host.ports[container_port]}"


@pytest.fixture(scope="module")
def stack(image: Image, module_redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Every app service, started in depends_on order once the services it waits for pass their probes."""
    logs = tmp_path_factory.mktemp("stack-logs")
    host = _Host(module_redis_url)
    services: dict[str, Service] = {}
    failed_before: dict[str, bool] = {}
    workdir_before = _files(image.workdir)
    try:
        _start(_start_order(), host, logs, image, services, failed_before)
        yield Stack(image, host, services, unhealthy_before_start=failed_before, workdir_before=workdir_before)
    finally:
        for service in reversed(list(services.values())):
            service.stop()


def _start(
    names: list[str], host: _Host, logs: Path, image: Image, services: dict[str, Service], failed: dict[str, bool]
) -> None:
    for name in names:
        service = services[name] = _service(name, host, logs)
        # Given nothing serves yet, the probe fails (it asks this service, not something always true)
        failed[name] = not service.healthy(image)
        service.start(image)
        service.wait_healthy(image)


@pytest.fixture(scope="module")
def ha_stack(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Profile `ha`'s app services (worker-ha, beat-ha) on a primary, a replica and three Sentinels of this host, beside
    the plain stack (its emulator)."""
    folder = tmp_path_factory.mktemp("ha-stack")
    host = _Host(stack.host.redis_url)  # ports of its own (the workers' metrics), but the stack's emulator
    emulator = str(app_services()["emulator"]["ports"][0]).rsplit(":", 1)[-1]
    host.ports[emulator] = stack.host.ports[emulator]
    services: dict[str, Service] = {}
    failed_before: dict[str, bool] = {}
    with SentinelGroup(folder / "redis") as group:
        host.sentinel_url = group.url(0)
        try:
            _start(_start_order("ha"), host, folder, stack.image, services, failed_before)
            yield Stack(stack.image, host, services, failed_before, stack.workdir_before)
        finally:
            for service in reversed(list(services.values())):
                service.stop()


def test_every_probe_fails_before_its_service_runs_and_passes_once_it_does(stack: Stack) -> None:
    assert stack.unhealthy_before_start == {name: True for name in _services(None)}
    for service in stack.services.values():
        assert service.healthy(stack.image), f"{service.name}:\n{service.log()}"


def test_flower_asks_for_the_basic_auth_from_its_environment(stack: Stack) -> None:
    credentials = stack.services["flower"].env["FLOWER_BASIC_AUTH"]
    user, _, password = credentials.partition(":")
    assert httpx.get(f"{stack.url('flower')}/", timeout=10).status_code == 401
    assert httpx.get(f"{stack.url('flower')}/", auth=(user, "wrong"), timeout=10).status_code == 401
    assert httpx.get(f"{stack.url('flower')}/", auth=(user, password), timeout=10).status_code == 200


def _submitted(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert isinstance(report, dict)
    return report


def test_a_sample_submitted_from_the_host_comes_back_processed_through_the_webhook(stack: Stack) -> None:
    # Given the host's extendq pointed at the stack's published Redis (README "Run it with docker compose")
    env = {"EXTENDQ_REDIS_URL": stack.host.redis_url}
    # When it submits a sample by its absolute path and waits
    path = str(stack.image.workdir / SAMPLE)
    submit = ["extendq", "submit", path, "--workflow", "workflow_invoice", "--wait", "--timeout", "120", "--json"]
    report = _submitted(stack.image.run(submit, env=env, timeout=180))
    # Then the worker read the file, the emulator ran it and its webhook reached the receiver
    assert [(job["state"], job["run_status"]) for job in report["jobs"]] == [("SUCCESS", "PROCESSED")], report
    stats = httpx.get(f"{stack.url('emulator')}/_emulator/stats", timeout=10).json()
    assert stats["requests"].get("POST /workflow_runs"), stats["requests"]
    metrics = httpx.get(f"{stack.url('webhooks')}/metrics", timeout=10).text
    assert re.search(r'^extendq_webhook_deliveries_total\{[^}]*outcome="accepted"[^}]*\} [1-9]', metrics, re.M), metrics


def test_a_sample_submitted_with_the_worker_container_s_own_extendq_comes_back_processed(stack: Stack) -> None:
    # Given the worker's environment and working directory (`docker compose exec worker ...`)
    worker = stack.services["worker"]
    submit = ["extendq", "submit", SAMPLE, "--workflow", "workflow_invoice", "--wait", "--timeout", "120", "--json"]
    # When its extendq submits a sample by the relative path the README gives
    report = _submitted(stack.image.run(submit, env=worker.env, timeout=180))
    # Then the run came back PROCESSED
    assert [(job["state"], job["run_status"]) for job in report["jobs"]] == [("SUCCESS", "PROCESSED")], report


def test_the_services_write_nothing_in_the_image_s_working_directory(stack: Stack) -> None:
    # /app is root's and read-only to the services' user: beat keeps its schedule in Redis, not in a file there
    assert _files(stack.image.workdir) == stack.workdir_before


def test_the_ha_profile_s_worker_and_beat_run_on_the_sentinels(ha_stack: Stack) -> None:
    # Given worker-ha and beat-ha started on the Sentinels, each probe failing before and passing after
    assert ha_stack.unhealthy_before_start == {"worker-ha": True, "beat-ha": True}
    for service in ha_stack.services.values():
        assert service.healthy(ha_stack.image), f"{service.name}:\n{service.log()}"
    # When worker-ha's own extendq submits a sample
    worker = ha_stack.services["worker-ha"]
    submit = ["extendq", "submit", SAMPLE, "--workflow", "workflow_invoice", "--wait", "--timeout", "120", "--json"]
    report = _submitted(ha_stack.image.run(submit, env=worker.env, timeout=180))
    # Then the run came back PROCESSED, through checks
    assert [(job["state"], job["run_status"]) for job in report["jobs"]] == [("SUCCESS", "PROCESSED")], report


def test_the_dashboard_shows_the_stack_s_worker_and_is_read_only_without_a_token(stack: Stack) -> None:
    # Given the stack's dashboard, whose EXTENDQ_DASHBOARD_TOKEN compose leaves empty
    url = stack.url("dashboard")
    # When it is read
    overview = httpx.get(f"{url}/api/overview", timeout=10).raise_for_status().json()
    # Then it sees the stack's worker, and refuses every action
    assert {queue for worker in overview["workers"] for queue in worker["queues"]} >= {"extendq", "extendq.checks"}
    assert "read-only" in httpx.get(f"{url}/", timeout=10).text
    assert httpx.post(f"{url}/jobs/any/cancel", data={"csrf_token": "x"}, timeout=10).status_code == 403
