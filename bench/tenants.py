"""Benchmark: one tenant's key revoked mid-run, against the same jobs undisturbed: the other tenant's jobs are as fast.

    .venv/bin/python bench/tenants.py [--jobs 100] [--limits 10 20] [--min-s 1] [--max-s 3] [--revoke-at 0.25]
                                      [--concurrency 2] [--wait-s 420] [--set NAME=VALUE ...]

Two emulators are two Extend accounts, tenants `a` and `b`, each with its own key and rate limit (`--limits`,
requests per second, 10 and 20 by default: the account's and the tenant's budget in the pool), configured through
`EXTENDQ_TENANTS`; a third serves the default account, which no job uses. One worker (`--concurrency` processes)
with list sweeps on (`EXTENDQ_SWEEP=on`), on a fresh Redis database per run. Each run enqueues `--jobs` jobs per
tenant, interleaved (runs of `--min-s` to `--max-s` seconds on Extend):

- `undisturbed`: nothing else happens;
- `a revoked`: once a's account holds `--revoke-at` of a's runs (a quarter by default, a few seconds in), a's key is
  revoked (`PUT /_emulator/api_keys` with another key: 401 from then on).

Prints both runs side by side: per tenant, seconds from enqueue to result (p50/p95/max), calls per job, jobs
finished and failed (by error type), runs per job and requests refused for the account's limit; for b the ratio of
the disturbed run to the undisturbed one; for a, its requests after the revocation (by route and status): its
jobs' own (creates, fetches) and its list sweeps'. PASS/FAIL lines: b's p95 with a revoked at most 1.25x its
undisturbed p95 (+0.5 s for small numbers), b's jobs all finished with one run each in both runs, a's jobs each
finished or failed with `AuthFailed` (none lost), and no retry storm of a's after the revocation: its jobs' own
requests at most 2 per job, its list sweeps at most one a second. `--set` passes settings to the worker (e.g.
`--set EXTENDQ_SWEEP_CHECK_INTERVAL_S=20` for a quicker run: a's jobs with a run in flight at the revocation end at
their safety-net check, 300 s after the run's creation by default, as a's failing sweeps keep them stretched).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    CHAOS_WORKFLOW,
    Pool,
    chaos_profile,
    limit_refusals,
    redis_database,
    runs_per_job,
    wait_results,
)
from extendq.tasks.celery import create_app  # noqa: E402
from extendq.tasks.producer import build_request, enqueue  # noqa: E402
from extendq.worker.store import open_store  # noqa: E402
from tests.support.emulator import EmulatorProcess  # noqa: E402

TENANTS = ("a", "b")
KEYS = {"a": "sk_test_BENCH_TENANT_A_7d31", "b": "sk_test_BENCH_TENANT_B_2f96"}
REVOKED = "sk_test_BENCH_TENANT_A_rotated"  # the only key a's account accepts once a's key is revoked
STORM_PER_JOB = 2  # a's jobs' own requests after the revocation, per job of a, above which it is a retry storm
LIST = "GET /workflow_runs"  # a list sweep's page


@dataclass
class Tenant:
    """What one tenant's jobs did in one run."""

    jobs: int
    seconds: list[float] = field(default_factory=list)  # enqueue to result, per job with a result, sorted
    finished: int = 0
    failed: Counter[str] = field(default_factory=Counter)  # by error type
    lost: int = 0
    calls: int = 0
    runs: Counter[str] = field(default_factory=Counter)  # Extend runs per job id
    above_limit: int = 0
    after_revocation: Counter[str] = field(default_factory=Counter)  # "route status" of requests after it

    def pct(self, q: float) -> float | None:
        values = self.seconds
        return values[min(len(values) - 1, round(q / 100 * (len(values) - 1)))] if values else None

    @property
    def one_run_each(self) -> bool:
        return len(self.runs) == self.jobs and set(self.runs.values()) == {1}


@dataclass
class Run:
    """One run of the scenario: both tenants' figures, and when (seconds after the first enqueue) a's key went."""

    name: str
    tenants: dict[str, Tenant]
    revoked_at_s: float | None = None
    a_runs_at_revocation: int = 0  # a's runs its account held when its key went
    after_revocation_s: float = 0.0  # from the revocation to the last result (or the end of the wait)


def _profile(limits: dict[str, int], name: str, duration: tuple[float, float]) -> dict[str, Any]:
    limit = {"requests_per_second": limits[name]} if name in limits else None
    return chaos_profile(duration, rate_limit=limit)


def _tenants_env(emulators: dict[str, EmulatorProcess], limits: dict[str, int]) -> str:
    config = {
        name: {"api_key": KEYS[name], "base_url": emulators[name].url, "rate_limit_requests_per_second": limits[name]}
        for name in TENANTS
    }
    return json.dumps(config)


def scenario(
    name: str, emulators: dict[str, EmulatorProcess], args: argparse.Namespace, logs: Path, *, revoke: bool
) -> Run:
    """Enqueue the jobs of both tenants, revoke a's key when asked, wait (bounded) for every result, count."""
    limits = dict(zip(TENANTS, args.limits, strict=True))
    for account, emulator in emulators.items():
        emulator.set_profile(_profile(limits, account, (args.min_s, args.max_s)))
        emulator.reset()
        emulator.set_api_keys([KEYS[account]] if account in KEYS else [])
    run = Run(name, {tenant: Tenant(args.jobs) for tenant in TENANTS})
    with redis_database() as url:
        tenants = _tenants_env(emulators, limits)
        settings = {"EXTENDQ_TENANTS": tenants, "EXTENDQ_SWEEP": "on", **dict(args.set)}
        pool = Pool(url, emulators["default"].url, logs / name.replace(" ", "-"), **settings)
        try:
            pool.start(1, concurrency=args.concurrency)
            started, revoked_wall = time.monotonic(), None
            ids = _submit(pool, args.jobs, name)
            if revoke:
                due = max(1, round(args.jobs * args.revoke_at))
                revoked_wall, run.a_runs_at_revocation = _revoke_when_due(emulators["a"], due)
                run.revoked_at_s = time.monotonic() - started
            results = wait_results(url, [job for tenant in TENANTS for job in ids[tenant]], args.wait_s)
            for tenant in TENANTS:
                _count(run.tenants[tenant], pool, emulators[tenant], ids[tenant], results, limits[tenant])
            if revoked_wall is not None:
                run.after_revocation_s = time.time() - revoked_wall
                late = emulators["a"].requests(since=revoked_wall)
                run.tenants["a"].after_revocation = Counter(f"{r['method']} {r['route']} {r['status']}" for r in late)
        finally:
            pool.stop()
    return run


def _submit(pool: Pool, jobs: int, prefix: str) -> dict[str, list[str]]:
    """Each tenant's jobs, enqueued together (a's and b's interleaved), recorded before their messages go."""
    app, store = create_app(pool.settings), open_store(pool.settings)
    ids: dict[str, list[str]] = {tenant: [] for tenant in TENANTS}
    for index in range(jobs):
        for tenant in TENANTS:
            request = build_request(
                workflow=CHAOS_WORKFLOW, file={"text": f"Total: {index}.00"}, tenant=tenant,
                job_key=f"tenants-{prefix.replace(' ', '-')}-{tenant}-{index}",
            )  # fmt: skip
            ids[tenant].append(enqueue(app, request, store=store, lease_s=pool.settings.claim_lease_s).id)
    return ids


def _revoke_when_due(account: EmulatorProcess, runs: int, wait_s: float = 60.0) -> tuple[float, int]:
    """Revoke the account's key once it holds `runs` runs (or after `wait_s`); the wall-clock time, the runs held."""
    deadline = time.monotonic() + wait_s
    while (held := len(account.runs())) < runs and time.monotonic() < deadline:
        time.sleep(0.2)
    revoked = time.time()
    account.set_api_keys([REVOKED])
    return revoked, held


def _count(
    figures: Tenant,
    pool: Pool,
    emulator: EmulatorProcess,
    job_ids: list[str],
    results: dict[str, dict[str, Any]],
    limit: int,
) -> None:
    store = open_store(pool.settings)
    for job_id in job_ids:
        record = store.load(job_id)
        if record is not None and record.finished_at is not None and job_id in results:
            figures.seconds.append(record.finished_at - record.enqueued_at)
        meta = results.get(job_id)
        if meta is None:
            figures.lost += 1
        elif meta["status"] == "SUCCESS":
            figures.finished += 1
        else:
            figures.failed[str((meta.get("result") or {}).get("exc_type"))] += 1
    figures.seconds.sort()
    figures.calls = int(emulator.stats()["requests_total"])
    figures.runs = runs_per_job(emulator, job_ids)
    figures.above_limit = len(limit_refusals(emulator.requests(), limit))


def report(calm: Run, hurt: Run) -> list[str]:
    """Both runs side by side, then the PASS/FAIL lines."""
    lines = [f"{'':<34}{calm.name:>14}{hurt.name:>16}{'ratio':>8}"]
    for tenant in ("b", "a"):
        before, after = calm.tenants[tenant], hurt.tenants[tenant]
        for label, q in (("p50", 50), ("p95", 95), ("max", 100)):
            was, now = before.pct(q), after.pct(q)
            ratio = f"{now / was:>8.2f}" if tenant == "b" and was and now is not None else ""
            lines.append(f"{tenant}: seconds to result {label:<15}{_s(was):>14}{_s(now):>16}{ratio}")
        lines.append(_row(tenant, "jobs finished / failed / lost", _outcome(before), _outcome(after)))
        lines.append(_row(tenant, "calls per job", _per_job(before), _per_job(after)))
        lines.append(_row(tenant, "runs per job", _runs(before), _runs(after)))
        lines.append(_row(tenant, "refused for the account's limit", str(before.above_limit), str(after.above_limit)))
    a = hurt.tenants["a"]
    own, lists = _after_revocation(a)
    revoked = "-" if hurt.revoked_at_s is None else f"{hurt.revoked_at_s:.1f} s in"
    lines.append(_row("a", "key revoked", "-", revoked))
    lines.append(_row("a", "runs created before revocation", "-", str(hurt.a_runs_at_revocation)))
    lines.append(_row("a", "jobs' requests after revocation", "-", f"{own} ({own / max(a.jobs, 1):.2f}/job)"))
    rate = lists / max(hurt.after_revocation_s, 1.0)
    lines.append(_row("a", "list sweeps after revocation", "-", f"{lists} ({rate:.2f}/s)"))
    lines.append(f"   a's requests after revocation, by route and status ({hurt.after_revocation_s:.0f} s):")
    lines.append(f"   {dict(a.after_revocation) or '-'}")
    for tenant in TENANTS:
        for run in (calm, hurt):
            if run.tenants[tenant].failed:
                lines.append(f"   {tenant} failed in {run.name}: {dict(run.tenants[tenant].failed)}")
    return lines + _verdicts(calm, hurt)


def _after_revocation(figures: Tenant) -> tuple[int, int]:
    """A tenant's requests after the revocation: its jobs' own, and its list sweeps' pages."""
    lists = sum(n for key, n in figures.after_revocation.items() if key.rsplit(" ", 1)[0] == LIST)
    return sum(figures.after_revocation.values()) - lists, lists


def _verdicts(calm: Run, hurt: Run) -> list[str]:
    b_calm, b_hurt, a = calm.tenants["b"], hurt.tenants["b"], hurt.tenants["a"]
    own, lists = _after_revocation(a)
    was, now = b_calm.pct(95), b_hurt.pct(95)
    bound = 1.25 * was + 0.5 if was is not None else None
    auth_only = a.lost == 0 and set(a.failed) <= {"AuthFailed"} and a.finished + sum(a.failed.values()) == a.jobs
    targets = {
        f"b's p95 with a revoked {_s(now)} s, at most 1.25x undisturbed {_s(was)} s + 0.5 s ({_s(bound)} s)": (
            bound is not None and now is not None and now <= bound
        ),
        f"b's jobs all finished ({b_calm.finished} and {b_hurt.finished} of {b_calm.jobs}), one run each": (
            b_calm.finished == b_hurt.finished == b_calm.jobs and b_calm.one_run_each and b_hurt.one_run_each
        ),
        f"a's jobs all finished undisturbed ({calm.tenants['a'].finished} of {a.jobs})": (
            calm.tenants["a"].finished == a.jobs
        ),
        f"a's jobs with a revoked each finished or failed with AuthFailed ({a.finished} finished, "
        f"{dict(a.failed) or 0} failed, {a.lost} lost)": auth_only and sum(a.failed.values()) > 0,
        f"a's jobs' requests after revocation bounded ({own}, at most {STORM_PER_JOB} per job: "
        f"{STORM_PER_JOB * a.jobs})": own <= STORM_PER_JOB * a.jobs,
        f"a's list sweeps after revocation at most one a second ({lists} in {hurt.after_revocation_s:.0f} s)": (
            lists <= max(hurt.after_revocation_s, 1.0)
        ),
    }
    return [f"{'PASS' if ok else 'FAIL'}  {target}" for target, ok in targets.items()]


def _row(tenant: str, label: str, calm: str, hurt: str) -> str:
    return f"{tenant}: {label:<31}{calm:>14}{hurt:>16}"


def _s(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.2f}"


def _per_job(figures: Tenant) -> str:
    return f"{figures.calls / max(figures.jobs, 1):.2f}"


def _outcome(figures: Tenant) -> str:
    return f"{figures.finished}/{sum(figures.failed.values())}/{figures.lost}"


def _runs(figures: Tenant) -> str:
    if figures.one_run_each:
        return "1 each"
    spread = Counter(figures.runs.values())
    spread[0] = figures.jobs - len(figures.runs)
    return ",".join(f"{n}x{runs}" for runs, n in sorted(spread.items()) if n)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100, help="jobs per tenant in each run")
    parser.add_argument("--limits", type=int, nargs=2, default=[10, 20], help="requests/s of a's and b's accounts")
    parser.add_argument("--min-s", type=float, default=1.0, help="shortest run on Extend")
    parser.add_argument("--max-s", type=float, default=3.0, help="longest run on Extend")
    parser.add_argument("--revoke-at", type=float, default=0.25, help="share of a's runs created before revocation")
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes")
    parser.add_argument("--wait-s", type=float, default=420.0, help="longest wait for each run's results")
    parser.add_argument("--set", type=_setting, action="append", default=[], metavar="NAME=VALUE",
                        help="a setting of the worker's, e.g. EXTENDQ_SWEEP_CHECK_INTERVAL_S=20")  # fmt: skip
    return parser.parse_args()


def _setting(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def main() -> None:
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # leave through the `finally` blocks
    logs = Path(tempfile.mkdtemp(prefix="extendq-tenants-"))
    with ExitStack() as stack:
        emulators = {
            account: stack.enter_context(EmulatorProcess(profile=chaos_profile((args.min_s, args.max_s))))
            for account in ("default", *TENANTS)
        }
        calm = scenario("undisturbed", emulators, args, logs, revoke=False)
        hurt = scenario("a revoked", emulators, args, logs, revoke=True)
    for line in report(calm, hurt):
        print(line, flush=True)
    print(f"worker logs: {logs}")


if __name__ == "__main__":
    main()
