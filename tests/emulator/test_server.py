"""Serving: the `extendq emulator` command line, the uvicorn factories and EmulatorProcess itself."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest

from extendq.emulator.app import create_app
from extendq.emulator.profiles import ProfileError
from extendq.emulator.server import create_app_from_env
from tests.support.emulator import ROOT, EmulatorProcess, free_port


def test_the_cli_serves_a_profile_file_and_checks_api_keys() -> None:
    profile = {
        "base": "fast",
        "seed": 11,
        "workflows": {"workflow_custom": {"name": "C", "duration_s": [0, 0], "outcomes": "content"}},
    }
    with EmulatorProcess(profile=profile, api_keys=["key-1", "key-2"]) as process:
        assert process.get_profile()["seed"] == 11 and "workflow_custom" in process.get_profile()["workflows"]
        headers = {"x-extend-api-version": "2026-02-09"}
        answers = [
            httpx.get(f"{process.url}/workflow_runs", headers={**headers, "Authorization": f"Bearer {key}"}).status_code
            for key in ("key-1", "key-2", "key-3")
        ]
        assert answers == [200, 200, 401]
        pid = process.pid
    with pytest.raises(ProcessLookupError):  # stopped and reaped: no orphan left
        os.kill(pid, 0)


def test_the_cli_refuses_an_unknown_profile() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "extendq", "emulator", "--port", str(free_port()), "--profile", "nope"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0 and "neither a built-in profile" in result.stderr


def test_emulator_process_reports_a_failed_start() -> None:
    with pytest.raises(RuntimeError, match="exited with status"):
        EmulatorProcess(profile="does-not-exist").start()


def test_uvicorn_factory_with_defaults() -> None:
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "extendq.emulator.app:create_app",
        "--port",
        str(port),
        "--no-access-log",
    ]
    process = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                profile = httpx.get(f"http://127.0.0.1:{port}/_emulator/profile").json()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.05)
        assert profile["name"] == "default"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_env_factory_reads_emulator_variables() -> None:
    app = create_app_from_env(
        {"EXTENDQ_EMULATOR_PROFILE": "payg", "EXTENDQ_EMULATOR_API_KEYS": "a, b", "EXTENDQ_EMULATOR_WEBHOOK_URL": ""}
    )
    state = app.state.emulator
    assert state.profile.name == "payg" and state.api_keys == {"a", "b"} and state.webhooks.url is None


def test_create_app_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="webhook_secret"):
        create_app("fast", webhook_url="http://127.0.0.1:9/hooks")
    with pytest.raises(ProfileError):
        create_app("nope")


def test_a_key_revoked_through_the_admin_api_is_refused_and_the_others_still_work() -> None:
    with EmulatorProcess(profile="fast", api_keys=["key-a", "key-b"]) as process:

        def status(key: str) -> int:
            headers = {"x-extend-api-version": "2026-02-09", "Authorization": f"Bearer {key}"}
            return httpx.get(f"{process.url}/workflow_runs", headers=headers).status_code

        assert (status("key-a"), status("key-b")) == (200, 200)
        # When key-a is revoked (only key-b accepted from now on)
        assert process.set_api_keys(["key-b"]) == ["key-b"]
        # Then key-a is refused, key-b goes on; a bad body is refused
        assert (status("key-a"), status("key-b")) == (401, 200)
        assert httpx.get(f"{process.url}/_emulator/api_keys").json() == {"keys": ["key-b"]}
        assert httpx.put(f"{process.url}/_emulator/api_keys", json={"keys": "key-b"}).status_code == 400
