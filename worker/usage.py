"""Usage report: the credits of finished runs, per UTC day, in total, by workflow, by account (tenant) and by
`extend:usage_tags`.

When a job finishes with a run, the run's `usage.credits` is noted under its run id (`record`, one write,
idempotent); the periodic `roll_up` moves each noted run into its day's totals exactly once (a Lua script
deletes the note and adds it up in one step). A run with several usage tags counts towards each of them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis

from extendq.worker.extend import Run
from extendq.worker.keys import Keys
from extendq.worker.models import USAGE_TAGS_KEY

_DAY_S = 86400
DEFAULT_ACCOUNT = "default"  # the account of runs made with no tenant
_KINDS = ("workflow", "tenant", "tag")  # the breakdowns of each day's totals

_ROLL = """
-- KEYS: pending hash, day hash, days set. ARGV: run id, credits, expire at (unix s), day, then dimensions.
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
for i = 5, #ARGV do
  redis.call('HINCRBYFLOAT', KEYS[2], 'credits:' .. ARGV[i], ARGV[2])
  redis.call('HINCRBY', KEYS[2], 'runs:' .. ARGV[i], 1)
end
redis.call('EXPIREAT', KEYS[2], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[4])
return 1
"""


@dataclass(kw_only=True)
class UsageLedger:
    """Notes finished runs' credits, rolls them up per day, and reports the totals."""

    client: redis.Redis
    keys: Keys
    retention_days: int = 400
    clock: Callable[[], float] = time.time

    def record(self, run: Run, *, workflow_id: str, now: float, tenant: str | None = None) -> None:
        """Note a finished run's credits for the next roll-up (the same run noted twice is counted once)."""
        self.client.hset(self.keys.usage_pending, *usage_note(run, workflow_id=workflow_id, now=now, tenant=tenant))

    def roll_up(self, limit: int = 5000) -> int:
        """Add up to `limit` noted runs to their days' totals; how many were added."""
        added = 0
        for run_id, raw in self.client.hscan_iter(self.keys.usage_pending, count=500):
            note = json.loads(raw)
            day = str(note["day"])
            expire_at = int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp()) + self.retention_days * _DAY_S
            account = note.get("tenant") or DEFAULT_ACCOUNT  # noted before tenants were counted: the default one
            dimensions = ["total", f"workflow:{note['workflow']}", f"tenant:{account}"]
            dimensions += [f"tag:{tag}" for tag in note["tags"]]
            keys = (self.keys.usage_pending, self.keys.usage_day(day), self.keys.usage_days)
            args: list[str | int] = [str(run_id), repr(float(note["credits"])), expire_at, day, *dimensions]
            added += int(self.client.eval(_ROLL, 3, *keys, *args))
            if added >= limit:
                break
        return added

    def report(self, *, days: int | None = None) -> dict[str, Any]:
        """Totals per day (newest last, the last `days` only when given), over those days, and runs not rolled up."""
        names = sorted(str(day) for day in self.client.smembers(self.keys.usage_days))
        rows = []
        for day in names[-days:] if days else names:
            raw = self.client.hgetall(self.keys.usage_day(day))
            if raw:
                rows.append({"day": day, **_totals(raw)})
            else:
                self.client.srem(self.keys.usage_days, day)  # expired
        return {"days": rows, "total": _sum(rows), "pending_runs": int(self.client.hlen(self.keys.usage_pending))}


def usage_note(run: Run, *, workflow_id: str, now: float, tenant: str | None = None) -> tuple[str, str]:
    """A finished run's entry in the pending-usage hash (`Keys.usage_pending`): run id, encoded note; `tenant`: the
    account the run was made on (None: the default one)."""
    usage, metadata = _mapping(run.get("usage")), _mapping(run.get("metadata"))
    tags = metadata.get(USAGE_TAGS_KEY)
    tags = tags if isinstance(tags, list) else []
    note = {
        "day": _day(now),
        "workflow": workflow_id,
        "tenant": tenant or DEFAULT_ACCOUNT,
        "credits": float(usage.get("credits") or 0),
        "tags": sorted({str(tag) for tag in tags}),
    }
    return str(run["id"]), json.dumps(note, separators=(",", ":"))


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _day(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).date().isoformat()


def _totals(raw: dict[Any, Any]) -> dict[str, Any]:
    """A day hash (`credits:total`, `runs:workflow:<id>`, `credits:tag:<tag>`, ...) as nested totals."""
    out: dict[str, Any] = {"credits": 0.0, "runs": 0, "by_workflow": {}, "by_tenant": {}, "by_tag": {}}
    for field, value in raw.items():
        measure, _, dimension = str(field).partition(":")
        kind, _, name = dimension.partition(":")
        number = round(float(value), 6) if measure == "credits" else int(value)
        if kind == "total":
            out[measure] = number
        elif kind in _KINDS:
            out[f"by_{kind}"].setdefault(name, {"credits": 0.0, "runs": 0})[measure] = number
    return out


def _sum(rows: list[dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {"credits": 0.0, "runs": 0, "by_workflow": {}, "by_tenant": {}, "by_tag": {}}
    for row in rows:
        total["credits"] = round(total["credits"] + row["credits"], 6)
        total["runs"] += row["runs"]
        for kind in (f"by_{kind}" for kind in _KINDS):
            for name, part in row.get(kind, {}).items():
                into = total[kind].setdefault(name, {"credits": 0.0, "runs": 0})
                into["credits"] = round(into["credits"] + part["credits"], 6)
                into["runs"] += part["runs"]
    return total
