from __future__ import annotations

import redis

from extendq.worker.periodic import exclusive, repeat


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


def test_repeat_counts_a_step_s_own_time_towards_the_interval() -> None:
    # Given a step that takes 3 s of a 5 s interval, then one that takes 7 s, on a clock the test moves
    now = [100.0]
    took = iter([3.0, 7.0, 0.0])
    waits: list[float] = []

    def step() -> None:
        now[0] += next(took)

    def stop(timeout: float) -> bool:
        waits.append(timeout)
        now[0] += timeout
        return len(waits) == 3

    # When it repeats
    repeat(step, every_s=5.0, stop=stop, what="test", clock=lambda: now[0])
    # Then the next start comes 5 s after the last one began, and a tenth of the interval after a long step
    assert waits == [2.0, 0.5, 5.0]
