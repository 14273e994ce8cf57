from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import redis

from extendq.worker.keys import Keys
from extendq.worker.usage import UsageLedger

# Yesterday at noon and today at 00:30 (UTC): within any retention, whenever the test runs.
TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
DAY_1 = (TODAY - timedelta(hours=12)).timestamp()
DAY_2 = (TODAY + timedelta(minutes=30)).timestamp()
NAME_1, NAME_2 = (TODAY - timedelta(days=1)).date().isoformat(), TODAY.date().isoformat()


def _ledger(client: redis.Redis) -> UsageLedger:
    return UsageLedger(client=client, keys=Keys("extendq:"), retention_days=30)


def _run(run_id: str, credits: float | None, tags: list[str] | None = None) -> dict[str, Any]:
    metadata = {"extend:usage_tags": tags} if tags is not None else {"other": 1}
    return {
        "id": run_id,
        "status": "PROCESSED",
        "usage": None if credits is None else {"credits": credits},
        "metadata": metadata,
    }


def test_roll_up_adds_each_run_once_by_day_workflow_and_tag(redis_client: redis.Redis) -> None:
    # Given runs noted on two days, one noted twice, one with two tags, one without usage
    ledger = _ledger(redis_client)
    ledger.record(_run("r1", 2.0, ["team-ap"]), workflow_id="wf_invoice", now=DAY_1)
    ledger.record(_run("r1", 2.0, ["team-ap"]), workflow_id="wf_invoice", now=DAY_1)
    ledger.record(_run("r2", 3.5, ["team-ap", "eu"]), workflow_id="wf_receipt", now=DAY_1)
    ledger.record(_run("r3", None), workflow_id="wf_invoice", now=DAY_1)
    ledger.record(_run("r4", 1.0), workflow_id="wf_invoice", now=DAY_2)
    assert ledger.report()["pending_runs"] == 4
    # When it is rolled up (twice: the second finds nothing)
    assert ledger.roll_up() == 4
    assert ledger.roll_up() == 0
    # Then each day holds its runs' credits, by workflow and by tag; a run with two tags counts for both
    report = ledger.report()
    first, second = report["days"]
    assert (first["day"], first["credits"], first["runs"]) == (NAME_1, 5.5, 3)
    assert first["by_workflow"] == {
        "wf_invoice": {"credits": 2.0, "runs": 2},
        "wf_receipt": {"credits": 3.5, "runs": 1},
    }
    assert first["by_tag"] == {"team-ap": {"credits": 5.5, "runs": 2}, "eu": {"credits": 3.5, "runs": 1}}
    assert (second["day"], second["credits"], second["by_tag"]) == (NAME_2, 1.0, {})
    assert report["total"]["credits"] == 6.5 and report["total"]["runs"] == 4
    assert report["total"]["by_workflow"]["wf_invoice"] == {"credits": 3.0, "runs": 3}
    assert report["pending_runs"] == 0
    assert ledger.report(days=1)["days"] == [second]


def test_day_totals_expire_after_the_retention(redis_client: redis.Redis) -> None:
    ledger = _ledger(redis_client)
    ledger.record(_run("r1", 1.0), workflow_id="wf", now=DAY_1)
    ledger.roll_up()
    left_s = redis_client.ttl(f"extendq:usage:day:{NAME_1}")  # kept 30 days from the start of its day
    assert abs(left_s - ((TODAY + timedelta(days=29)).timestamp() - time.time())) < 5


def test_usage_breaks_down_by_tenant_with_the_default_account_as_default(redis_client: redis.Redis) -> None:
    # Given runs of tenant acme, of tenant globex and of the default account, and a note from before tenants counted
    ledger = _ledger(redis_client)
    ledger.record(_run("t1", 2.0), workflow_id="wf_invoice", now=DAY_2, tenant="acme")
    ledger.record(_run("t2", 1.5), workflow_id="wf_invoice", now=DAY_2, tenant="acme")
    ledger.record(_run("t3", 4.0), workflow_id="wf_invoice", now=DAY_2, tenant="globex")
    ledger.record(_run("t4", 0.5), workflow_id="wf_invoice", now=DAY_2)
    old = json.dumps({"day": NAME_2, "workflow": "wf_invoice", "credits": 1.0, "tags": []})
    redis_client.hset(Keys("extendq:").usage_pending, "t5", old)
    # When it is rolled up
    assert ledger.roll_up() == 5
    # Then each account has its own credits and runs, in the day's totals and the report's
    by_tenant = ledger.report()["total"]["by_tenant"]
    assert by_tenant == {
        "acme": {"credits": 3.5, "runs": 2},
        "globex": {"credits": 4.0, "runs": 1},
        "default": {"credits": 1.5, "runs": 2},
    }
