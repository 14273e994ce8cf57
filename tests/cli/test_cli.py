"""Tests for the `extendq` command line: parsing, help and bad input, with no worker (and mostly no Redis)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import redis
from typer.testing import CliRunner

from extendq.cli.main import EPILOG, Exit, app
from extendq.cli.views import redact

# Nothing listens on port 1: connections are refused at once.
DOWN = "redis://:hunter2@127.0.0.1:1/0"
DOWN_SHOWN = "redis://:***@127.0.0.1:1/0"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def env() -> dict[str, str]:
    """An environment whose Redis is down, so nothing can be queued by accident."""
    return {"EXTENDQ_REDIS_URL": DOWN, "EXTEND_API_KEY": "sk_test", "EXTENDQ_KEY_PREFIX": "extendq-cli-test:"}


@pytest.fixture
def doc(tmp_path: Path) -> Path:
    path = tmp_path / "invoice.txt"
    path.write_text("Invoice #: 1\nTotal: 10.00\n")
    return path


def one_line_error(result: object) -> str:
    """The single stderr line of a failed command (and proof there was no traceback)."""
    stderr = result.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in stderr and "Traceback" not in result.stdout  # type: ignore[attr-defined]
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("Error: ")
    return str(lines[0])


# ---- help ---------------------------------------------------------------------------------------------


def test_help_lists_every_command_and_the_exit_codes(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for command in ("demo", "submit", "status", "result", "cancel", "watch", "worker", "beat", "emulator"):
        assert command in result.stdout
    assert "Exit codes" in result.stdout and "3 Redis unreachable" in result.stdout


@pytest.mark.parametrize("command", ["demo", "submit", "status", "result", "cancel", "watch"])
def test_each_command_documents_the_exit_codes(runner: CliRunner, command: str) -> None:
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "Exit codes: 0 ok" in result.stdout


@pytest.mark.parametrize("command", ["submit", "status", "result", "cancel", "watch"])
def test_every_read_or_submit_command_has_json(runner: CliRunner, command: str) -> None:
    assert "--json" in runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"}).stdout


def test_the_epilog_names_every_exit_code() -> None:
    for code in Exit:
        assert f"{code.value} " in EPILOG


# ---- bad input: one line, exit 2 -------------------------------------------------------------------------


def test_submit_without_inputs_is_bad_input(runner: CliRunner, env: dict[str, str]) -> None:
    result = runner.invoke(app, ["submit", "--workflow", "wf_1"], env=env)
    assert result.exit_code == Exit.BAD_INPUT
    assert "nothing to submit" in one_line_error(result)


def test_submit_without_a_workflow_is_bad_input(runner: CliRunner, env: dict[str, str], doc: Path) -> None:
    result = runner.invoke(app, ["submit", str(doc)], env=env)
    assert result.exit_code == Exit.BAD_INPUT
    assert "--workflow is required" in one_line_error(result)


def test_an_unknown_path_is_bad_input(runner: CliRunner, env: dict[str, str], tmp_path: Path) -> None:
    result = runner.invoke(app, ["submit", str(tmp_path / "nope.pdf"), "-w", "wf_1"], env=env)
    assert result.exit_code == Exit.BAD_INPUT
    assert one_line_error(result) == f"Error: no such file or folder: {tmp_path / 'nope.pdf'}"


def test_malformed_metadata_is_bad_input(runner: CliRunner, env: dict[str, str], doc: Path) -> None:
    result = runner.invoke(app, ["submit", str(doc), "-w", "wf_1", "--metadata", "{'single': 'quotes'}"], env=env)
    assert result.exit_code == Exit.BAD_INPUT
    assert "--metadata is not valid JSON" in one_line_error(result)


def test_a_malformed_manifest_row_is_named_by_line(runner: CliRunner, env: dict[str, str], doc: Path) -> None:
    manifest = doc.parent / "batch.csv"
    manifest.write_text(f"path,workflow,metadata\n{doc.name},wf_1,{{}}\n{doc.name},wf_1,not-json\n")
    result = runner.invoke(app, ["submit", "--manifest", str(manifest)], env=env)
    assert result.exit_code == Exit.BAD_INPUT
    assert "batch.csv line 3: metadata is not valid JSON" in one_line_error(result)


def test_an_invalid_request_shows_the_validation_message(runner: CliRunner, env: dict[str, str], doc: Path) -> None:
    # Given metadata with a key the job request reserves for extendq itself
    result = runner.invoke(app, ["submit", str(doc), "-w", "wf_1", "-m", '{"extendq:job_id": "x"}'], env=env)
    # Then the request is refused before anything is queued, with InvalidJobRequest's message
    assert result.exit_code == Exit.BAD_INPUT
    line = one_line_error(result)
    assert "invalid job request" in line and "reserved" in line and str(doc) in line


def test_a_bad_setting_is_bad_input_naming_the_variable(runner: CliRunner, env: dict[str, str], doc: Path) -> None:
    result = runner.invoke(app, ["submit", str(doc), "-w", "wf_1"], env={**env, "EXTENDQ_POLL_BACKOFF": "0.5"})
    assert result.exit_code == Exit.BAD_INPUT
    assert "EXTENDQ_POLL_BACKOFF" in one_line_error(result)


def test_usage_errors_exit_2(runner: CliRunner, env: dict[str, str]) -> None:
    assert runner.invoke(app, ["result", "job", "--timeout", "-1"], env=env).exit_code == 2
    assert runner.invoke(app, ["status"], env=env).exit_code == 2
    assert runner.invoke(app, ["watch", "--count", "0"], env=env).exit_code == 2


# ---- Redis unreachable: one line naming the URL without its password, exit 3 --------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["status", "job-1"],
        ["result", "job-1", "--timeout", "0"],
        ["cancel", "job-1"],
        ["watch", "--timeout", "0"],
    ],
)
def test_redis_unreachable_is_exit_3_with_the_redacted_url(
    runner: CliRunner, env: dict[str, str], args: list[str]
) -> None:
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == Exit.REDIS_UNREACHABLE
    line = one_line_error(result)
    assert line == f"Error: Redis unreachable at {DOWN_SHOWN}"
    assert "hunter2" not in result.output


def test_submit_validates_before_it_needs_redis(runner: CliRunner, env: dict[str, str], doc: Path) -> None:
    # Given valid input and a Redis that is down
    result = runner.invoke(app, ["submit", str(doc), "-w", "wf_1", "--json"], env=env)
    # Then the problem reported is Redis, with exit 3 and nothing on stdout
    assert result.exit_code == Exit.REDIS_UNREACHABLE
    assert one_line_error(result) == f"Error: Redis unreachable at {DOWN_SHOWN}"
    assert result.stdout == ""


def test_settings_are_read_afresh_by_every_invocation(runner: CliRunner, env: dict[str, str]) -> None:
    # Given two invocations in one process with different environments
    first = runner.invoke(app, ["status", "job-1"], env={**env, "EXTENDQ_REDIS_URL": "redis://127.0.0.1:1/0"})
    second = runner.invoke(app, ["status", "job-1"], env={**env, "EXTENDQ_REDIS_URL": "redis://127.0.0.1:2/0"})
    # Then each one used its own
    assert "127.0.0.1:1/0" in first.stderr
    assert "127.0.0.1:2/0" in second.stderr


def test_the_broker_url_is_checked_too(runner: CliRunner, env: dict[str, str], redis_url: str) -> None:
    result = runner.invoke(
        app, ["status", "job-1"], env={**env, "EXTENDQ_REDIS_URL": redis_url, "EXTENDQ_BROKER_URL": DOWN}
    )
    assert result.exit_code == Exit.REDIS_UNREACHABLE
    assert DOWN_SHOWN in one_line_error(result)


# ---- with Redis but no worker ------------------------------------------------------------------------------


def test_status_and_result_of_an_unknown_job_are_exit_2(runner: CliRunner, env: dict[str, str], redis_url: str) -> None:
    run_env = {**env, "EXTENDQ_REDIS_URL": redis_url}
    for args in (["status", "no-such-job", "--json"], ["result", "no-such-job", "--timeout", "0", "--json"]):
        result = runner.invoke(app, args, env=run_env)
        assert result.exit_code == Exit.BAD_INPUT
        assert one_line_error(result) == "Error: unknown job no-such-job (or its record expired)"


def test_watch_ends_at_its_timeout(runner: CliRunner, env: dict[str, str], redis_url: str) -> None:
    run_env = {**env, "EXTENDQ_REDIS_URL": redis_url}
    assert runner.invoke(app, ["watch", "--json", "--timeout", "0.3"], env=run_env).exit_code == Exit.OK
    # With --count, not seeing that many jobs finish in time is a timeout
    assert (
        runner.invoke(app, ["watch", "--json", "--count", "1", "--timeout", "0.3"], env=run_env).exit_code
        == Exit.TIMED_OUT
    )


def test_usage_counts_finished_runs_without_waiting_for_the_roll_up(
    runner: CliRunner, env: dict[str, str], redis_url: str
) -> None:
    # Given one finished run noted for the roll-up, which beat has not made
    from extendq.worker.keys import Keys
    from extendq.worker.usage import UsageLedger

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    ledger = UsageLedger(client=client, keys=Keys(env["EXTENDQ_KEY_PREFIX"]))
    run = {"id": "workflow_run_1", "usage": {"credits": 2.5}, "metadata": {}}
    ledger.record(run, workflow_id="workflow_invoice", now=time.time())  # type: ignore[arg-type]
    run_env = {**env, "EXTENDQ_REDIS_URL": redis_url, "COLUMNS": "200"}
    try:
        # When usage is asked for, then it counts the run, in the singular
        shown = runner.invoke(app, ["usage"], env=run_env)
        assert shown.exit_code == Exit.OK, shown.output
        assert "1 finished run" in shown.stdout and "1 finished runs" not in shown.stdout
        assert "workflow_invoice 2.5" in shown.stdout
        body = json.loads(runner.invoke(app, ["usage", "--json"], env=run_env).stdout)
        assert (body["total"]["runs"], body["total"]["credits"], body["pending_runs"]) == (1, 2.5, 0)
        # And a second run makes it plural
        ledger.record({**run, "id": "workflow_run_2"}, workflow_id="workflow_invoice", now=time.time())  # type: ignore[arg-type]
        assert "2 finished runs" in runner.invoke(app, ["usage"], env=run_env).stdout
    finally:
        for key in client.scan_iter(match=f"{env['EXTENDQ_KEY_PREFIX']}*"):
            client.delete(key)
        client.close()


def test_an_unknown_emulator_profile_is_one_line_and_exit_2(runner: CliRunner) -> None:
    result = runner.invoke(app, ["emulator", "--profile", "nosuch", "--port", "1"])
    assert result.exit_code == Exit.BAD_INPUT
    assert one_line_error(result) == "Error: nosuch is neither a built-in profile (default, fast, payg) nor a file"


def test_version_prints_extendqs_version(runner: CliRunner) -> None:
    from extendq import __version__

    result = runner.invoke(app, ["--version"])
    assert (result.exit_code, result.stdout) == (Exit.OK, f"extendq {__version__}\n")


@pytest.mark.parametrize("command", ["emulator", "webhooks", "worker", "beat", "usage", "list", "retry", "recover"])
def test_every_other_command_documents_the_exit_codes_too(runner: CliRunner, command: str) -> None:
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "Exit codes: 0 ok" in " ".join(result.stdout.split())


def test_redact_hides_only_the_password() -> None:
    assert redact("redis://user:pw@host:6379/0") == "redis://user:***@host:6379/0"
    assert redact("redis://host:6379/0") == "redis://host:6379/0"


# ---- demo: the parts that fail before any child starts --------------------------------------------------


def test_demo_without_its_samples_is_bad_input(runner: CliRunner, env: dict[str, str], tmp_path: Path) -> None:
    result = runner.invoke(app, ["demo", "--samples", str(tmp_path)], env=env)
    assert result.exit_code == Exit.BAD_INPUT
    assert "cannot read the sample list" in one_line_error(result)


def test_demo_with_an_unknown_profile_is_bad_input(runner: CliRunner, env: dict[str, str]) -> None:
    result = runner.invoke(app, ["demo", "--profile", "no-such-profile"], env=env)
    assert result.exit_code == Exit.BAD_INPUT
    assert "--profile: no-such-profile is neither a built-in profile" in one_line_error(result)


def test_demo_without_any_redis_is_exit_3(
    runner: CliRunner, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given no Redis answers and none can be started
    from extendq.cli import demo
    from extendq.cli.redis_server import RedisUnavailable

    def unavailable(url: str) -> None:
        raise RedisUnavailable(f"No Redis answers at {redact(url)} and no redis-server was found: install one")

    monkeypatch.setattr(demo, "ensure_redis", unavailable)
    # When the demo starts, then it prints ensure_redis's one line and exits 3
    result = runner.invoke(app, ["demo"], env=env)
    assert result.exit_code == Exit.REDIS_UNREACHABLE
    assert (
        one_line_error(result) == f"Error: No Redis answers at {DOWN_SHOWN} and no redis-server was found: install one"
    )
