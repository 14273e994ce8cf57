"""`extendq watch` and the dashboard's actions: an ACTION entry on the events stream (someone's cancel or retry) is
passed on as an event but changes nothing in the live view."""

from __future__ import annotations

import redis
from rich.console import Console

from extendq.cli.views import EventFeed
from extendq.worker.joblog import action_event
from extendq.worker.keys import Keys
from extendq.worker.store import RedisJobStore

KEYS = Keys("extendq:")


def _render(feed: EventFeed) -> str:
    console = Console(width=200, record=True)
    console.print(feed.view())
    return console.export_text()


def test_an_action_is_not_a_job_in_flight_nor_a_finish(redis_client: redis.Redis) -> None:
    feed = EventFeed(redis_client, KEYS)
    # When a dashboard action on an unknown job is applied
    assert feed._apply(action_event("retried-job", "retry", by="token", detail="replayed as job new-1")) == 0
    # Then the job is not shown in flight, nor finished
    assert feed.active == {} and list(feed.finished) == []
    # When a job runs, someone cancels it, and it finishes
    assert feed._apply({"job_id": "j", "state": "RUNNING", "status": "PROCESSING"}) == 0
    assert feed._apply(action_event("j", "cancel", by="alice")) == 0
    # Then its running entry is left as it was, and only its finish is counted
    assert feed.active["j"]["state"] == "RUNNING"
    assert feed._apply({"job_id": "j", "state": "SUCCESS", "status": "CANCELLED"}) == 1
    assert feed.active == {} and [event["state"] for event in feed.finished] == ["SUCCESS"]


def test_actions_read_from_the_stream_leave_the_view_as_it_was(redis_client: redis.Redis) -> None:
    # Given a finished job on the stream, then a retry of it from the dashboard
    store = RedisJobStore(redis_client, keys=KEYS, result_ttl_s=60)
    store.emit({"job_id": "old", "state": "FAILURE", "error": "rejected"})
    store.emit(action_event("old", "retry", by="token", detail="replayed as job new-1"))
    feed = EventFeed(redis_client, KEYS)
    # When the view starts from the stream's tail
    feed._remember_recent()
    # Then only the finish is among the last finished
    assert [(event["job_id"], event["state"]) for event in feed.finished] == [("old", "FAILURE")]
    # When a cancel is read from the stream as `watch` reads it
    last = feed._last_id()
    store.emit(action_event("running", "cancel", by="alice", detail="cancel sent to the workers"))
    events = feed._read(last, None)
    # Then it is passed on whole, counts for nothing, and the view does not show it
    assert [(event["job_id"], event["state"], event["action"], event["by"]) for event in events] == [
        ("running", "ACTION", "cancel", "alice")
    ]
    assert sum(feed._apply(event) for event in events) == 0
    shown = _render(feed)
    assert "running" not in shown and "ACTION" not in shown and "old" in shown
