"""Benchmark: how long each dashboard page takes to render, server-side, with 1k, 10k and 100k jobs.

    .venv/bin/python bench/dashboard.py [--sizes 1000,10000] [--full] [--repeat 20] [--page-budget 30]

For each size N: a private redis-server (`--save '' --appendonly no`) gets N jobs in flight and N finished,
written through the job store's own methods (bench/dashboard_seed.py): 20 workflows, two tenants beside the
default account, QUEUED, SUBMITTING and RUNNING jobs, finished ones over the last 24 h (a tenth in the last
hour) with their terminal results, mostly PROCESSED, some FAILED, FAILURE (with an error kind), CANCELLED,
NEEDS_REVIEW (up to 300 followed in the review set) and REJECTED, and the events stream as the pool fills it.
The seeding time is printed.

Then the dashboard (`extendq.dashboard.create_app`) is called in process over httpx's ASGI transport: each page
once to warm up, then `--repeat` times (fewer when a page uses up `--page-budget` seconds). A page's time is its
`Server-Timing: app;dur=<ms>` header, or the ASGI call's wall time when it has none (marked `*`). A page that
answers 404 is reported `missing` (not built yet); any other error is reported too.

Target (issue 21): every page's p95 under 300 ms at the largest size (`--full`: 1000,10000,100000).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import re
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis
from starlette.applications import Starlette

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import private_redis  # noqa: E402
from bench.dashboard_seed import CUSTOMERS, WORKFLOWS, Seeded, Seeder, bench_env  # noqa: E402
from extendq.config.settings import Settings  # noqa: E402
from extendq.dashboard import create_app  # noqa: E402

TARGET_MS = 300.0
DEFAULT_SIZES = "1000,10000"
FULL_SIZES = "1000,10000,100000"
_DUR = re.compile(r"(?:^|[,\s])app;[^,]*?dur=([0-9.]+)")


@dataclass
class PageTimes:
    """One page's render times, or why it has none."""

    path: str
    times_ms: list[float] = field(default_factory=list)
    header: bool = True  # every time came from Server-Timing
    problem: str = ""  # "missing", "HTTP 500", an exception's name

    def quantile(self, q: float) -> float:
        """The nearest-rank quantile: the smallest time at least a fraction `q` of the times are at or under."""
        ordered = sorted(self.times_ms)
        return ordered[max(0, math.ceil(len(ordered) * q) - 1)]

    @property
    def ok(self) -> bool:
        return not self.problem and bool(self.times_ms) and self.quantile(0.95) < TARGET_MS


def pages(seeded: Seeded) -> list[str]:
    """The pages timed, with ids and filters that exist in the seeded data."""
    return [
        "/",
        "/api/overview",
        "/jobs",
        "/jobs?view=finished",
        "/jobs?view=finished&outcome=FAILED",
        f"/jobs?view=finished&workflow={WORKFLOWS[3]}",
        "/jobs?view=finished&tenant=acme",
        f"/jobs?q={CUSTOMERS[7].replace(' ', '+')}",
        "/jobs?view=in_flight&state=QUEUED",
        f"/jobs/{seeded.running_id}",
        f"/jobs/{seeded.processed_id}",
        "/review",
    ]


async def time_pages(app: Starlette, paths: list[str], repeat: int, budget_s: float) -> list[PageTimes]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://dashboard") as client:
        return [await _time_page(client, path, repeat, budget_s) for path in paths]


async def _time_page(client: httpx.AsyncClient, path: str, repeat: int, budget_s: float) -> PageTimes:
    """One warm-up request, then up to `repeat` timed ones within `budget_s` seconds."""
    page = PageTimes(path)
    deadline = time.monotonic() + budget_s
    for attempt in range(repeat + 1):
        try:
            started = time.perf_counter()
            response = await client.get(path)
            wall_ms = (time.perf_counter() - started) * 1000
        except Exception as exc:  # a page under construction may raise: reported, the others still timed
            page.problem = f"error: {type(exc).__name__}"
            return page
        if response.status_code != 200:
            page.problem = "missing" if response.status_code == 404 else f"HTTP {response.status_code}"
            return page
        if attempt:
            page.times_ms.append(_server_ms(response, page) or wall_ms)
        if time.monotonic() > deadline:
            break
    return page


def _server_ms(response: httpx.Response, page: PageTimes) -> float | None:
    found = _DUR.search(response.headers.get("server-timing", ""))
    if found is None:
        page.header = False
        return None
    return float(found.group(1))


def measure(size: int, args: argparse.Namespace) -> tuple[Seeded, list[PageTimes]]:
    """Seed a fresh Redis with `size` jobs in flight and `size` finished, then time every page."""
    with private_redis(appendonly=False) as server:
        settings = Settings.from_env(bench_env(f"{server.url.rsplit('/', 1)[0]}/0"))
        seeded = Seeder(settings).seed(size)
        client = redis.Redis.from_url(settings.redis_url)
        memory_mb = int(client.info("memory")["used_memory"]) / 1024 / 1024
        print(
            f"{size} + {size} jobs seeded in {seeded.seconds:.1f} s ({2 * size / seeded.seconds:,.0f} jobs/s); "
            f"{client.dbsize()} keys, {memory_mb:.0f} MB in Redis, {client.xlen('extendq:events')} events, "
            f"{seeded.watched} followed for review; finished: {seeded.outcomes}",
            flush=True,
        )
        client.close()
        app = create_app(settings)
        return seeded, asyncio.run(time_pages(app, pages(seeded), args.repeat, args.page_budget))


def report(size: int, times: list[PageTimes]) -> None:
    print(f"\n{size} in flight + {size} finished: render ms (Server-Timing; * the ASGI call's wall time)")
    print(f"{'page':<52}{'n':>4}{'p50':>9}{'p95':>9}{'max':>9}")
    for page in times:
        if page.problem:
            print(f"{page.path:<52}{page.problem:>31}")
            continue
        mark = "" if page.header else "*"
        cells = "".join(f"{page.quantile(q):>8.1f}{mark or ' '}" for q in (0.5, 0.95, 1.0))
        print(f"{page.path:<52}{len(page.times_ms):>4}{cells}")


def verdict(size: int, times: list[PageTimes]) -> bool:
    slow = [page.path for page in times if not page.problem and not page.ok]
    missing = [page.path for page in times if page.problem]
    ok = not slow and not missing
    detail = "".join(
        f"; {label}: {', '.join(paths)}" for label, paths in (("over", slow), ("not measured", missing)) if paths
    )
    print(f"\n{'PASS' if ok else 'FAIL'}  every page p95 < {TARGET_MS:g} ms at {size} + {size} jobs{detail}")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=None, help=f"comma-separated jobs in flight (default {DEFAULT_SIZES})")
    parser.add_argument("--full", action="store_true", help=f"the issue's sizes, {FULL_SIZES}")
    parser.add_argument("--repeat", type=int, default=20, help="timed requests per page (default 20)")
    parser.add_argument("--page-budget", type=float, default=30.0, help="seconds a page's requests may take")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: the private redis-server is stopped
    sizes = sorted(int(part) for part in (args.sizes or (FULL_SIZES if args.full else DEFAULT_SIZES)).split(","))
    times: list[PageTimes] = []
    for size in sizes:
        print(f"\n{size} jobs ...", flush=True)
        _, times = measure(size, args)
        report(size, times)
    sys.exit(0 if verdict(sizes[-1], times) else 1)


if __name__ == "__main__":
    main()
