from __future__ import annotations

import redis

from extendq.worker.periodic import exclusive


def test_one_run_at_a_time_and_only_the_holder_releases(redis_client: redis.Redis) -> None:
    with exclusive(redis_client, "extendq:periodic:x", ttl_s=5) as first:
        with exclusive(redis_client, "extendq:periodic:x", ttl_s=5) as second:
            assert first and not second
        assert redis_client.exists("extendq:periodic:x")  # the refused run did not release the holder's lock
    assert not redis_client.exists("extendq:periodic:x")


def test_a_crashed_holder_blocks_only_until_the_ttl(redis_client: redis.Redis) -> None:
    redis_client.set("extendq:periodic:x", "someone-else", px=50)
    with exclusive(redis_client, "extendq:periodic:x", ttl_s=5) as held:
        assert not held
    redis_client.pexpire("extendq:periodic:x", 1)
    while redis_client.exists("extendq:periodic:x"):
        pass
    with exclusive(redis_client, "extendq:periodic:x", ttl_s=5) as held:
        assert held
