"""Slow answers: the request is handled at once and its answer goes out seconds later (past a client's
timeout), unlike `delay=`, which waits before handling."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from extend_ai import Extend

from tests.emulator.conftest import NO_RETRY, InProcess
from tests.support.emulator import EmulatorProcess

Make = Callable[..., AbstractAsyncContextManager[InProcess]]
WORKFLOW: Any = {"id": "workflow_processed"}


def _forced(scenario: str, **options: Any) -> Any:
    return {"max_retries": 0, "additional_headers": {"x-emulator-scenario": scenario}, **options}


def _moment(unix: float) -> datetime:
    return datetime.fromtimestamp(round(unix, 3), tz=UTC)


@pytest.mark.anyio
async def test_slow_handles_the_request_before_waiting_and_delay_after(in_process: Make) -> None:
    async with in_process() as emu:
        runs = emu.client.workflow_runs
        asked_at = emu.clock.now
        # When one create is slow by 40 s and another delayed by 40 s
        slow = await runs.create(workflow=WORKFLOW, file={"text": "x"}, request_options=_forced("slow=40"))
        delayed = await runs.create(workflow=WORKFLOW, file={"text": "x"}, request_options=_forced("delay=40"))
        # Then each waited 40 s, but the slow one was created before its wait, the delayed one after it
        assert emu.sleep.waits == [40, 40]
        assert (slow.initial_run_at, delayed.initial_run_at) == (_moment(asked_at), _moment(asked_at + 80))
        # And only the slow answer is marked as such
        log = await emu.requests()
        assert [(e["status"], e["faults"]) for e in log] == [(200, ["slow"]), (200, [])]
        assert (await emu.stats())["faults"] == {"slow": 1}


@pytest.mark.anyio
async def test_slow_routes_slow_only_the_routes_named(in_process: Make) -> None:
    profile = {"base": "fast", "faults": {"slow_routes": {"GET /workflow_runs/{id}": 40}}}
    async with in_process(profile) as emu:
        runs = emu.client.workflow_runs
        run = await runs.create(workflow=WORKFLOW, file={"text": "x"})
        await runs.list()
        assert (await runs.retrieve(run.id)).id == run.id
        assert emu.sleep.waits == [40]
        log = await emu.requests()
        assert [(e["route"], e["faults"]) for e in log] == [
            ("/workflow_runs", []),
            ("/workflow_runs", []),
            ("/workflow_runs/{id}", ["slow"]),
        ]


@pytest.mark.anyio
async def test_slow_rate_slows_that_share_of_the_requests(in_process: Make) -> None:
    profile = {"base": "fast", "seed": 5, "faults": {"slow_routes": {"GET /workflow_runs": 30}, "slow_rate": 0.25}}
    async with in_process(profile) as emu:
        for _ in range(400):
            await emu.client.workflow_runs.list()
        marks = Counter(tuple(e["faults"]) for e in await emu.requests())
        assert 60 <= marks[("slow",)] <= 140 and marks[("slow",)] + marks[()] == 400, marks
        assert emu.sleep.waits == [30] * marks[("slow",)]


@pytest.mark.anyio
async def test_slow_answers_keep_errors_and_never_slow_refused_requests(in_process: Make) -> None:
    profile = {"base": "fast", "faults": {"slow_routes": {"GET /workflow_runs/{id}": 40}}}
    async with in_process(profile) as emu:
        # A slow 404 is still a 404; a forced 503 is refused before handling and not slowed
        missing = await emu.http.get("/workflow_runs/workflow_run_nope")
        refused = await emu.http.get("/workflow_runs/workflow_run_nope", headers={"x-emulator-scenario": "503"})
        assert (missing.status_code, refused.status_code) == (404, 503)
        assert emu.sleep.waits == [40]


@pytest.mark.anyio
@pytest.mark.parametrize("scenario", ["slow=601", "delay=601", "slow=5,503", "slow=5,drop", "slow=5,outage=10"])
async def test_waits_past_600_s_or_slow_with_a_refusal_are_bad_requests(in_process: Make, scenario: str) -> None:
    async with in_process() as emu:
        answer = await emu.http.get("/workflow_runs", headers={"x-emulator-scenario": scenario})
        assert answer.status_code == 400, answer.text
        assert emu.sleep.waits == []


def test_a_client_timing_out_on_a_slow_create_still_created_the_run(client: Extend, emulator: EmulatorProcess) -> None:
    # When a create is answered 5 s late and the client gives up after 1 s
    with pytest.raises(httpx.TimeoutException):
        client.workflow_runs.create(
            workflow=WORKFLOW, file={"text": "x"}, request_options=_forced("slow=5", timeout_in_seconds=1)
        )
    # Then the run was created, while its answer had not gone out yet
    runs = _wait(emulator.runs, timeout_s=3)
    assert [run["workflow"]["id"] for run in runs] == ["workflow_processed"] and emulator.requests() == []
    # And the emulator answered (to nobody) once the 5 s were up
    log = _wait(emulator.requests, timeout_s=30)
    assert [(e["route"], e["status"], e["faults"]) for e in log] == [("/workflow_runs", 200, ["slow"])]
    assert client.workflow_runs.retrieve(runs[0]["id"], request_options=NO_RETRY).id == runs[0]["id"]


def _wait(read: Callable[[], list[dict[str, Any]]], timeout_s: float) -> list[dict[str, Any]]:
    """What `read` returns once it is not empty; fails with the time waited."""
    started = time.monotonic()
    while not (found := read()):
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"still nothing after {time.monotonic() - started:.1f} s")
        time.sleep(0.05)
    return found
