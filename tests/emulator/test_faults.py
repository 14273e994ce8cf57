"""Injected faults as the SDK sees them: typed 5xx/408/429 errors, added latency, dropped connections and
lost responses; and the injector's draws on their own."""

from __future__ import annotations

import random
import time
from collections import Counter
from typing import Any

import httpx
import pytest
from extend_ai import Extend
from extend_ai.core.api_error import ApiError
from extend_ai.errors import BadRequestError, InternalServerError, TooManyRequestsError

from extendq.emulator.faults import Fault, FaultInjector, ScenarioError, parse_scenario
from extendq.emulator.profiles import Faults
from tests.emulator.conftest import API_HEADERS, FAST_POLL, NO_RETRY, SECRET, WebhookReceiver
from tests.support.emulator import EmulatorProcess

SLOW: Any = {"name": "Slow", "duration_s": [5, 5], "outcomes": {"PROCESSED": 1}}


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


def test_an_injected_429_from_the_profile_carries_its_retry_after(client: Extend, emulator: EmulatorProcess) -> None:
    # Given a profile that answers every create with a 429 asking for 3 s
    emulator.set_profile(_faults(error_rate=1.0, error_statuses=[429], retry_after_s=3, routes=["POST /workflow_runs"]))
    # When the SDK creates a run without retries
    with pytest.raises(TooManyRequestsError) as raised:
        client.workflow_runs.create(workflow={"id": "workflow_processed"}, file={"text": "x"}, request_options=NO_RETRY)
    # Then it sees the contract's 429, and nothing was created
    assert (raised.value.headers or {})["retry-after"] == "3"
    body = raised.value.body
    assert (body["code"], body["retryable"]) == ("RATE_LIMIT_EXCEEDED", True) and body["requestId"].startswith("req_")
    stats = emulator.stats()
    assert stats["requests"] == {"POST /workflow_runs": {"429": 1}}
    assert (stats["rate_limited"], stats["runs_total"]) == (1, 0)
    assert [(e["status"], e["retryAfter"]) for e in emulator.requests()] == [(429, 3)]


def test_a_forced_429_uses_the_profile_retry_after(client: Extend, emulator: EmulatorProcess) -> None:
    emulator.set_profile(_faults(retry_after_s=2))
    with pytest.raises(TooManyRequestsError) as raised:
        client.workflow_runs.list(request_options=_forced("429"))
    assert (raised.value.headers or {})["retry-after"] == "2"


def test_a_storm_mixes_429s_and_errors_at_their_rates(emulator: EmulatorProcess) -> None:
    # Given 30 % errors and, separately, 10 % rate-limited answers
    emulator.set_profile(_faults(error_rate=0.3, rate_limited_rate=0.1, error_statuses=[500, 503]))
    # When 400 requests are made
    with httpx.Client(base_url=emulator.url, headers=API_HEADERS) as http:
        answers = Counter(http.get("/workflow_runs").status_code for _ in range(400))
    # Then about a tenth are 429s, about 30 % errors, and each 429 is logged with its Retry-After
    assert 25 <= answers[429] <= 60 and 90 <= answers[500] + answers[503] <= 150, answers
    assert answers[200] + answers[429] + answers[500] + answers[503] == 400
    limited = [e for e in emulator.requests() if e["status"] == 429]
    assert len(limited) == answers[429] and {e["retryAfter"] for e in limited} == {1}
    stats = emulator.stats()
    assert stats["requests"]["GET /workflow_runs"]["429"] == stats["rate_limited"] == answers[429]


def test_the_sdk_waits_out_an_injected_429_and_gets_through(client: Extend, emulator: EmulatorProcess) -> None:
    # Given one 429 in two (seed 2 draws: limited, then served)
    emulator.set_profile({**_faults(rate_limited_rate=0.5), "seed": 2})
    started = time.monotonic()
    assert client.workflow_runs.list().data == []
    assert [(e["status"], e["retryAfter"]) for e in emulator.requests()] == [(429, 1), (200, None)]
    assert time.monotonic() - started >= 1.0  # Retry-After honoured


def test_a_lost_create_creates_the_run_but_the_client_sees_a_transport_error(
    client: Extend, emulator: EmulatorProcess, receiver: WebhookReceiver
) -> None:
    # When a create's response is lost
    with pytest.raises(httpx.TransportError):
        client.workflow_runs.create(
            workflow={"id": "workflow_processed"},
            file={"text": "x"},
            metadata={"job": "j-1"},
            request_options=_forced("lose"),
        )
    # Then the run exists all the same, and runs to its end with its webhook
    (run,) = emulator.runs()
    assert run["metadata"] == {"job": "j-1"}
    assert client.workflow_runs.retrieve(run["id"]).status in ("PENDING", "PROCESSING", "PROCESSED")
    (delivery,) = receiver.wait_for(1)
    event: Any = client.webhooks.verify_and_parse(delivery.body, delivery.headers, SECRET)
    assert (event.event_type, event.payload.id) == ("workflow_run.completed", run["id"])
    # And the request log tells the lost answer apart from a dropped connection
    first = emulator.requests()[0]
    assert (first["route"], first["status"], first["lost"], first["retryAfter"]) == ("/workflow_runs", None, True, None)
    stats = emulator.stats()
    assert stats["requests"]["POST /workflow_runs"] == {"lost": 1}
    assert (stats["lost"], stats["dropped"], stats["runs_total"]) == (1, 0, 1)


def test_a_lost_cancel_still_cancels(client: Extend, emulator: EmulatorProcess) -> None:
    emulator.set_profile({"base": "fast", "workflows": {"workflow_slow": SLOW}})
    run = client.workflow_runs.create(workflow={"id": "workflow_slow"}, file={"text": "x"})
    with pytest.raises(httpx.TransportError):
        client.workflow_runs.cancel(run.id, request_options=_forced("lose"))
    assert client.workflow_runs.retrieve(run.id).status in ("CANCELLING", "CANCELLED")
    with pytest.raises(BadRequestError):  # so a retried cancel learns it already happened
        client.workflow_runs.cancel(run.id, request_options=NO_RETRY)


def test_lose_rate_loses_handled_answers_and_drops_stay_dropped(client: Extend, emulator: EmulatorProcess) -> None:
    # Given every create's answer is lost
    emulator.set_profile(_faults(lose_rate=1.0, routes=["POST /workflow_runs"]))
    for _ in range(2):
        with pytest.raises(httpx.TransportError):
            client.workflow_runs.create(workflow={"id": "workflow_review"}, file={"text": ""}, request_options=NO_RETRY)
    # And one other request is dropped before it is handled
    with pytest.raises(httpx.TransportError):
        client.workflow_runs.list(request_options=_forced("drop"))
    # Then both creates took effect, and the log and stats keep lost and dropped apart
    assert len(emulator.runs()) == 2
    assert [(e["status"], e["lost"]) for e in emulator.requests()] == [(None, True), (None, True), (None, False)]
    stats = emulator.stats()
    assert stats["requests"] == {"POST /workflow_runs": {"lost": 2}, "GET /workflow_runs": {"dropped": 1}}
    assert (stats["lost"], stats["dropped"]) == (2, 1)


def test_a_lost_answer_to_a_failing_request_is_lost_too(client: Extend, emulator: EmulatorProcess) -> None:
    with pytest.raises(httpx.TransportError):
        client.workflow_runs.retrieve("workflow_run_missing", request_options=_forced("delay=0.05,lose"))
    assert [(e["status"], e["lost"]) for e in emulator.requests()] == [(None, True)]


def test_the_sdk_polls_through_lost_answers_on_reads(client: Extend, emulator: EmulatorProcess) -> None:
    run = client.workflow_runs.create(workflow={"id": "workflow_processed"}, file={"text": "x"})
    emulator.set_profile(_faults(lose_rate=1.0, routes=["GET /workflow_runs/{id}"]))
    with pytest.raises(httpx.TransportError):
        client.workflow_runs.retrieve(run.id)
    emulator.set_profile({"base": "fast"})
    assert (
        client.workflow_runs.create_and_poll(
            workflow={"id": "workflow_processed"}, file={"text": "x"}, polling_options=FAST_POLL
        ).status
        == "PROCESSED"
    )


@pytest.mark.parametrize("scenario", ["lose,503", "drop,lose", "lose,429", "vanish"])
def test_contradictory_or_unknown_scenarios_are_bad_requests(client: Extend, scenario: str) -> None:
    with pytest.raises(BadRequestError) as raised:
        client.workflow_runs.list(request_options=_forced(scenario))
    assert "scenario" in raised.value.body["message"] or "lose" in raised.value.body["message"]


def test_scenario_tokens_parse() -> None:
    assert parse_scenario("LOSE, delay=0.5") == Fault(delay_s=0.5, lose=True)
    assert parse_scenario("429") == Fault(status=429)
    with pytest.raises(ScenarioError, match="cannot be combined"):
        parse_scenario("lose,500")


def test_new_scenario_tokens_parse() -> None:
    assert parse_scenario("slow=40") == Fault(slow_s=40)
    assert parse_scenario("late=3, lose, slow=1") == Fault(late_s=3, lose=True, slow_s=1)
    assert parse_scenario("Status=archived,delay=300") == Fault(run_status="ARCHIVED", delay_s=300)
    assert parse_scenario("outage=150") == Fault(outage_s=150)
    assert parse_scenario("outage=150,502") == Fault(outage_s=150, status=502)
    assert parse_scenario("late=0").tags == ("late",) and parse_scenario("slow=0") == Fault()


@pytest.mark.parametrize(
    ("scenario", "message"),
    [
        ("delay=601", "within 0..600"),
        ("slow=abc", "bad number"),
        ("late=3,429", "cannot be combined"),
        ("status=ARCHIVED,drop", "cannot be combined"),
        ("outage=10,lose", "cannot be combined"),
        ("outage=10,drop", "cannot be combined with drop"),
        ("status=PENDING", "documented status"),
        ("speed=3", "unknown scenario"),
    ],
)
def test_bad_new_scenario_tokens_are_refused(scenario: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        parse_scenario(scenario)


def test_late_commits_are_drawn_on_creates_only_and_slow_answers_on_their_routes() -> None:
    faults = Faults(late_commit_rate=1.0, late_commit_s=7, slow_routes={"GET /files": 9}, error_rate=0.5)
    injector = FaultInjector(faults, random.Random(0))
    drawn = [injector.draw(route) for route in ("POST /workflow_runs", "POST /workflow_runs/batch", "GET /files") * 50]
    creates = [f for i, f in enumerate(drawn) if i % 3 != 2 and f.handled]
    files = [f for i, f in enumerate(drawn) if i % 3 == 2]
    assert creates and {(f.late_s, f.slow_s) for f in creates} == {(7, 0)}
    assert {f.slow_s for f in files if f.handled} == {9} and {f.slow_s for f in files if not f.handled} == {0}
    assert all(f.late_s is None for f in files)


def _shares(faults: Faults, draws: int = 20_000) -> Counter[str]:
    injector = FaultInjector(faults, random.Random(0))
    counts: Counter[str] = Counter()
    for _ in range(draws):
        fault = injector.draw("GET /workflow_runs")
        kind = "drop" if fault.drop else "lose" if fault.lose else str(fault.status or "handled")
        counts[kind] += 1
    return counts


def test_429s_and_errors_are_drawn_at_exactly_their_rates() -> None:
    counts = _shares(Faults(error_rate=0.3, rate_limited_rate=0.1, error_statuses=(503,)))
    assert abs(counts["429"] / 20_000 - 0.1) < 0.01 and abs(counts["503"] / 20_000 - 0.3) < 0.015
    assert counts["handled"] + counts["429"] + counts["503"] == 20_000


def test_lost_answers_are_drawn_among_handled_requests() -> None:
    counts = _shares(Faults(error_rate=0.5, lose_rate=0.5, error_statuses=(500,)))
    assert abs(counts["500"] / 20_000 - 0.5) < 0.015
    assert abs(counts["lose"] / (counts["lose"] + counts["handled"]) - 0.5) < 0.02


def test_unused_faults_draw_nothing_so_seeded_runs_repeat() -> None:
    plain, extra = (
        FaultInjector(Faults(error_rate=0.5), random.Random(3)),
        FaultInjector(Faults(error_rate=0.5, rate_limited_rate=0.0, lose_rate=0.0, retry_after_s=9), random.Random(3)),
    )
    assert [plain.draw("GET /files") for _ in range(50)] == [extra.draw("GET /files") for _ in range(50)]
    assert not FaultInjector(Faults(retry_after_s=5), random.Random(0)).active
    assert FaultInjector(Faults(lose_rate=0.1), random.Random(0)).active
    assert FaultInjector(Faults(rate_limited_rate=0.1), random.Random(0)).active
