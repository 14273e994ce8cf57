"""Late commits: a create is accepted and its runs committed seconds later, while the client gets a 504."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from extend_ai import Extend
from extend_ai.core.api_error import ApiError
from extend_ai.errors import NotFoundError

from extendq.emulator.wire import iso
from tests.emulator.conftest import NO_RETRY, SECRET, InProcess, WebhookReceiver
from tests.support.emulator import EmulatorProcess

Make = Callable[..., AbstractAsyncContextManager[InProcess]]
WORKFLOW: Any = {"id": "workflow_processed"}


def _moment(unix: float) -> datetime:
    """A unix time as the SDK parses the API's timestamps (millisecond precision)."""
    return datetime.fromtimestamp(round(unix, 3), tz=UTC)


def _forced(scenario: str) -> Any:
    return {"max_retries": 0, "additional_headers": {"x-emulator-scenario": scenario}}


@pytest.mark.anyio
async def test_a_late_commit_answers_504_and_shows_the_run_only_once_committed(in_process: Make) -> None:
    async with in_process() as emu:
        client = emu.client
        asked_at = emu.clock.now
        # When a create commits 3 s late
        with pytest.raises(ApiError) as raised:
            await client.workflow_runs.create(
                workflow=WORKFLOW, file={"text": "x"}, metadata={"job": "j-1"}, request_options=_forced("late=3")
            )
        # Then the client gets a retryable 504 and no run id
        assert raised.value.status_code == 504
        assert (raised.value.body["code"], raised.value.body["retryable"]) == ("GATEWAY_TIMEOUT", True)
        # And the run exists, created at the request's time and committed 3 s later
        (held,) = await emu.admin_runs()
        assert (held["metadata"], held["createdAt"], held["committedAt"]) == (
            {"job": "j-1"},
            iso(asked_at),
            iso(asked_at + 3),
        )
        # But neither a read by id nor a listing shows it before its commit
        emu.clock.advance(2.9)
        with pytest.raises(NotFoundError):
            await client.workflow_runs.retrieve(held["id"], request_options=NO_RETRY)
        assert (await client.workflow_runs.list()).data == []
        # After the commit both show it, with createdAt still the request's time
        emu.clock.advance(0.1)
        assert (await client.workflow_runs.retrieve(held["id"])).status == "PENDING"
        (listed,) = (await client.workflow_runs.list(sort_by="createdAt", sort_dir="asc")).data
        assert (listed.id, listed.created_at) == (held["id"], _moment(asked_at))


@pytest.mark.anyio
async def test_a_late_run_starts_after_its_commit_and_runs_its_course(in_process: Make) -> None:
    async with in_process() as emu:
        asked_at = emu.clock.now
        with pytest.raises(ApiError):
            await emu.client.workflow_runs.create(
                workflow=WORKFLOW, file={"text": "x"}, request_options=_forced("late=5")
            )
        (held,) = await emu.admin_runs()
        emu.clock.advance(6)
        run = await emu.client.workflow_runs.retrieve(held["id"])
        assert (run.status, run.initial_run_at) == ("PROCESSED", _moment(asked_at))
        assert run.start_time is not None and run.start_time >= _moment(asked_at + 5)


@pytest.mark.anyio
async def test_a_listing_by_created_at_places_a_late_run_at_its_request_time(in_process: Make) -> None:
    async with in_process() as emu:
        runs = emu.client.workflow_runs
        # Given a run created before, one committed 10 s late, and one created while it is held back
        first = await runs.create(workflow=WORKFLOW, file={"text": "a"})
        emu.clock.advance(1)
        with pytest.raises(ApiError):
            await runs.create(workflow=WORKFLOW, file={"text": "b"}, request_options=_forced("late=10"))
        emu.clock.advance(1)
        last = await runs.create(workflow=WORKFLOW, file={"text": "c"})
        assert [r.id for r in (await runs.list(sort_by="createdAt")).data] == [last.id, first.id]
        # When it commits, a listing by createdAt shows it between the two
        emu.clock.advance(9)
        (late,) = [r["id"] for r in await emu.admin_runs() if r["id"] not in (first.id, last.id)]
        listed = await runs.list(sort_by="createdAt", sort_dir="asc")
        assert [r.id for r in listed.data] == [first.id, late, last.id]


@pytest.mark.anyio
async def test_a_profile_commits_creates_late_at_its_rate(in_process: Make) -> None:
    profile = {"base": "fast", "faults": {"late_commit_rate": 1.0, "late_commit_s": 2}}
    async with in_process(profile) as emu:
        # When every create commits 2 s late
        for _ in range(2):
            with pytest.raises(ApiError) as raised:
                await emu.client.workflow_runs.create(workflow=WORKFLOW, file={"text": "x"}, request_options=NO_RETRY)
            assert raised.value.status_code == 504
        # Then reads are untouched, and the stats count the late commits and the runs held back
        assert (await emu.client.workflow_runs.list()).data == []
        stats = await emu.stats()
        assert stats["requests"] == {"POST /workflow_runs": {"504": 2}, "GET /workflow_runs": {"200": 1}}
        assert (stats["faults"], stats["runs_total"], stats["runs_uncommitted"]) == ({"late": 2}, 2, 2)
        assert [entry["faults"] for entry in await emu.requests()] == [["late"], ["late"], []]
        emu.clock.advance(2)
        assert len((await emu.client.workflow_runs.list()).data) == 2
        assert (await emu.stats())["runs_uncommitted"] == 0


@pytest.mark.anyio
async def test_a_late_batch_holds_back_all_its_runs(in_process: Make) -> None:
    async with in_process() as emu:
        runs = emu.client.workflow_runs
        asked_at = emu.clock.now
        inputs: Any = [{"file": {"text": str(i)}} for i in range(3)]
        with pytest.raises(ApiError) as raised:
            await runs.create_batch(workflow=WORKFLOW, inputs=inputs, request_options=_forced("late=4"))
        assert raised.value.status_code == 504
        held = await emu.admin_runs()
        (batch_id,) = {run["batchId"] for run in held}
        assert len(held) == 3 and (await runs.list(batch_id=batch_id)).data == []
        emu.clock.advance(4)
        listed = (await runs.list(batch_id=batch_id, sort_by="createdAt")).data
        assert len(listed) == 3 and {run.created_at for run in listed} == {_moment(asked_at)}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("scenario", "message"),
    [("late=3,503", "cannot be combined"), ("late=3,drop", "cannot be combined"), ("late=-1", "within")],
)
async def test_late_with_a_refusal_or_a_bad_number_is_a_bad_request(
    in_process: Make, scenario: str, message: str
) -> None:
    async with in_process() as emu:
        body = {"workflow": WORKFLOW, "file": {"text": "x"}}
        answer = await emu.http.post("/workflow_runs", json=body, headers={"x-emulator-scenario": scenario})
        assert (answer.status_code, message in answer.json()["message"]) == (400, True), answer.text
        assert await emu.admin_runs() == []


@pytest.mark.anyio
async def test_late_applies_to_creates_only(in_process: Make) -> None:
    async with in_process() as emu:
        answer = await emu.http.get("/workflow_runs", headers={"x-emulator-scenario": "late=3"})
        assert answer.status_code == 400 and "POST /workflow_runs" in answer.json()["message"]


def test_a_late_run_sends_its_webhook_after_its_commit(
    client: Extend, emulator: EmulatorProcess, receiver: WebhookReceiver
) -> None:
    # When a create commits 1 s late on the served emulator
    with pytest.raises(ApiError) as raised:
        client.workflow_runs.create(workflow=WORKFLOW, file={"text": "x"}, request_options=_forced("late=1"))
    assert raised.value.status_code == 504
    (held,) = emulator.runs()
    # Then its one webhook is the completed run, sent after the commit
    (delivery,) = receiver.wait_for(1, timeout_s=20)
    event: Any = client.webhooks.verify_and_parse(delivery.body, delivery.headers, SECRET)
    assert (event.event_type, event.payload.id) == ("workflow_run.completed", held["id"])
    assert iso(delivery.at) >= held["committedAt"], (delivery.at, held)
    assert client.workflow_runs.retrieve(held["id"]).status == "PROCESSED"
    assert emulator.stats()["requests"]["POST /workflow_runs"] == {"504": 1}


def test_a_late_commit_whose_answer_is_lost_drops_the_connection(client: Extend, emulator: EmulatorProcess) -> None:
    with pytest.raises(httpx.TransportError):
        client.workflow_runs.create(workflow=WORKFLOW, file={"text": "x"}, request_options=_forced("late=2,lose"))
    (held,) = emulator.runs()
    assert held["committedAt"] > held["createdAt"]
    stats = emulator.stats()
    assert (stats["requests"]["POST /workflow_runs"], stats["faults"], stats["lost"]) == ({"lost": 1}, {"late": 1}, 1)
