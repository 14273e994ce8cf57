"""Injected faults as the SDK sees them: typed 5xx/408 errors, added latency, dropped connections."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from extend_ai import Extend
from extend_ai.core.api_error import ApiError
from extend_ai.errors import InternalServerError, TooManyRequestsError

from tests.support.emulator import EmulatorProcess


def _faults(**faults: Any) -> dict[str, Any]:
    return {"base": "fast", "seed": 3, "faults": faults}


def _forced(scenario: str) -> Any:
    return {"max_retries": 0, "additional_headers": {"x-emulator-scenario": scenario}}


def test_an_injected_500_is_an_internal_server_error(client: Extend, emulator: EmulatorProcess) -> None:
    emulator.set_profile(_faults(error_rate=1.0, error_statuses=[500]))
    with pytest.raises(InternalServerError) as raised:
        client.workflow_runs.list(request_options={"max_retries": 0})
    assert raised.value.body["retryable"] is True and raised.value.body["code"] == "INTERNAL_ERROR"


@pytest.mark.parametrize(
    ("status", "code"), [(502, "BAD_GATEWAY"), (503, "SERVICE_UNAVAILABLE"), (408, "REQUEST_TIMEOUT")]
)
def test_other_injected_statuses_are_api_errors(client: Extend, status: int, code: str) -> None:
    with pytest.raises(ApiError) as raised:
        client.workflow_runs.list(request_options=_forced(str(status)))
    assert raised.value.status_code == status
    assert raised.value.body["code"] == code and raised.value.body["retryable"] is True


def test_a_forced_429_carries_retry_after(client: Extend) -> None:
    with pytest.raises(TooManyRequestsError) as raised:
        client.workflow_runs.list(request_options=_forced("429"))
    assert (raised.value.headers or {})["retry-after"] == "1"


def test_the_sdk_retries_injected_errors_by_itself(client: Extend, emulator: EmulatorProcess) -> None:
    # Given one request in two fails (seed 3 draws: fail, then succeed)
    emulator.set_profile(_faults(error_rate=0.5, error_statuses=[503]))
    # When the SDK lists with its default retries, it gets through on the second attempt
    assert client.workflow_runs.list().data == []
    assert [entry["status"] for entry in emulator.requests()] == [503, 200]


def test_a_dropped_connection_is_a_transport_error(client: Extend, emulator: EmulatorProcess) -> None:
    emulator.set_profile(_faults(drop_rate=1.0))
    with pytest.raises(httpx.TransportError):
        client.workflow_runs.list(request_options={"max_retries": 0})
    assert emulator.stats()["requests"]["GET /workflow_runs"] == {"dropped": 1}
    assert emulator.requests()[0]["status"] is None


def test_a_forced_drop_on_one_request_only(client: Extend) -> None:
    with pytest.raises(httpx.TransportError):
        client.workflow_runs.retrieve("workflow_run_x", request_options=_forced("drop"))
    assert client.workflow_runs.list().data == []


def test_latency_is_added_to_each_request(client: Extend, emulator: EmulatorProcess) -> None:
    emulator.set_profile(_faults(latency_s=[0.2, 0.25]))
    started = time.monotonic()
    client.workflow_runs.list()
    assert time.monotonic() - started >= 0.2
    started = time.monotonic()
    client.workflow_runs.list(request_options=_forced("delay=0.4"))  # replaces the profile's draw
    assert time.monotonic() - started >= 0.4


def test_faults_can_target_some_routes_only(client: Extend, emulator: EmulatorProcess) -> None:
    emulator.set_profile(_faults(error_rate=1.0, error_statuses=[500], routes=["POST /workflow_runs"]))
    assert client.workflow_runs.list().data == []
    with pytest.raises(InternalServerError):
        client.workflow_runs.create(
            workflow={"id": "workflow_processed"}, file={"text": "x"}, request_options={"max_retries": 0}
        )
    assert emulator.stats()["runs_total"] == 0  # a faulted create creates nothing


def test_faults_never_touch_the_admin_api(emulator: EmulatorProcess) -> None:
    emulator.set_profile(_faults(error_rate=1.0, drop_rate=1.0))
    assert [emulator.stats()["requests_total"] for _ in range(3)] == [0, 0, 0]
