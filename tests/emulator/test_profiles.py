"""Profiles: built-ins, files (YAML/JSON, `base:`), validation errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from extendq.emulator.admin import ROUTES as ADMIN_ROUTES
from extendq.emulator.app import EXTEND_ROUTES
from extendq.emulator.profiles import (
    BUILTIN,
    CREATE_ROUTES,
    ROUTE_KEYS,
    Faults,
    ProfileError,
    load_profile,
    parse_profile,
)

DEFAULT_WORKFLOWS = {
    "workflow_invoice",
    "workflow_receipt",
    "workflow_mixed",
    "workflow_processed",
    "workflow_failed",
    "workflow_review",
    "workflow_rejected",
    "workflow_cancelled",
    "workflow_revoked",
    "workflow_invalid",
}


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_builtin_profiles_validate_and_round_trip(name: str) -> None:
    profile = load_profile(name)
    assert set(profile.workflows) == DEFAULT_WORKFLOWS
    assert parse_profile(profile.to_dict()) == profile


def test_default_profile_declares_the_documented_workflows() -> None:
    workflows = load_profile("default").workflows
    assert (workflows["workflow_invoice"].name, workflows["workflow_invoice"].duration_s) == (
        "Invoice Processing",
        (1, 4),
    )
    assert (workflows["workflow_receipt"].name, workflows["workflow_receipt"].duration_s) == (
        "Receipt Processing",
        (1, 3),
    )
    assert workflows["workflow_invoice"].outcomes == workflows["workflow_receipt"].outcomes == "content"
    assert workflows["workflow_mixed"].outcomes == {"PROCESSED": 0.7, "FAILED": 0.2, "NEEDS_REVIEW": 0.1}
    assert workflows["workflow_review"].outcomes == {"NEEDS_REVIEW": 1}


@pytest.mark.parametrize("name", ["default", "fast"])
def test_rejected_and_cancelled_workflows_run_like_workflow_processed(name: str) -> None:
    workflows = load_profile(name).workflows
    processed = workflows["workflow_processed"]
    for workflow_id, outcome in (("workflow_rejected", "REJECTED"), ("workflow_cancelled", "CANCELLED")):
        spec = workflows[workflow_id]
        assert spec.outcomes == {outcome: 1} and spec.create_error is None
        assert (spec.duration_s, spec.queue_s) == (processed.duration_s, processed.queue_s)
    assert (workflows["workflow_rejected"].reviewer, workflows["workflow_rejected"].rejection_note) == (
        "reviewer@example.com",
        "Rejected in review",
    )


@pytest.mark.parametrize("name", ["default", "fast"])
def test_revoked_and_invalid_workflows_refuse_every_create(name: str) -> None:
    workflows = load_profile(name).workflows
    revoked, invalid = workflows["workflow_revoked"].create_error, workflows["workflow_invalid"].create_error
    assert revoked is not None and invalid is not None
    assert (revoked.status, revoked.code, revoked.message) == (403, "FORBIDDEN", "This workflow has been revoked")
    assert (invalid.status, invalid.code, invalid.message) == (
        400,
        "INVALID_REQUEST",
        "Workflow configuration is invalid",
    )
    assert all(
        spec.create_error is None
        for wf, spec in workflows.items()
        if wf not in ("workflow_revoked", "workflow_invalid")
    )


def test_a_refusing_workflow_needs_no_timeline_or_outcomes() -> None:
    refusal = {"status": 402, "code": "USAGE_BLOCKED", "message": "Out of credits"}
    profile = parse_profile({"base": "fast", "workflows": {"w": {"name": "W", "create_error": refusal}}})
    spec = profile.workflows["w"]
    assert spec.create_error is not None and spec.create_error.status == 402
    assert parse_profile(profile.to_dict()) == profile


def test_the_fault_route_names_are_the_routes_the_app_serves() -> None:
    served = {f"{method} {route.path}" for route in EXTEND_ROUTES for method in route.methods or () if method != "HEAD"}
    assert served == set(ROUTE_KEYS) and set(CREATE_ROUTES) <= served


def test_new_fault_keys_default_to_off() -> None:
    faults = load_profile("default").faults
    assert (faults.late_commit_rate, faults.late_commit_s, faults.slow_routes, faults.slow_rate) == (0.0, 3.0, {}, 1.0)
    assert (faults.outages, faults.unknown_status) == ((), None)
    unknown = parse_profile({"base": "fast", "faults": {"unknown_status": {"rate": 0.1}}}).faults.unknown_status
    assert unknown is not None and (unknown.status, unknown.workflows) == ("ARCHIVED", None)


def test_fault_keys_default_to_no_429_and_no_lost_response() -> None:
    faults = load_profile("default").faults
    assert (faults.rate_limited_rate, faults.retry_after_s, faults.lose_rate) == (0.0, 1, 0.0)
    storm = parse_profile(
        {"base": "fast", "faults": {"error_rate": 0.3, "rate_limited_rate": 0.1, "error_statuses": [429, 503]}}
    ).faults
    assert (storm.error_statuses, storm.rate_limited_rate) == ((429, 503), 0.1)
    assert parse_profile({"base": "fast", "faults": {"error_rate": 0.7, "rate_limited_rate": 0.3}}).faults.error_rate


def test_fast_runs_take_under_a_second_and_payg_has_plan_limits() -> None:
    assert all(spec.duration_s[1] + spec.queue_s[1] < 1 for spec in load_profile("fast").workflows.values())
    limits = load_profile("payg").rate_limit
    assert limits is not None and (limits.requests_per_second, limits.runs_per_minute) == (10, 80)


def test_a_yaml_file_can_extend_a_builtin(tmp_path: Path) -> None:
    path = tmp_path / "slow.yaml"
    path.write_text(
        "base: payg\n"
        "seed: 7\n"
        "workflows:\n"
        "  workflow_slow:\n"
        "    name: Slow\n"
        "    duration_s: [30, 60]\n"
        "    outcomes: {PROCESSED: 1}\n"
        "faults: {error_rate: 0.1, latency_s: [0.01, 0.02]}\n"
    )
    profile = load_profile(str(path))
    assert profile.name == "slow" and profile.seed == 7
    assert "workflow_slow" in profile.workflows and "workflow_invoice" in profile.workflows
    assert profile.rate_limit is not None and profile.rate_limit.runs_per_minute == 80
    assert profile.faults.error_rate == 0.1


def test_a_json_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"workflows": {"w": {"name": "W", "duration_s": [0, 0], "outcomes": "content"}}}))
    assert list(load_profile(path).workflows) == ["w"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"workflows": {"w": {"name": "W", "duration_s": [2, 1], "outcomes": "content"}}}, "workflows.w.duration_s"),
        ({"workflows": {"w": {"name": "W", "duration_s": [1, 2], "outcomes": {"DONE": 1}}}}, "workflows.w.outcomes"),
        ({"workflows": {"w": {"name": "W", "duration_s": [1, 2], "outcomes": {"FAILED": 0}}}}, "positive sum"),
        ({"base": "fast", "faults": {"error_rate": 2}}, "faults.error_rate"),
        ({"base": "fast", "faults": {"error_statuses": [404]}}, "faults.error_statuses"),
        ({"base": "fast", "faults": {"routes": ["/workflow_runs"]}}, "faults.routes"),
        ({"base": "fast", "faults": {"rate_limited_rate": 1.5}}, "faults.rate_limited_rate"),
        ({"base": "fast", "faults": {"error_rate": 0.6, "rate_limited_rate": 0.5}}, "must not exceed 1"),
        ({"base": "fast", "faults": {"retry_after_s": 0}}, "faults.retry_after_s"),
        ({"base": "fast", "faults": {"retry_after_s": 1.5}}, "faults.retry_after_s"),
        ({"base": "fast", "faults": {"retry_after_s": "2"}}, "faults.retry_after_s"),
        ({"base": "fast", "faults": {"lose_rate": -0.1}}, "faults.lose_rate"),
        ({"base": "fast", "faults": {"routes": ["POST /batch_workflow_runs"]}}, "faults.routes"),
        ({"base": "fast", "faults": {"late_commit_rate": 1.1}}, "faults.late_commit_rate"),
        ({"base": "fast", "faults": {"late_commit_s": 601}}, "faults.late_commit_s"),
        ({"base": "fast", "faults": {"slow_routes": {"GET /nope": 5}}}, "faults.slow_routes"),
        ({"base": "fast", "faults": {"slow_routes": {"GET /files": 0}}}, "faults.slow_routes"),
        ({"base": "fast", "faults": {"slow_rate": -1}}, "faults.slow_rate"),
        ({"base": "fast", "faults": {"outages": [{"route": "POST /batch", "for_s": 1}]}}, "faults.outages.0.route"),
        ({"base": "fast", "faults": {"outages": [{"route": "GET /files", "status": 404, "for_s": 1}]}}, "0.status"),
        ({"base": "fast", "faults": {"outages": [{"route": "GET /files"}]}}, "faults.outages.0.for_s"),
        ({"base": "fast", "faults": {"unknown_status": {"rate": 0.1, "status": "FAILED"}}}, "unknown_status.status"),
        ({"base": "fast", "faults": {"unknown_status": {"rate": 0.1, "status": "done"}}}, "unknown_status.status"),
        ({"base": "fast", "faults": {"unknown_status": {"status": "ARCHIVED"}}}, "faults.unknown_status.rate"),
        (
            {"workflows": {"w": {"name": "W", "duration_s": [1, 2], "outcomes": {"ESCALATED": 1}}}},
            "workflows.w.outcomes",
        ),
        (
            {"workflows": {"w": {"name": "W", "create_error": {"status": 500, "code": "X", "message": "m"}}}},
            "workflows.w.create_error.status",
        ),
        (
            {"workflows": {"w": {"name": "W", "create_error": {"status": 403, "code": "", "message": "m"}}}},
            "workflows.w.create_error.code",
        ),
        ({"workflows": {"w": {"name": "W", "create_error": {"status": 403, "code": "X"}}}}, "create_error.message"),
        ({"base": "fast", "rate_limit": {"requests_per_second": 0}}, "rate_limit.requests_per_second"),
        ({"base": "fast", "surprise": 1}, "surprise"),
        ({"base": "nope"}, "unknown built-in"),
        ({}, "workflows"),
        ([], "mapping"),
    ],
)
def test_invalid_profiles_name_the_offending_key(data: object, message: str) -> None:
    with pytest.raises(ProfileError, match=message):
        parse_profile(data)


def test_every_fault_key_scenario_token_and_admin_route_is_documented() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "emulator.md").read_text()
    missing = [f"faults.{key}" for key in Faults.model_fields if f"`{key}`" not in doc]
    tokens = ("`delay=<s>`", "`slow=<s>`", "`late=<s>`", "`status=<STATUS>`", "`outage=<s>`")
    missing += [token for token in tokens if token not in doc]
    for route in ADMIN_ROUTES:
        for method in sorted(set(route.methods or ()) - {"HEAD"}):
            if f"{method} {route.path}" not in doc:
                missing.append(f"{method} {route.path}")
    assert missing == []


def test_unknown_profile_name_lists_the_builtins() -> None:
    with pytest.raises(ProfileError, match="default, fast, payg"):
        load_profile("no-such-profile")


def test_the_documented_example_profile_validates(tmp_path: Path) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "emulator.md").read_text()
    example = doc.split("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "contracts.yaml"
    path.write_text(example)
    profile = load_profile(path)
    assert profile.workflows["workflow_contracts"].version == "3" and "workflow_invoice" in profile.workflows
    assert profile.faults.drop_rate == 0.01 and profile.rate_limit is not None
    assert (profile.faults.rate_limited_rate, profile.faults.retry_after_s, profile.faults.lose_rate) == (0.02, 2, 0.01)
    faults = profile.faults
    assert (faults.late_commit_rate, faults.late_commit_s, faults.slow_rate) == (0.01, 3, 0.5)
    assert faults.slow_routes == {"POST /workflow_runs/{id}/cancel": 40}
    assert [(o.route, o.status, o.for_s) for o in faults.outages] == [("POST /workflow_runs/batch", 503, 150)]
    assert faults.unknown_status is not None
    assert (faults.unknown_status.status, faults.unknown_status.workflows) == ("ARCHIVED", ("workflow_contracts",))
    assert set(profile.workflows["workflow_contracts"].outcomes) == {
        "PROCESSED",
        "FAILED",
        "NEEDS_REVIEW",
        "REJECTED",
        "CANCELLED",
    }
    refusal = profile.workflows["workflow_out_of_credits"].create_error
    assert refusal is not None and (refusal.status, refusal.code) == (402, "USAGE_BLOCKED")
