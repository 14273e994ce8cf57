"""Outage windows: one route answers an error status, without handling its requests, for a while."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
from extend_ai import Extend
from extend_ai.core.api_error import ApiError
from extend_ai.errors import TooManyRequestsError

from extendq.emulator.outages import Outages
from extendq.emulator.wire import iso
from tests.emulator.conftest import NO_RETRY, InProcess
from tests.support.emulator import EmulatorProcess

Make = Callable[..., AbstractAsyncContextManager[InProcess]]
WORKFLOW: Any = {"id": "workflow_processed"}
BATCH = "POST /workflow_runs/batch"
INPUTS: Any = [{"file": {"text": "a"}}, {"file": {"text": "b"}}]


def _forced(scenario: str) -> Any:
    return {"max_retries": 0, "additional_headers": {"x-emulator-scenario": scenario}}


@pytest.mark.anyio
async def test_a_profile_outage_refuses_its_route_until_the_window_ends(in_process: Make) -> None:
    profile = {"base": "fast", "faults": {"outages": [{"route": BATCH, "status": 503, "for_s": 150}]}}
    async with in_process(profile) as emu:
        runs = emu.client.workflow_runs
        started = emu.clock.now
        # Given the batch route is down for 150 s from when the profile was set
        assert (await emu.http.get("/_emulator/outages")).json() == [
            {"route": BATCH, "status": 503, "until": started + 150, "untilIso": iso(started + 150)}
        ]
        # When batches are sent during the window, they are refused and create nothing
        for advance in (0, 149.9):
            emu.clock.advance(advance)
            with pytest.raises(ApiError) as raised:
                await runs.create_batch(workflow=WORKFLOW, inputs=INPUTS, request_options=NO_RETRY)
            assert raised.value.status_code == 503 and raised.value.body["code"] == "SERVICE_UNAVAILABLE"
        assert await emu.admin_runs() == []
        # While other routes work
        single = await runs.create(workflow=WORKFLOW, file={"text": "x"})
        # Then once the window is over, batches go through again
        emu.clock.advance(0.1)
        assert (await runs.create_batch(workflow=WORKFLOW, inputs=INPUTS)).batch_id.startswith("batch_")
        assert len(await emu.admin_runs()) == 3 and single.id
        assert (await emu.http.get("/_emulator/outages")).json() == []
        # And the stats and the log count the refused requests as outage answers
        stats = await emu.stats()
        assert stats["requests"][BATCH] == {"503": 2, "200": 1} and stats["faults"] == {"outage": 2}
        assert [(e["route"], e["status"], e["faults"]) for e in await emu.requests()] == [
            ("/workflow_runs/batch", 503, ["outage"]),
            ("/workflow_runs/batch", 503, ["outage"]),
            ("/workflow_runs", 200, []),
            ("/workflow_runs/batch", 200, []),
        ]


@pytest.mark.anyio
async def test_the_admin_api_starts_and_ends_an_outage(in_process: Make) -> None:
    async with in_process() as emu:
        run = await emu.client.workflow_runs.create(workflow=WORKFLOW, file={"text": "x"})
        body = {"route": "GET /workflow_runs/{id}", "status": 502, "for_s": 60}
        window = (await emu.http.post("/_emulator/outage", json=body)).json()
        assert (window["route"], window["status"], window["until"]) == (body["route"], 502, emu.clock.now + 60)
        with pytest.raises(ApiError) as raised:
            await emu.client.workflow_runs.retrieve(run.id, request_options=NO_RETRY)
        assert raised.value.status_code == 502
        # for_s 0 ends it at once
        await emu.http.post("/_emulator/outage", json={**body, "for_s": 0})
        assert (await emu.client.workflow_runs.retrieve(run.id)).id == run.id


@pytest.mark.anyio
async def test_an_outage_wins_over_the_scenario_header(in_process: Make) -> None:
    async with in_process() as emu:
        await emu.http.post("/_emulator/outage", json={"route": "POST /workflow_runs", "for_s": 10})
        for scenario in ("lose", "late=3", "slow=5", "500"):
            with pytest.raises(ApiError) as raised:
                await emu.client.workflow_runs.create(
                    workflow=WORKFLOW, file={"text": "x"}, request_options=_forced(scenario)
                )
            assert raised.value.status_code == 503
        assert (await emu.admin_runs(), emu.sleep.waits) == ([], [])


@pytest.mark.anyio
async def test_a_scenario_outage_starts_a_window_for_its_route(in_process: Make) -> None:
    async with in_process() as emu:
        runs = emu.client.workflow_runs
        # When one request asks for a 30 s outage answering 429
        with pytest.raises(TooManyRequestsError) as raised:
            await runs.list(request_options=_forced("outage=30,429"))
        assert (raised.value.headers or {})["retry-after"] == "1"
        # Then the route answers 429 to every request for 30 s, then serves again
        emu.clock.advance(29)
        with pytest.raises(TooManyRequestsError):
            await runs.list(request_options=NO_RETRY)
        emu.clock.advance(1)
        assert (await runs.list()).data == []
        assert [(e["status"], e["faults"]) for e in await emu.requests()] == [
            (429, ["outage"]),
            (429, ["outage"]),
            (200, []),
        ]


@pytest.mark.anyio
async def test_setting_the_profile_restarts_its_outages(in_process: Make) -> None:
    profile = {"base": "fast", "faults": {"outages": [{"route": BATCH, "for_s": 150}]}}
    async with in_process(profile) as emu:
        await emu.http.post("/_emulator/outage", json={"route": "GET /files", "for_s": 500})
        emu.clock.advance(100)
        await emu.http.put("/_emulator/profile", json=profile)
        # The profile's window starts again from now; the one added by hand is gone
        assert [(w["route"], w["until"]) for w in (await emu.http.get("/_emulator/outages")).json()] == [
            (BATCH, emu.clock.now + 150)
        ]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"route": "POST /batch_workflow_runs", "for_s": 10}, "route"),
        ({"route": BATCH, "status": 404, "for_s": 10}, "status"),
        ({"route": BATCH, "for_s": -1}, "for_s"),
        ({"route": BATCH}, "for_s"),
    ],
)
async def test_an_invalid_outage_is_a_bad_request(in_process: Make, body: dict[str, Any], message: str) -> None:
    async with in_process() as emu:
        answer = await emu.http.post("/_emulator/outage", json=body)
        assert answer.status_code == 400 and message in answer.json()["message"], answer.text
        assert (await emu.http.get("/_emulator/outages")).json() == []


def test_outages_keep_one_window_per_route() -> None:
    outages = Outages()
    outages.start("GET /files", 503, at=0, for_s=10)
    outages.start("GET /files", 502, at=5, for_s=10)
    assert [(w.status, w.until) for w in outages.active(at=12)] == [(502, 15)]
    assert outages.current("GET /files", at=15) is None and outages.active(at=15) == []


def test_a_served_outage_refuses_the_sdk_and_counts_each_refusal(client: Extend, emulator: EmulatorProcess) -> None:
    emulator.start_outage(BATCH, for_s=120)
    # When the SDK sends a batch with its own retries (two), every attempt is refused
    with pytest.raises(ApiError) as raised:
        client.workflow_runs.create_batch(workflow=WORKFLOW, inputs=INPUTS, request_options={"max_retries": 2})
    assert raised.value.status_code == 503
    stats = emulator.stats()
    assert (stats["requests"], stats["faults"], stats["runs_total"]) == ({BATCH: {"503": 3}}, {"outage": 3}, 0)
    # And ending it by hand lets the next batch through
    emulator.start_outage(BATCH, for_s=0)
    assert emulator.outages() == []
    assert client.workflow_runs.create_batch(workflow=WORKFLOW, inputs=INPUTS).batch_id.startswith("batch_")
