"""Redis fails over under load: real processes on 127.0.0.1 (a primary, a replica, three Sentinels, the emulator, a
worker and a beat) and the primary SIGKILLed while 200 runs are in flight.

Scenario one, the recommended setup: every job enqueued before the kill finishes with exactly one Extend run, beat
keeps firing once per period, and no process is restarted. Scenario two: the replica lags (`CLIENT PAUSE WRITE`:
it receives the primary's writes but does not apply them, and drops them when the primary's connection ends), with
the wait for a replica off (`EXTENDQ_REDIS_WAIT_REPLICA_MS=0`, as when no replica is online), so that jobs submitted
in the lag, and the runs created for them, are really lost from Redis: the pool notices the new primary and its
recovery pass adopts those runs, one for one, from their job ids on Extend.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from celery import Celery

from extendq.config.redis_connection import redis_client
from extendq.config.settings import Settings
from extendq.tasks.celery import create_app
from extendq.tasks.producer import build_request, enqueue
from extendq.worker.store import RedisJobStore, open_store
from tests.e2e.conftest import PROFILE
from tests.support.beat import BeatProcess
from tests.support.emulator import EmulatorProcess
from tests.support.failover import finished, firings, lines_with, replicated, runs_per_job, wait_until
from tests.support.sentinel_redis import SentinelGroup
from tests.support.worker import WorkerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.chaos, pytest.mark.timeout(420)]

WORKFLOW = "workflow_failover"
FAILOVER_PROFILE = {
    **PROFILE,
    "workflows": {
        **PROFILE["workflows"],
        WORKFLOW: {"name": "Two to five seconds", "duration_s": [2.0, 5.0], "outcomes": {"PROCESSED": 1}},
    },
}
PERIOD_S = 2.0
SCHEDULE = {"reconcile": {"every": f"{PERIOD_S:g}s"}, "review": None, "usage": None}
# The recommended setting, on the primary only: with one replica, a promoted primary must take writes without one.
RECOMMENDED = ("--min-replicas-to-write", "1", "--min-replicas-max-lag", "10")


@pytest.fixture
def failover_emulator(emulator: EmulatorProcess) -> Iterator[EmulatorProcess]:
    emulator.set_profile(FAILOVER_PROFILE)
    emulator.reset()
    yield emulator
    emulator.set_profile(PROFILE)
    emulator.reset()


def ha_env(worker_env: dict[str, str], group: SentinelGroup, **extra: str) -> dict[str, str]:
    """The pool's environment on the group's Sentinels, beat firing every 2 s."""
    return {
        **worker_env,
        "EXTENDQ_REDIS_URL": group.url(0),
        "EXTENDQ_BEAT_SCHEDULE": json.dumps(SCHEDULE),
        "EXTENDQ_BEAT_MAX_LOOP_INTERVAL_S": "0.5",
        "EXTENDQ_BEAT_LOCK_TIMEOUT_S": "30",
        **extra,
    }


def submit(producer: Celery, store: RedisJobStore, count: int, tag: str) -> list[str]:
    requests = [
        build_request(workflow=WORKFLOW, file={"text": f"Invoice {tag}-{n}\nTotal: {n}.00"}) for n in range(count)
    ]
    return [enqueue(producer, request, store=store).id for request in requests]


def all_finished(client: redis.Redis, job_ids: list[str]) -> bool:
    return len(finished(client, job_ids)) == len(job_ids)


def test_a_primary_killed_under_load_loses_no_job_and_makes_no_second_run(
    worker_env: dict[str, str], failover_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    emulator = failover_emulator
    group = SentinelGroup(tmp_path / "redis", primary_args=RECOMMENDED)
    with group:
        env = ha_env(worker_env, group)
        settings = Settings.from_env(env)
        client = redis_client(settings, decode_responses=True)
        with (
            WorkerProcess(env, log_path=tmp_path / "worker.log", concurrency=4) as worker,
            BeatProcess(env, log_path=tmp_path / "beat.log") as beat,
            create_app(settings) as producer,
        ):
            worker_pid, beat_pid = worker.proc.pid if worker.proc else 0, beat.proc.pid if beat.proc else 0
            # Given 200 jobs of 2-5 s runs, enqueued and on the replica
            job_ids = submit(producer, open_store(settings), 200, "a")
            assert replicated(client)
            # When the primary is SIGKILLed once a quarter of the runs exist, all of them still running
            wait_until(lambda: len(emulator.runs()) >= 50, timeout_s=180, what="50 runs created")
            in_flight = len(job_ids) - len(finished(client, job_ids))
            group.kill_primary()
            # Then the Sentinels promote the replica
            group.wait_promoted(group.replica)
            promoted = time.time()
            # And every job finishes with its terminal run, on the new primary
            wait_until(lambda: all_finished(client, job_ids), timeout_s=240, what="every job finished")
            outcomes = finished(client, job_ids)
            # And beat fired at least twice more after the failover
            wait_until(
                lambda: len([t for t in firings(beat.log_text(), "extendq.reconcile") if t > promoted]) >= 2,
                timeout_s=60,
                what="beat firing after the failover",
            )
            # And the pool noticed the new primary: one recovery pass, which had nothing to adopt
            wait_until(lambda: "recovery since" in worker.log_text(), timeout_s=60, what="a recovery pass")
            alive = (
                worker.proc is not None and worker.proc.poll() is None,
                beat.proc is not None and beat.proc.poll() is None,
            )
            same = (worker.proc.pid if worker.proc else 0, beat.proc.pid if beat.proc else 0) == (worker_pid, beat_pid)
            worker_log, beat_log = worker.log_text(), beat.log_text()
        client.close()
    assert in_flight >= 100, in_flight
    assert {outcome["status"] for outcome in outcomes.values()} == {"SUCCESS"}
    assert {outcome["result"]["status"] for outcome in outcomes.values()} == {"PROCESSED"}
    # Exactly one Extend run per job: no duplicate, none lost, none foreign
    runs = runs_per_job(emulator)
    assert set(runs) == set(job_ids) and set(runs.values()) == {1}, runs.most_common(3)
    assert {outcomes[job_id]["result"]["id"] for job_id in job_ids} == {r["id"] for r in emulator.runs()}
    # Beat fired once per period throughout: never two firings within one period
    sent = firings(beat_log, "extendq.reconcile")
    assert all(later - earlier > PERIOD_S / 2 for earlier, later in zip(sent, sent[1:], strict=False)), sent
    # The recovery pass ran once and adopted nothing (every run's job was there), and no process was restarted
    [recovery] = [line for line in worker_log.splitlines() if "recovery since" in line]
    assert "adopted=" not in recovery, recovery
    assert "Redis has a new primary" in worker_log
    assert alive == (True, True) and same and "exited with" not in worker_log


def test_writes_lost_with_a_lagging_replica_are_made_up_for_by_recovery(
    worker_env: dict[str, str], failover_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    emulator = failover_emulator
    group = SentinelGroup(tmp_path / "redis")
    with group:
        env = ha_env(worker_env, group, EXTENDQ_REDIS_WAIT_REPLICA_MS="0")
        settings = Settings.from_env(env)
        client = redis_client(settings, decode_responses=True)
        with (
            WorkerProcess(env, log_path=tmp_path / "worker.log", concurrency=4) as worker,
            create_app(settings) as producer,
        ):
            store = open_store(settings)
            # Given 60 jobs whose runs were created, and noted, on the primary and its replica
            before = submit(producer, store, 60, "before")
            wait_until(lambda: all(_has_run(store, j) for j in before), timeout_s=180, what="the first runs noted")
            assert replicated(client)
            # And a replica that stopped applying the primary's writes, and 40 jobs submitted since, their runs
            # created on Extend
            group.hold_replica()
            lagged = submit(producer, store, 40, "lagged")
            wait_until(lambda: set(lagged) <= set(runs_per_job(emulator)), timeout_s=180, what="the lagged runs")
            assert not replicated(client, timeout_ms=300)  # they really are on the primary alone
            # When the primary is SIGKILLed, and the replica lets go of the writes it held but never applied
            group.kill_primary()
            group.wait_promoted(group.replica)
            # Then every job finishes, those of the lost writes too
            job_ids = before + lagged
            wait_until(lambda: all_finished(client, job_ids), timeout_s=240, what="every job finished")
            outcomes = finished(client, job_ids)
            worker_log = worker.log_text()
            alive = worker.proc is not None and worker.proc.poll() is None
        client.close()
    assert {outcome["result"]["status"] for outcome in outcomes.values()} == {"PROCESSED"}
    # With exactly one run each: the lost jobs' runs were adopted by the recovery pass, never created again
    runs = runs_per_job(emulator)
    assert set(runs) == set(job_ids) and set(runs.values()) == {1}, runs.most_common(3)
    assert lines_with(worker_log, "after a Redis data loss", lagged) == set(lagged)
    assert not lines_with(worker_log, "after a Redis data loss", before)
    [recovery] = [line for line in worker_log.splitlines() if "recovery since" in line]
    assert f" adopted={len(lagged)} " in f"{recovery} ", recovery
    assert alive and "exited with" not in worker_log


def _has_run(store: RedisJobStore, job_id: str) -> bool:
    record = store.load(job_id)
    return record is not None and record.run_id is not None
