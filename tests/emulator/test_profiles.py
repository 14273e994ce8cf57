"""Profiles: built-ins, files (YAML/JSON, `base:`), validation errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emulator.profiles import BUILTIN, ProfileError, load_profile, parse_profile

DEFAULT_WORKFLOWS = {
    "workflow_invoice",
    "workflow_receipt",
    "workflow_mixed",
    "workflow_processed",
    "workflow_failed",
    "workflow_review",
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
