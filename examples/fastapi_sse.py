"""Stream a job's progress to a browser with server-sent events, read from extendq's events stream.

    pip install fastapi                                  # (the dev install has it)
    uvicorn --factory examples.fastapi_sse:create_app --port 8001
    extendq submit samples/invoices/northwind-1042.txt --workflow workflow_invoice --json   # prints a job id
    open http://127.0.0.1:8001/jobs/<job id>             # a page following the job
    curl -N http://127.0.0.1:8001/jobs/<job id>/events   # the stream itself

Workers append one entry per job state change to the Redis stream `extendq:events` (fields job_id, run_id,
workflow_id, state, status, error; state RUNNING while the run moves on, then SUCCESS or FAILURE once). The
endpoint follows that stream with `XREAD BLOCK` through redis.asyncio, so a waiting client costs one Redis
connection and no thread, and the event loop never blocks; it sends the entries of one job and ends with its
terminal event. A job that had already finished gets its terminal event at once, from the result backend.

Each SSE event has the stream entry's id as `id:` (EventSource sends it back as Last-Event-ID when it
reconnects, and the stream resumes after it), the job's state as `event:` (running, success, failure) and the
entry's fields as JSON `data:`. Close the EventSource on the terminal event, or it reconnects.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

import redis.asyncio as aioredis
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, StreamingResponse

TERMINAL_STATES = frozenset({"SUCCESS", "FAILURE"})
_READ_COUNT = 500
_Reply = list[tuple[str, list[tuple[str, dict[str, str]]]]]  # XREAD's answer, decoded


def create_app(
    redis_url: str | None = None,
    *,
    result_backend_url: str | None = None,
    key_prefix: str | None = None,
    block_ms: int = 5000,
) -> FastAPI:
    """The app; Redis URLs and key prefix default to extendq's settings (EXTENDQ_REDIS_URL, ...)."""
    if redis_url is None or key_prefix is None:
        from extendq.config.settings import get_settings

        settings = get_settings()
        redis_url = redis_url or settings.redis_url
        result_backend_url = result_backend_url or settings.result_backend
        key_prefix = key_prefix if key_prefix is not None else settings.key_prefix
    events = LazyRedis(redis_url)
    results = events if result_backend_url in (None, redis_url) else LazyRedis(result_backend_url)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await events.close()
        if results is not events:
            await results.close()

    app = FastAPI(title="extendq job progress", lifespan=lifespan)

    @app.get("/jobs/{job_id}/events")
    async def job_events(job_id: str, request: Request) -> StreamingResponse:
        """The job's events as server-sent events, ending with its terminal one."""
        follow = JobFollower(
            events.client, results.client, stream=f"{key_prefix}events", job_id=job_id, block_ms=block_ms
        )
        resume_from = request.headers.get("last-event-id")
        return StreamingResponse(
            follow.sse(resume_from, request.is_disconnected),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.get("/jobs/{job_id}", response_class=HTMLResponse)
    async def job_page(job_id: str) -> str:
        """A page that follows the job in the browser."""
        return _PAGE.replace("JOB_ID", json.dumps(job_id))

    return app


class LazyRedis:
    """One redis.asyncio client (a connection pool), opened lazily inside the server's event loop.

    A `rediss://` or `redis+sentinel://` URL is connected as extendq's settings say (EXTENDQ_REDIS_TLS_*, passwords,
    the Sentinels).
    """

    def __init__(self, url: str) -> None:
        self._url = url
        self._client: aioredis.Redis | None = None

    @property
    def client(self) -> aioredis.Redis:
        if self._client is None:
            self._client = _connect(self._url)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()


class JobFollower:
    """Reads one job's entries from the events stream, from where it ended when asked (or a resumed id)."""

    def __init__(
        self, events: aioredis.Redis, results: aioredis.Redis, *, stream: str, job_id: str, block_ms: int
    ) -> None:
        self._events = events
        self._results = results
        self._stream = stream
        self._job_id = job_id
        self._block_ms = block_ms

    async def sse(self, resume_from: str | None, disconnected: Callable[[], Awaitable[bool]]) -> AsyncIterator[str]:
        """The SSE text: each of the job's events, then its terminal one; comments keep an idle stream alive."""
        yield "retry: 3000\n\n"
        async for entry_id, fields in self.events(resume_from, disconnected):
            if entry_id is None:
                yield ": waiting\n\n"  # also how a closed connection is noticed while nothing happens
                continue
            head = f"id: {entry_id}\n" if entry_id else ""  # a rebuilt terminal event is no stream entry
            event = fields.get("state", "message").lower()
            yield f"{head}event: {event}\ndata: {json.dumps(fields, separators=(',', ':'))}\n\n"

    async def events(
        self, resume_from: str | None, disconnected: Callable[[], Awaitable[bool]]
    ) -> AsyncIterator[tuple[str | None, dict[str, str]]]:
        """`(entry id, fields)` of the job's events up to its terminal one; `(None, {})` after each idle wait.

        A job that had finished already gives one rebuilt terminal event, with an empty entry id.
        """
        # Where the stream ends is read before the job's result is looked at: a worker publishes the result
        # first and appends the terminal event after it, so an end between the two reads is in the stream.
        last = resume_from or await self._stream_end()
        finished = await self._finished()
        if finished is not None:
            yield "", finished
            return
        while not await disconnected():
            reply = cast(
                _Reply, await self._events.xread({self._stream: last}, count=_READ_COUNT, block=self._block_ms)
            )
            if not reply:
                yield None, {}
                continue
            for _stream, entries in reply:
                for entry_id, fields in entries:
                    last = entry_id
                    if fields.get("job_id") != self._job_id:
                        continue
                    yield entry_id, fields
                    if fields.get("state") in TERMINAL_STATES:
                        return

    async def _stream_end(self) -> str:
        newest = await self._events.xrevrange(self._stream, count=1)
        return str(newest[0][0]) if newest else "0-0"

    async def _finished(self) -> dict[str, str] | None:
        """The terminal event of a job that already finished, rebuilt from its result (Celery's result key)."""
        raw = await self._results.get(f"celery-task-meta-{self._job_id}")
        meta: dict[str, Any] = json.loads(raw) if raw else {}
        state, result = meta.get("status"), meta.get("result")
        if state not in TERMINAL_STATES:
            return None
        event = {
            "job_id": self._job_id,
            "run_id": "",
            "workflow_id": "",
            "state": str(state),
            "status": "",
            "error": "",
        }
        if state == "SUCCESS" and isinstance(result, dict):
            workflow = result.get("workflow")
            event["run_id"] = str(result.get("id", ""))
            event["workflow_id"] = str(workflow.get("id", "")) if isinstance(workflow, dict) else ""
            event["status"] = str(result.get("status", ""))
        elif isinstance(result, dict):
            event["error"] = str(result.get("exc_type", ""))
        return event


_PAGE = """<!doctype html>
<meta charset="utf-8">
<title>extendq job</title>
<style>body { font: 14px system-ui, sans-serif; margin: 2em } li { margin: .2em 0 }</style>
<h1>Job <code id="job"></code></h1>
<ol id="events"></ol>
<script>
  const jobId = JOB_ID;
  document.getElementById("job").textContent = jobId;
  const list = document.getElementById("events");
  const source = new EventSource(`/jobs/${encodeURIComponent(jobId)}/events`);
  const show = (event) => {
    const data = JSON.parse(event.data);
    const item = document.createElement("li");
    item.textContent = `${data.state} ${data.status || ""} ${data.error || ""} ${data.run_id || ""}`;
    list.appendChild(item);
  };
  source.addEventListener("running", show);
  // The stream ends with the terminal event: close, or EventSource would reconnect.
  for (const name of ["success", "failure"]) {
    source.addEventListener(name, (event) => { show(event); source.close(); });
  }
</script>
"""


def _connect(url: str) -> aioredis.Redis:
    if not url.startswith(("rediss://", "redis+sentinel://")):
        return aioredis.Redis.from_url(url, decode_responses=True)
    from extendq.config.redis_connection import async_redis_client
    from extendq.config.settings import get_settings

    return async_redis_client(get_settings(), url, decode_responses=True)
