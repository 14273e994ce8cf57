"""Two real beat processes on one Redis: each periodic job still fires once per period, and a standby takes over."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import pytest
import redis

from tests.support.beat import BeatProcess

pytestmark = pytest.mark.e2e

PERIODS = {"extendq.reconcile": 2.0, "extendq.roll_up_usage": 3.0}
SCHEDULE = {"reconcile": {"every": "2s"}, "usage": {"every": "3s"}, "review": None}


def firings(client: redis.Redis) -> dict[str, list[float]]:
    """When each periodic task was sent, from the messages waiting in its queue (no worker consumes here).

    Beat stamps every firing with `expires` = firing time + period (config/beat.py), so the message says
    when it was sent, whichever beat sent it.
    """
    sent: dict[str, list[float]] = defaultdict(list)
    for raw in client.lrange("extendq.checks", 0, -1):
        headers = json.loads(raw)["headers"]
        task = headers["task"]
        sent[task].append(datetime.fromisoformat(headers["expires"]).timestamp() - PERIODS[task])
    return {task: sorted(times) for task, times in sent.items()}


def test_two_beats_fire_each_job_once_per_period_and_a_standby_takes_over(
    worker_env: dict[str, str], module_redis_url: str, tmp_path: Path
) -> None:
    # Given two beats on the same Redis (and no worker: the firings stay in the queue to be counted)
    env = {
        **worker_env,
        "EXTENDQ_REDIS_URL": module_redis_url,
        "EXTENDQ_BEAT_SCHEDULE": json.dumps(SCHEDULE),
        "EXTENDQ_BEAT_MAX_LOOP_INTERVAL_S": "0.5",
        "EXTENDQ_BEAT_LOCK_TIMEOUT_S": "3",
    }
    client = redis.Redis.from_url(module_redis_url, decode_responses=True)
    beats = [BeatProcess(env, log_path=tmp_path / f"beat-{n}.log") for n in range(2)]
    try:
        beats[0].start()
        started = time.time()  # firings begin once a beat is up, however long a loaded machine takes to start it
        beats[1].start()
        # When both run for 18 s, then the one firing dies without releasing its lock, and the other goes on
        time.sleep(18)
        # (the one firing now: on a loaded machine a beat stalled past its 3 s lock may have handed over)
        leader = max(beats, key=lambda beat: beat.last_firing)
        [standby] = [beat for beat in beats if beat is not leader]
        assert leader.last_firing, "no beat fired"
        leader.kill()
        killed = time.time()
        time.sleep(10)
        ended = time.time()
    finally:
        for beat in beats:
            beat.stop()
    # Then each job fired once per period: never two firings closer than most of a period, whichever beat
    sent = firings(client)
    assert set(sent) == set(PERIODS)
    for task, times in sent.items():
        period = PERIODS[task]
        gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
        assert min(gaps) > 0.75 * period, (task, gaps)
        # ... and kept firing: before the crash at every period, after it once the lock timed out (3 s)
        before = [t for t in times if t < killed]
        assert (killed - started) / period - 2 <= len(before) <= (killed - started) / period + 1, (task, times)
        after = [t for t in times if t > killed]
        assert after and after[0] - killed < 3 + 0.5 + period + 0.5, (task, times)
        assert len(after) >= (ended - killed - 4) / period - 1, (task, times)
    assert standby.leading and "Sending due task" in standby.log_text()
    client.close()
