from __future__ import annotations

import redis
from rich.console import Console

from extendq.cli.views import EventFeed, finished_table, status_table, usage_table
from extendq.worker.keys import Keys


def _render(renderable: object) -> str:
    console = Console(width=200, record=True)
    console.print(renderable)
    return console.export_text()


def test_a_reviewed_event_is_shown_with_the_finished_jobs_but_not_counted_again(redis_client: redis.Redis) -> None:
    feed = EventFeed(redis_client, Keys("extendq:"))
    assert feed._apply({"job_id": "j", "state": "RUNNING", "status": "PROCESSING"}) == 0
    assert feed._apply({"job_id": "j", "state": "SUCCESS", "status": "NEEDS_REVIEW"}) == 1
    assert feed._apply({"job_id": "j", "state": "REVIEWED", "status": "PROCESSED"}) == 0
    assert feed.active == {} and [event["state"] for event in feed.finished] == ["REVIEWED", "SUCCESS"]


def test_status_table_has_a_review_column_only_when_a_job_is_watched() -> None:
    row = dict.fromkeys(("workflow_id", "run_id", "run_status", "checks", "error", "message", "review_status"))
    plain = {**row, "job_id": "a", "state": "SUCCESS"}
    watched = {**plain, "job_id": "b", "review_status": "REJECTED"}
    assert "review" not in _render(status_table([plain]))
    assert "REJECTED" in _render(status_table([plain, watched]))


def test_usage_table_lists_days_and_the_total() -> None:
    part = {"credits": 3.0, "runs": 2, "by_workflow": {"wf": {"credits": 3.0, "runs": 2}}, "by_tag": {}}
    report = {"days": [{"day": "2026-11-28", **part}], "total": part, "pending_runs": 4}
    text = _render(usage_table(report))
    assert "2026-11-28" in text and "total" in text and "wf 3" in text
    assert "2 finished runs; 4 more finished runs not counted yet" in " ".join(text.split())


def test_at_80_columns_states_and_run_statuses_stay_whole_and_empty_columns_go() -> None:
    job = {"job_id": "1f0c2b8e-4d0a-4c55-9a43-1b7a7f0e9d21", "workflow_id": "workflow_invoice", "error": None}
    row = {**job, "state": "SUCCESS", "run_id": "workflow_run_xKm9pNv3qWsY_jL2tR5Dh", "run_status": "NEEDS_REVIEW"}
    console = Console(width=80, record=True)
    console.print(status_table([{**row, "checks": 12, "message": None, "review_status": None, "replay_of": None}]))
    shown = console.export_text()
    assert "NEEDS_REVIEW" in shown and "SUCCESS" in shown and "replay of" not in shown
    finished = {**job, "state": "FAILURE", "run_status": None, "run_id": None, "tenant": None, "replay_of": None}
    console.print(finished_table([{**finished, "finished_at": 0.0, "error": "rejected"}]))
    listed = console.export_text()
    assert "FAILURE" in listed and "1 job" in listed
    assert "tenant" not in listed and "run status" not in listed and "replay of" not in listed
