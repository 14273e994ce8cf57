"""asyncio producers (FastAPI, Starlette, aiohttp): submit a job and await its result without blocking the loop.

```python
job_id = await submit_async(workflow="workflow_invoice", file={"url": url})
run = await result_async(job_id, timeout=600)   # the terminal run, or the job's error raised
```

Waiting: the Redis result backend publishes every state it stores on the channel `celery-task-meta-<id>`.
While any result is awaited on an event loop, one listener holds one pub/sub connection (redis.asyncio)
for all of them, and a few pooled connections for GETs: each wait subscribes, then GETs the key once (a
result stored before the subscription is read there), then GETs again every few seconds (a publish lost
with a dropped connection costs that much delay, never the result). The listener closes with the last wait.
One connection for all, not one each: opening a connection costs the loop about a millisecond of Python,
and a hundred waits starting at once would stall it for a tenth of a second.

Sending: Celery's own producer, once per submit, in one sender thread of the process: one short call
(well under a millisecond on a local broker) with Celery's routing, serialisation and connection pool
unchanged. One thread, not the loop's default pool: dozens of threads running Python at once would each
take the GIL in turn, and the loop would wait behind all of them.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Unpack

from celery import states
from redis import asyncio as aioredis

from extendq.config.celery_redis import is_celery_redis_url
from extendq.config.redis_connection import async_redis_client
from extendq.config.settings import Settings, get_settings
from extendq.config.tenants import known_tenants
from extendq.errors import ConfigError
from extendq.tasks.celery import get_app
from extendq.tasks.producer import JobSpec, build_request, enqueue, secrets_key_of

if TYPE_CHECKING:
    from celery import Celery

log = logging.getLogger("extendq.aio")
_RECHECK_S = 5.0
_GET_CONNECTIONS = 8
_sender: ThreadPoolExecutor | None = None
_sender_lock = threading.Lock()
_listeners: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Listener]] = weakref.WeakKeyDictionary()


async def submit_async(*, app: Celery | None = None, **spec: Unpack[JobSpec]) -> str:
    """Validate a job request and queue it; the job id. Same keywords as `extendq.submit`.

    Raises `extendq.errors.InvalidJobRequest` (nothing queued) when the request is malformed.
    """
    settings = get_settings()
    built = build_request(secrets_key=secrets_key_of(settings), tenants=known_tenants(settings), **spec)
    result = await asyncio.get_running_loop().run_in_executor(_sending_thread(), enqueue, app or get_app(), built)
    return str(result.id)


async def result_async(job_id: str, *, timeout: float | None = None, app: Celery | None = None) -> Any:
    """The job's terminal run once it is stored; the job's error is raised when it failed.

    Raises `TimeoutError` after `timeout` seconds (the job goes on).
    """
    celery_app = app or get_app()
    backend: Any = celery_app.backend  # a KeyValueStoreBackend (Redis): results under `celery-task-meta-<id>`
    url = str(celery_app.conf.result_backend or "")
    if not is_celery_redis_url(url):
        raise ConfigError(f"result_async needs a Redis result backend, not {url.split(':', 1)[0]!r}")
    loop = asyncio.get_running_loop()
    by_url = _listeners.setdefault(loop, {})
    listener = by_url.get(url)
    if listener is None:
        listener = by_url[url] = _Listener(_backend_client(celery_app), on_idle=lambda: by_url.pop(url, None))
    meta = await listener.wait(backend.get_key_for_task(job_id).decode(), backend, timeout)
    return _outcome(backend, meta)


def _backend_client(app: Celery) -> aioredis.Redis:
    """A client of the result backend's Redis, at most a few connections: from the settings of an extendq app (its
    TLS options, password, Sentinels), else from the app's own URL and TLS options."""
    settings = getattr(app, "settings", None)
    if isinstance(settings, Settings):
        return async_redis_client(settings, settings.result_backend, max_connections=_GET_CONNECTIONS)
    tls = app.conf.redis_backend_use_ssl or {}
    url = str(app.conf.result_backend)
    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=_GET_CONNECTIONS, timeout=None, **tls)
    return aioredis.Redis.from_pool(pool)  # owns the pool: closing the client closes its connections


class _Listener:
    """The results awaited on one event loop from one Redis: one pub/sub connection, a few for GETs."""

    def __init__(self, client: aioredis.Redis, *, on_idle: Any) -> None:
        self._client = client
        self._pubsub = self._client.pubsub()
        self._queues: dict[str, set[asyncio.Queue[Any]]] = {}
        self._lock = asyncio.Lock()  # subscribe and unsubscribe one at a time on the shared connection
        self._reader: asyncio.Task[None] | None = None
        self._users = 0
        self._on_idle = on_idle

    async def wait(self, key: str, backend: Any, timeout: float | None) -> dict[str, Any]:
        """The result's meta once it is ready; `TimeoutError` after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._users += 1
        try:
            await self._join(key, queue)
            raw = await self._client.get(key)  # after subscribing: stored in between, it is read here or published
            while (meta := _ready(backend, raw)) is None:
                left = _RECHECK_S if deadline is None else min(_RECHECK_S, deadline - time.monotonic())
                if left <= 0:
                    raise TimeoutError(f"job {key.removeprefix('celery-task-meta-')} not finished after {timeout} s")
                try:
                    raw = await asyncio.wait_for(queue.get(), left)
                except TimeoutError:
                    raw = await self._client.get(key)
            return meta
        finally:
            await self._leave(key, queue)

    async def _join(self, key: str, queue: asyncio.Queue[Any]) -> None:
        async with self._lock:
            if key not in self._queues:
                self._queues[key] = set()
                await self._pubsub.subscribe(key)
            self._queues[key].add(queue)
            if self._reader is None:
                self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _leave(self, key: str, queue: asyncio.Queue[Any]) -> None:
        self._users -= 1
        async with self._lock:
            queues = self._queues.get(key, set())
            queues.discard(queue)
            if not queues and self._queues.pop(key, None) is not None and self._users:
                await self._pubsub.unsubscribe(key)
        if self._users == 0:
            await self._close()

    async def _read(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except (aioredis.ConnectionError, aioredis.TimeoutError) as exc:
                log.warning("result listener lost its connection, reconnecting: %s", exc)
                await asyncio.sleep(0.5)
                continue
            if message is not None and message.get("type") == "message":
                channel = message["channel"]
                for queue in self._queues.get(channel.decode() if isinstance(channel, bytes) else channel, ()):
                    queue.put_nowait(message["data"])

    async def _close(self) -> None:
        self._on_idle()  # a wait starting from now opens a new listener
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        await self._pubsub.aclose()
        await self._client.aclose()


def _ready(backend: Any, raw: bytes | str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    meta: dict[str, Any] = backend.decode_result(raw)
    return meta if meta.get("status") in states.READY_STATES else None


def _outcome(backend: Any, meta: dict[str, Any]) -> Any:
    if meta["status"] == states.SUCCESS:
        return meta["result"]
    error = meta["result"]
    if isinstance(error, BaseException):
        raise error
    raise backend.exception_to_python(error)


def _sending_thread() -> ThreadPoolExecutor:
    """The process's one sender thread, started on first use."""
    global _sender
    with _sender_lock:
        if _sender is None:
            _sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="extendq-submit")
        return _sender
