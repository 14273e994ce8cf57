"""The data-loss watch across primaries: a marker written on another replication id (a failover, a restart) starts
one recovery pass, whichever workers notice it; the real failover is in tests/e2e/test_failover.py."""

from __future__ import annotations

import redis

from extendq.worker.dataloss import INTACT, RECOVERING, DataLossWatch, intact, primary
from extendq.worker.keys import Keys
from extendq.worker.recover import Recovery
from extendq.worker.store import RedisJobStore
from tests.support.fakes import FakeApi

KEYS = Keys("extendq-dataloss:")


def watch_on(client: redis.Redis) -> DataLossWatch:
    store = RedisJobStore(client, keys=KEYS, result_ttl_s=60)
    return DataLossWatch(recovery=Recovery(api=FakeApi(), store=store), since_s=60)


def marker(client: redis.Redis) -> str | None:
    value = client.get(KEYS.dataset)
    return None if value is None else value.decode() if isinstance(value, bytes) else str(value)


def test_the_marker_names_the_primarys_replication_id(redis_client: redis.Redis) -> None:
    # When a watch looks at a Redis with no marker yet
    assert watch_on(redis_client).check() is None
    # Then it marks the dataset intact on this primary's replication id
    server = primary(redis_client)
    assert server is not None and marker(redis_client) == f"{INTACT}:{server.replication_id}" == intact(server)


def test_a_marker_of_another_primary_starts_one_pass_whoever_notices(redis_client: redis.Redis) -> None:
    # Given a dataset marked intact by a primary that is gone (a replica was promoted since)
    redis_client.set(KEYS.dataset, f"{INTACT}:0123456789abcdef0123456789abcdef01234567")
    watches = [watch_on(redis_client) for _ in range(3)]
    # When three workers look
    passes = [watch.check() for watch in watches]
    # Then one of them ran a recovery pass, and the dataset is marked intact on the new primary
    assert [counts is not None for counts in passes] == [True, False, False], passes
    assert marker(redis_client) == intact(primary(redis_client))
    # And nobody runs another
    assert [watch.check() for watch in watches] == [None, None, None]


def test_a_pass_cut_short_is_run_again(redis_client: redis.Redis) -> None:
    # Given a pass flagged and not completed (the worker running it died)
    redis_client.set(KEYS.dataset, RECOVERING)
    # When a watch looks
    counts = watch_on(redis_client).check()
    # Then it runs the pass
    assert counts is not None and counts["listed"] == 0
    assert marker(redis_client) == intact(primary(redis_client))


def test_a_marker_of_the_earlier_form_is_brought_up_to_date_without_a_pass(redis_client: redis.Redis) -> None:
    redis_client.set(KEYS.dataset, INTACT)
    assert watch_on(redis_client).check() is None
    assert marker(redis_client) == intact(primary(redis_client))


def test_a_marker_deleted_without_a_restart_is_written_again_without_a_pass(redis_client: redis.Redis) -> None:
    watch = watch_on(redis_client)
    assert watch.check() is None
    redis_client.delete(KEYS.dataset)
    assert watch.check() is None
    assert marker(redis_client) == intact(primary(redis_client))
