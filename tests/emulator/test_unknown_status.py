"""Runs that end with a status the SDK does not know (e.g. ARCHIVED): PENDING -> PROCESSING -> it."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
from extend_ai import Extend
from extend_ai.errors import BadRequestError

from extendq.emulator.profiles import load_profile
from extendq.emulator.statuses import check_unknown_status
from extendq.emulator.store import RunStore
from tests.emulator.conftest import FAST_POLL, NO_RETRY, FakeClock, InProcess, WebhookReceiver
from tests.support.emulator import EmulatorProcess

Make = Callable[..., AbstractAsyncContextManager[InProcess]]
WORKFLOW: Any = {"id": "workflow_processed"}


def _forced(scenario: str) -> Any:
    return {"max_retries": 0, "additional_headers": {"x-emulator-scenario": scenario}}


@pytest.mark.anyio
async def test_a_forced_status_ends_the_run_after_pending_and_processing(in_process: Make) -> None:
    async with in_process() as emu:
        runs = emu.client.workflow_runs
        # When a create asks for its run to end ARCHIVED
        created = await runs.create(workflow=WORKFLOW, file={"text": "x"}, request_options=_forced("status=ARCHIVED"))
        # Then the run goes PENDING, PROCESSING, then ARCHIVED, which the SDK keeps as an unknown value
        seen = [created.status.value]
        for _ in range(40):
            emu.clock.advance(0.01)
            status = (await runs.retrieve(created.id)).status.value
            if status != seen[-1]:
                seen.append(status)
        assert seen == ["PENDING", "PROCESSING", "ARCHIVED"]
        # And it ended like a finished run, with nothing failed about it
        run = await runs.retrieve(created.id)
        assert run.end_time is not None and run.usage is not None and run.failure_reason is None
        # And listings show it and accept the status as a filter
        (listed,) = (await runs.list(status="ARCHIVED")).data  # type: ignore[arg-type]
        assert (listed.id, listed.status.value) == (created.id, "ARCHIVED")
        assert (await emu.stats())["runs_by_status"] == {"ARCHIVED": 1}


@pytest.mark.anyio
async def test_a_finished_unknown_status_cannot_be_cancelled(in_process: Make) -> None:
    async with in_process() as emu:
        created = await emu.client.workflow_runs.create(
            workflow=WORKFLOW, file={"text": "x"}, request_options=_forced("status=archived")
        )
        emu.clock.advance(1)
        with pytest.raises(BadRequestError) as raised:
            await emu.client.workflow_runs.cancel(created.id, request_options=NO_RETRY)
        assert "ARCHIVED" in raised.value.body["message"]


@pytest.mark.anyio
async def test_a_profile_gives_the_status_to_the_workflows_it_names(in_process: Make) -> None:
    unknown = {"rate": 1.0, "status": "SUPERSEDED", "workflows": ["workflow_failed"]}
    async with in_process({"base": "fast", "faults": {"unknown_status": unknown}}) as emu:
        runs = emu.client.workflow_runs
        # A listing may filter on the profile's status before any run has it
        assert (await runs.list(status="SUPERSEDED")).data == []  # type: ignore[arg-type]
        for workflow in ("workflow_failed", "workflow_processed", "workflow_failed"):
            await runs.create(workflow={"id": workflow}, file={"text": "x"})
        inputs: Any = [{"file": {"text": "b"}}, {"file": {"text": "c"}}]
        await runs.create_batch(workflow={"id": "workflow_failed"}, inputs=inputs)
        emu.clock.advance(1)
        assert (await emu.stats())["runs_by_status"] == {"SUPERSEDED": 4, "PROCESSED": 1}
        assert len((await runs.list(status="SUPERSEDED")).data) == 4  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_the_profile_rate_gives_the_status_to_that_share_of_runs(in_process: Make) -> None:
    profile = {"base": "fast", "seed": 4, "faults": {"unknown_status": {"rate": 0.3}}}
    async with in_process(profile) as emu:
        for _ in range(300):
            await emu.client.workflow_runs.create(workflow=WORKFLOW, file={"text": "x"})
        emu.clock.advance(1)
        by_status = (await emu.stats())["runs_by_status"]
        assert set(by_status) == {"ARCHIVED", "PROCESSED"} and 60 <= by_status["ARCHIVED"] <= 120, by_status


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("method", "path", "scenario", "message"),
    [
        ("POST", "/workflow_runs", "status=FAILED", "documented status"),
        ("POST", "/workflow_runs", "status=not-a-status", "UPPER_SNAKE"),
        ("POST", "/workflow_runs", "status=ARCHIVED,503", "cannot be combined"),
        ("GET", "/workflow_runs", "status=ARCHIVED", "apply only to"),
    ],
)
async def test_bad_status_scenarios_are_bad_requests(
    in_process: Make, method: str, path: str, scenario: str, message: str
) -> None:
    async with in_process() as emu:
        body = {"workflow": WORKFLOW, "file": {"text": "x"}} if method == "POST" else None
        answer = await emu.http.request(method, path, json=body, headers={"x-emulator-scenario": scenario})
        assert answer.status_code == 400 and message in answer.json()["message"], answer.text
        assert await emu.admin_runs() == []


@pytest.mark.anyio
async def test_an_unknown_status_filter_stays_a_bad_request(in_process: Make) -> None:
    async with in_process() as emu:
        with pytest.raises(BadRequestError):
            await emu.client.workflow_runs.list(status="ARCHIVED", request_options=NO_RETRY)  # type: ignore[arg-type]


def test_the_status_replaces_the_outcome_without_changing_the_draws(clock: FakeClock) -> None:
    spec = load_profile("fast").workflows["workflow_mixed"]
    plain, marked = RunStore(clock=clock, rng=random.Random(9)), RunStore(clock=clock, rng=random.Random(9))
    first = [plain.create("m", spec, [], {}) for _ in range(20)]
    second = [marked.create("m", spec, [], {}, status="ARCHIVED" if i % 2 else None) for i in range(20)]
    assert [(r.start_at, r.end_at) for r in first] == [(r.start_at, r.end_at) for r in second]
    assert [r.outcome for r in second] == [("ARCHIVED" if i % 2 else r.outcome) for i, r in enumerate(first)]
    assert Counter(r.failure_reason is None for r in second[1::2]) == Counter({True: 10})


@pytest.mark.parametrize("status", ["ARCHIVED", "ON_HOLD", "V2_DONE"])
def test_unknown_statuses_are_upper_snake_and_undocumented(status: str) -> None:
    assert check_unknown_status(status) == status
    for bad in ("archived", "PROCESSED", "", "ARCHIVED!"):
        with pytest.raises(ValueError):
            check_unknown_status(bad)


def test_create_and_poll_stops_on_an_unknown_status_and_no_webhook_is_sent(
    client: Extend, emulator: EmulatorProcess, receiver: WebhookReceiver
) -> None:
    # Given every run of workflow_failed ends ARCHIVED
    unknown = {"rate": 1.0, "status": "ARCHIVED", "workflows": ["workflow_failed"]}
    emulator.set_profile({"base": "fast", "faults": {"unknown_status": unknown}})
    # When the SDK creates one and polls it to its end
    archived = client.workflow_runs.create_and_poll(
        workflow={"id": "workflow_failed"}, file={"text": "x"}, polling_options=FAST_POLL
    )
    # Then polling ends on the unknown status
    assert archived.status.value == "ARCHIVED" and archived.end_time is not None
    # And only a run that ends afterwards with a known status sends a webhook (ARCHIVED has no event)
    control = client.workflow_runs.create(workflow=WORKFLOW, file={"text": "x"})
    events = [json.loads(delivery.body) for delivery in receiver.wait_for(1, timeout_s=20)]
    assert [(e["payload"]["id"], e["eventType"]) for e in events] == [(control.id, "workflow_run.completed")]
