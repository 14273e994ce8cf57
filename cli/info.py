"""`extendq info`: the pool at a glance, as lines that fit 80 columns or one JSON object."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator, Mapping
from typing import Any

from extendq.tasks.overview import gather
from extendq.worker.misrouted import FIX

WIDTH = 80
_LABEL = 17  # the label column
__all__ = ["gather", "lines"]


def lines(report: Mapping[str, Any]) -> list[str]:
    """The report as lines of at most `WIDTH` characters."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(report["at"]))
    return [f"extendq pool, {stamp}", *_workers(report), *_queues(report), *_misrouted(report), *_rest(report)]


def _row(label: str, text: str) -> list[str]:
    indent = " " * _LABEL
    return textwrap.wrap(text, WIDTH, initial_indent=f"{label:<{_LABEL}}", subsequent_indent=indent) or [label]


def _workers(report: Mapping[str, Any]) -> Iterator[str]:
    workers = report["workers"]
    yield from _row("Workers", f"{len(workers)} alive" if workers else "none alive (no heartbeat in Redis)")
    for worker in workers:
        queues = ",".join(worker["queues"])
        text = (
            f"{worker['name']} pid {worker['pid']}, concurrency {worker['concurrency']}, "
            f"beat {_age(worker['heartbeat_age_s'])} ago, queues {queues}"
        )
        yield from _row("", text)


def _queues(report: Mapping[str, Any]) -> Iterator[str]:
    if not report["queues"]:
        yield from _row("Queues", "not shown: the broker is not a Redis")
    for index, (queue, depth) in enumerate(report["queues"].items()):
        consumers = depth["consumers"]
        who = f"{consumers} consumer{'s' if consumers != 1 else ''}" if consumers else "no extendq worker reads it"
        yield from _row("Queues" if index == 0 else "", f"{queue:<16}{depth['messages']:>8} waiting, {who}")


def _misrouted(report: Mapping[str, Any]) -> Iterator[str]:
    for found in report["misrouted"]:
        count = found["messages"] if found["complete"] else f"at least {found['messages']}"
        kinds = ", ".join(f"{name} x{n}" for name, n in found["tasks"].items())
        yield from _row("WRONG QUEUE", f"{found['queue']}: {count} extendq task message(s) ({kinds}); {FIX}")


def _rest(report: Mapping[str, Any]) -> Iterator[str]:
    jobs, due = report["jobs"], report["due"]
    states = ", ".join(f"{state} {n}" for state, n in jobs["by_state"].items()) or "none"
    if jobs["states_read"] < jobs["in_flight"]:
        states += f" (states of the first {jobs['states_read']})"
    yield from _row("Jobs in flight", f"{jobs['in_flight']}: {states}")
    if (tenant := report.get("tenant")) is not None:
        yield from _row(f"  tenant {tenant['name']}", f"{tenant['in_flight']} in flight")
    if (oldest := jobs["oldest"]) is not None:
        yield from _row("Oldest in flight", f"{oldest['job_id']}, {_age(oldest['age_s'])} old")
    yield from _row(
        "Due checks",
        f"{due['entries']} scheduled, {due['due_now']} due now, dispatch lag {_age(due['dispatch_lag_s'])}",
    )
    for scope, usage in report["rate_limit"].items():
        if "tenant" in report:  # one tenant's view: its own limit only
            yield from _row("Rate limit", f"{scope}: {_limit_text(usage)}")
        else:
            yield from _row("Rate limit" if scope == "default" else f"  {scope}", _limit_text(usage))
    sweeps, webhooks = report["sweeps"], report["webhooks"]
    now = "sweeping now" if sweeps["active"] else "not sweeping now"
    yield from _row("Sweeps", f"{sweeps['mode']}, {now} (auto: from {sweeps['min_in_flight']} jobs in flight)")
    yield from _row("Webhooks", "on: checks only catch missed deliveries" if webhooks["enabled"] else "off")


def _limit_text(usage: Mapping[str, Any]) -> str:
    buckets = [f"{name} {b['limit']}, {b['reserved']:g} reserved ahead" for name, b in usage["buckets"].items()]
    parts = [*(buckets or ["no limit set"]), f"429 pauses in the last hour: {usage['pauses_last_hour']}"]
    if usage["paused_for_s"] > 0:
        parts.append(f"paused for {_age(usage['paused_for_s'])}")
    return "; ".join(parts)


def _age(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"
