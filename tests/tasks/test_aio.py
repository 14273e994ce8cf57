"""asyncio producers: `result_async` reads the result backend without blocking the loop; `submit_async` queues."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
import redis
from celery import Celery
from redis import asyncio as aioredis

from extendq.config.settings import Settings
from extendq.errors import InvalidJobRequest, RunRejected
from extendq.tasks import aio
from extendq.tasks.aio import result_async, submit_async
from extendq.tasks.celery import create_app
from extendq.worker.models import JobState

RUN = {"id": "workflow_run_1", "status": "PROCESSED"}


@pytest.fixture
def app(settings: Settings, redis_client: redis.Redis) -> Celery:
    return create_app(settings)


def _later(delay_s: float, action: Any) -> threading.Thread:
    def run() -> None:
        time.sleep(delay_s)
        action()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_result_already_stored_is_returned_at_once(app: Celery) -> None:
    app.backend.store_result("job-done", RUN, "SUCCESS")
    assert asyncio.run(result_async("job-done", app=app, timeout=1)) == RUN


def test_the_wait_ends_when_the_result_is_published_not_at_the_next_look(
    app: Celery, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a job in flight that has published progress, and ends 0.3 s later, awaited with no timeout while the
    # waiter's own re-check is an hour away: only the publish can end the wait
    monkeypatch.setattr(aio, "_RECHECK_S", 3600.0)
    app.backend.store_result("job-1", {"run_status": "PROCESSING"}, JobState.RUNNING.value)
    ending = _later(0.3, lambda: app.backend.store_result("job-1", RUN, "SUCCESS"))
    beats: list[str] = []

    async def main() -> Any:
        async def heartbeat() -> None:
            while True:
                beats.append("beat")
                await asyncio.sleep(0.01)

        ticking = asyncio.create_task(heartbeat())
        run = await result_async("job-1", app=app)
        beats.append("result")
        ticking.cancel()
        return run

    run = asyncio.run(main())
    ending.join()
    # Then the run came with the publish, and the event loop went on running while the wait was on
    assert run == RUN
    assert beats[-1] == "result" and beats.count("beat") >= 2


def test_a_failed_job_raises_its_error(app: Celery) -> None:
    app.backend.store_result("job-2", RunRejected("workflow_x refused the request (400)", None, 400), "FAILURE")
    with pytest.raises(RunRejected, match="refused the request"):
        asyncio.run(result_async("job-2", app=app, timeout=1))


def test_waiting_too_long_raises_timeout(app: Celery) -> None:
    with pytest.raises(TimeoutError, match="job-3 not finished after 0.2 s"):
        asyncio.run(result_async("job-3", app=app, timeout=0.2))


def test_a_hundred_waits_share_one_subscription_and_leave_no_connection_behind(
    app: Celery, redis_client: redis.Redis
) -> None:
    # Given a hundred jobs awaited at once (other tests' subscribers on this database are not this test's)
    subscribed_before = _subscribed(redis_client)
    app.backend.get_key_for_task("warm")  # Celery imports its Redis backend on first use, once per process
    ids = [f"job-{index}" for index in range(100)]

    def finish_all() -> None:
        for job_id in ids:
            app.backend.store_result(job_id, {**RUN, "id": job_id}, "SUCCESS")

    async def main() -> tuple[list[Any], list[int]]:
        waits = asyncio.gather(*(result_async(job_id, app=app, timeout=60) for job_id in ids))
        # When every wait has subscribed (one listener for all: each channel has one subscriber)
        counts = [count for _, count in await _numsub(ids)]
        deadline = time.monotonic() + 30
        while sum(counts) < len(ids) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
            counts = [count for _, count in await _numsub(ids)]
        # And the jobs then finish in a burst
        await asyncio.get_running_loop().run_in_executor(None, finish_all)
        return await waits, counts

    async def _numsub(channels: list[str]) -> list[tuple[Any, int]]:
        async with aioredis.Redis.from_url(app.conf.result_backend) as client:
            return list(await client.pubsub_numsub(*(f"celery-task-meta-{c}" for c in channels)))

    runs, counts = asyncio.run(main())
    # Then every run came back, each channel had exactly one subscriber, and no connection is left subscribed
    assert [run["id"] for run in runs] == ids
    assert counts == [1] * len(ids)
    deadline = time.monotonic() + 30  # the listener closes its connection as the last wait ends
    while (left := _subscribed(redis_client) - subscribed_before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left


def _subscribed(client: redis.Redis) -> set[str]:
    """Ids of the connections subscribed to a channel on the client's database."""
    db = str(client.connection_pool.connection_kwargs["db"])
    return {c["id"] for c in client.client_list() if int(c.get("sub", 0)) > 0 and c.get("db") == db}


def test_submit_async_queues_a_valid_request_and_refuses_a_bad_one() -> None:
    broker = Celery(broker="memory://", backend="cache+memory://")

    async def main() -> str:
        with pytest.raises(InvalidJobRequest, match="unknown tenant"):
            await submit_async(app=broker, workflow="w", file={"id": "f"}, tenant="nobody")
        return await submit_async(app=broker, workflow="w", file={"id": "f"}, job_key="k-1")

    from extendq.tasks.producer import job_id_for

    assert asyncio.run(main()) == job_id_for("k-1")
