"""Plan limits held by the served emulator, measured from its own request log."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from extend_ai import Extend
from extend_ai.errors import TooManyRequestsError

from tests.emulator.conftest import API_HEADERS, NO_RETRY
from tests.support.emulator import EmulatorProcess

LIMIT = 10


def _limits(**limits: Any) -> dict[str, Any]:
    return {"base": "fast", "rate_limit": limits}


def _hammer(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=url, headers=API_HEADERS) as http:
        while time.monotonic() < deadline:
            http.get("/workflow_runs")


def _max_in_any_second(times: list[float]) -> int:
    times = sorted(times)
    return max(sum(1 for t in times if start <= t < start + 1.0) for start in times)


def test_requests_per_second_are_never_exceeded(emulator: EmulatorProcess) -> None:
    # Given a limit of 10 requests/s, when four clients hammer the API for two seconds
    emulator.set_profile(_limits(requests_per_second=LIMIT))
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: _hammer(emulator.url, 2.0), range(4)))
    log = emulator.requests()
    served = [e["at"] for e in log if e["status"] != 429]
    limited = [e for e in log if e["status"] == 429]
    # Then no sliding one-second window holds more than 10 served requests, and the rest were 429s
    assert _max_in_any_second(served) <= LIMIT
    assert len(served) >= 2 * LIMIT and len(limited) > len(served)
    assert all(isinstance(e["retryAfter"], int) and e["retryAfter"] >= 1 for e in limited)
    assert emulator.stats()["rate_limited"] == len(limited)


def test_waiting_out_retry_after_succeeds(client: Extend, emulator: EmulatorProcess) -> None:
    emulator.set_profile(_limits(requests_per_second=3))
    with pytest.raises(TooManyRequestsError) as raised:
        for _ in range(10):
            client.workflow_runs.list(request_options=NO_RETRY)
    retry_after = int((raised.value.headers or {})["retry-after"])
    assert raised.value.body["code"] == "RATE_LIMIT_EXCEEDED" and retry_after == 1
    time.sleep(retry_after)
    assert client.workflow_runs.list(request_options=NO_RETRY).data == []


def test_the_sdk_gets_through_by_honouring_retry_after(client: Extend, emulator: EmulatorProcess) -> None:
    emulator.set_profile(_limits(requests_per_second=LIMIT))
    for _ in range(2 * LIMIT + 5):
        client.workflow_runs.list()  # default SDK retries wait for Retry-After
    log = emulator.requests()
    assert sum(1 for e in log if e["status"] == 200) == 2 * LIMIT + 5
    assert any(e["status"] == 429 for e in log)
    assert _max_in_any_second([e["at"] for e in log if e["status"] == 200]) <= LIMIT


def test_runs_per_minute_limits_single_creates_but_not_batches(client: Extend, emulator: EmulatorProcess) -> None:
    emulator.set_profile(_limits(runs_per_minute=3))
    for _ in range(3):
        client.workflow_runs.create(workflow={"id": "workflow_processed"}, file={"text": "x"})
    with pytest.raises(TooManyRequestsError) as raised:
        client.workflow_runs.create(workflow={"id": "workflow_processed"}, file={"text": "x"}, request_options=NO_RETRY)
    assert 58 <= int((raised.value.headers or {})["retry-after"]) <= 60
    assert "runs per minute" in raised.value.body["message"]
    batch = client.workflow_runs.create_batch(
        workflow={"id": "workflow_processed"}, inputs=[{"file": {"text": "x"}}] * 5
    )
    assert len(client.workflow_runs.list(batch_id=batch.batch_id).data) == 5
    assert emulator.stats()["runs_total"] == 8


def test_the_payg_profile_holds_ten_requests_per_second(emulator: EmulatorProcess) -> None:
    emulator.set_profile({"base": "payg"})
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda _: _hammer(emulator.url, 1.2), range(2)))
    served = [e["at"] for e in emulator.requests() if e["status"] != 429]
    assert _max_in_any_second(served) <= 10
