"""`EmulatorProcess`: the Extend API emulator served in a subprocess, for end-to-end tests.

    with EmulatorProcess(profile="fast") as emulator:
        client = Extend(token="test", base_url=emulator.url)
        ...
        assert emulator.stats()["requests"]["POST /workflow_runs"] == {"200": 1}

The process runs the real command line (`python -m extendq emulator ...`) on a free loopback port
and is stopped (SIGTERM, then SIGKILL) on exit. Admin helpers wrap the `/_emulator/` API; see
docs/emulator.md for the JSON shapes they return.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from tests.support.asgi import free_port

ROOT = Path(__file__).resolve().parents[2]
API_VERSION = "2026-02-09"


class EmulatorProcess:
    """The emulator served by `python -m extendq emulator` in a subprocess.

    Args:
        profile: built-in name (`default`, `fast`, `payg`), a profile file path, or a profile dict
            (written to a temporary JSON file).
        webhook_url: where `workflow_run.*` events are posted.
        webhook_secret: `wss_...` signing secret (required with webhook_url).
        api_keys: accept only these API keys (any key when empty).
        start_timeout_s: how long to wait for the emulator to answer.
        program: the command that takes `emulator` and its options (an installed `extendq`).
        cwd: the directory it runs in.

    One object serves one process: `start()` (or `with`) once, `stop()` when done.
    """

    def __init__(
        self,
        profile: str | Path | Mapping[str, Any] = "fast",
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        api_keys: Iterable[str] = (),
        *,
        start_timeout_s: float = 90.0,
        program: Sequence[str] = (sys.executable, "-m", "extendq"),
        cwd: Path = ROOT,
    ) -> None:
        self.program = list(program)
        self.cwd = cwd
        self.profile = profile
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.api_keys = list(api_keys)
        self.start_timeout_s = start_timeout_s
        self.port = 0
        self.url = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix="extendq-emulator-")
        self._admin: httpx.Client | None = None

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> EmulatorProcess:
        """Start the process and wait until it answers; returns self.

        A free port can be taken by another process (another test run's emulator) before this one binds it:
        the emulator then exits, while the other answers on the port. The health answer names the serving
        process, so that case starts again on another port instead of testing against a stranger.
        """
        for _ in range(5):
            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            log = (Path(self._tmp.name) / "emulator.log").open("wb")
            self._process = subprocess.Popen(self.command(), cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT)
            log.close()
            self._admin = httpx.Client(base_url=f"{self.url}/_emulator", timeout=30)
            if self._wait_ready():
                return self
            self._discard()
        raise RuntimeError("the emulator could not get a port of its own in 5 tries")

    def command(self) -> list[str]:
        """The command line that serves the emulator."""
        cmd = [*self.program, "emulator", "--host", "127.0.0.1", "--port", str(self.port)]
        cmd += ["--profile", self._profile_arg()]
        if self.webhook_url:
            cmd += ["--webhook-url", self.webhook_url, "--webhook-secret", self.webhook_secret or ""]
        for key in self.api_keys:
            cmd += ["--api-key", key]
        return cmd

    def stop(self) -> None:
        """Stop the process (SIGTERM, SIGKILL after 10 s) and clean up; safe to call twice."""
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self._tmp.cleanup()

    @property
    def pid(self) -> int:
        """The process id of the running emulator."""
        if self._process is None:
            raise RuntimeError("the emulator is not running")
        return self._process.pid

    def logs(self) -> str:
        """What the process printed so far (stdout and stderr)."""
        path = Path(self._tmp.name) / "emulator.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ---- admin API -------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget runs, files, stats, requests and webhook records (the profile stays)."""
        self._call("POST", "/reset")

    def stats(self) -> dict[str, Any]:
        """`{"requests": {"GET /workflow_runs/{id}": {"200": n}}, "requests_total", "runs_by_status", ...}`."""
        return dict(self._call("GET", "/stats"))

    def runs(self, workflow_id: str | None = None) -> list[dict[str, Any]]:
        """Every run in full (metadata, createdAt and updatedAt included)."""
        params = {"workflowId": workflow_id} if workflow_id else {}
        return list(self._call("GET", "/runs", params=params)["data"])

    def requests(self, since: float | None = None) -> list[dict[str, Any]]:
        """The Extend-surface request log: `[{method, route, path, status, at, retryAfter}]`."""
        params = {"since": str(since)} if since is not None else {}
        return list(self._call("GET", "/requests", params=params))

    def webhooks(self) -> list[dict[str, Any]]:
        """Every webhook delivery attempt: `[{eventId, eventType, runId, attempt, statusCode, error, at, ...}]`."""
        return list(self._call("GET", "/webhooks"))

    def get_profile(self) -> dict[str, Any]:
        """The profile in force, in profile-file shape."""
        return dict(self._call("GET", "/profile"))

    def set_profile(self, profile: Mapping[str, Any]) -> dict[str, Any]:
        """Replace the profile (validated by the emulator; `{"base": "fast", ...}` overrides a built-in)."""
        return dict(self._call("PUT", "/profile", json=dict(profile)))

    def outages(self) -> list[dict[str, Any]]:
        """The routes in an outage now: `[{route, status, until, untilIso}]`."""
        return list(self._call("GET", "/outages"))

    def start_outage(self, route: str, for_s: float, status: int = 503) -> dict[str, Any]:
        """Make `route` (e.g. `POST /workflow_runs/batch`) answer `status` for `for_s` seconds from now (0 ends it)."""
        return dict(self._call("POST", "/outage", json={"route": route, "status": status, "for_s": for_s}))

    def set_webhook(self, url: str | None, secret: str | None = None, mirrors: Sequence[str] = ()) -> None:
        """Send webhooks to `url` signed with `secret` from now on (None stops them), and to each of `mirrors`."""
        self._call("PUT", "/webhook", json={"url": url, "secret": secret, "mirrors": list(mirrors)})

    def set_api_keys(self, keys: Iterable[str]) -> list[str]:
        """Accept only `keys` from now on (a key left out is revoked: 401); empty accepts any key again."""
        return list(self._call("PUT", "/api_keys", json={"keys": list(keys)})["keys"])

    def review(
        self, run_id: str, decision: str, note: str | None = None, reviewer: str | None = None
    ) -> dict[str, Any]:
        """Approve (`"approve"`) or reject (`"reject"`) a NEEDS_REVIEW run; returns the run."""
        body: dict[str, Any] = {"decision": decision, "note": note}
        if reviewer is not None:
            body["reviewer"] = reviewer
        return dict(self._call("POST", f"/runs/{run_id}/review", json=body))

    # ---- internals -------------------------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        if self._admin is None:
            raise RuntimeError("the emulator is not running")
        response = self._admin.request(method, path, **kwargs)
        if response.is_error:
            raise RuntimeError(f"{method} /_emulator{path} -> {response.status_code}: {response.text}")
        return response.json()

    def _profile_arg(self) -> str:
        if isinstance(self.profile, Mapping):
            path = Path(self._tmp.name) / "profile.json"
            path.write_text(json.dumps(dict(self.profile)))
            return str(path)
        return os.fspath(self.profile)

    def _discard(self) -> None:
        """Stop a process that lost its port to another, keeping the temporary folder for the next try."""
        assert self._process is not None and self._admin is not None
        self._admin.close()
        self._process.kill()
        self._process.wait(timeout=10)

    def _wait_ready(self) -> bool:
        """True once this process answers; False when another process answers on its port."""
        deadline = time.monotonic() + self.start_timeout_s
        assert self._process is not None and self._admin is not None
        while time.monotonic() < deadline:
            code = self._process.poll()
            if code is not None and "address already in use" in self.logs().lower():
                return False  # another process took the port first
            if code is not None:
                output = self.logs()
                self.stop()
                raise RuntimeError(f"the emulator exited with status {code}:\n{output}")
            try:
                answer = self._admin.get("/health", timeout=1)
                if answer.status_code == 200:
                    return bool(answer.json().get("pid") == self._process.pid)
            except httpx.TransportError:
                time.sleep(0.05)
        output = self.logs()
        self.stop()
        raise RuntimeError(f"the emulator did not answer within {self.start_timeout_s} s:\n{output}")
