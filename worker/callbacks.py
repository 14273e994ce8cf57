"""Callbacks: the producer's own Celery tasks, sent by name once a job finished, through an outbox in Redis.

A job that asked for `on_success` / `on_failure` gets its callback written to the outbox stream
(`Keys.outbox`) by the same Lua script that finishes it, so a finished job always has its callback
queued, whichever path finished it (a check, a webhook, a list sweep, reconciliation), and only the
first finish writes one. A relay in every worker's main process reads the stream as one consumer group,
sends each callback as a Celery task, then acknowledges and deletes the entry.

Delivery is at least once: a relay that dies between sending and acknowledging leaves the entry pending,
and another relay sends it again after `claim_idle_s`. Every send of one callback carries the same task
id, `callback_id(job_id, kind)`, for the producer's task to de-duplicate on (`self.request.id`). A callback
task that fails is retried by the producer's own Celery rules; the Extend job is never run again.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import redis

from extendq.errors import ExtendqError
from extendq.worker.keys import Keys
from extendq.worker.records import JobRecord

log = logging.getLogger("extendq.callbacks")

SUCCESS, FAILURE = "success", "failure"
DEFAULT_QUEUE = "celery"  # Celery's own default queue: where a producer's worker listens unless told otherwise
GROUP = "relay"
_NAMESPACE = uuid.UUID("0b7f3c52-6a1e-4f0e-9d0c-5c2f4a8e7d13")


def callback_id(job_id: str, kind: str) -> str:
    """The task id every send of a job's `kind` (success or failure) callback carries: the same each time."""
    return str(uuid.uuid5(_NAMESPACE, f"{job_id}:{kind}"))


@dataclass(frozen=True, kw_only=True)
class Callback:
    """One callback to send: the producer's task name and queue, and its positional arguments."""

    id: str
    task: str
    queue: str
    job_id: str
    kind: str
    args: list[Any]

    def encode(self) -> str:
        """The outbox entry's text."""
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def decode(cls, text: str) -> Callback:
        """The callback of an outbox entry; ValueError when it is not one."""
        try:
            return cls(**json.loads(text))
        except (TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a callback entry: {exc}") from None


def success_callback(record: JobRecord, run: dict[str, Any]) -> str | None:
    """The encoded `on_success` callback of a job that finished with a terminal run: `(job_id, run)`."""
    return _callback(record, SUCCESS, record.request.on_success, run)


def failure_callback(record: JobRecord, error: ExtendqError) -> str | None:
    """The encoded `on_failure` callback of a job that got no terminal run: `(job_id, error_info)`."""
    return _callback(record, FAILURE, record.request.on_failure, error_info(record.job_id, error))


def error_info(job_id: str, error: ExtendqError) -> dict[str, Any]:
    """A failure as plain JSON: `{job_id, error (kind), type, message, run_id}`."""
    return {
        "job_id": job_id,
        "error": getattr(error, "kind", "invalid_request"),
        "type": type(error).__name__,
        "message": str(error),
        "run_id": getattr(error, "run_id", None),
    }


def _callback(record: JobRecord, kind: str, task: str | None, payload: Any) -> str | None:
    if task is None:
        return None
    queue = record.request.callback_queue or DEFAULT_QUEUE
    job_id = record.job_id
    callback = Callback(
        id=callback_id(job_id, kind), task=task, queue=queue, job_id=job_id, kind=kind, args=[job_id, payload]
    )
    return callback.encode()


Send = Callable[[Callback], None]


@dataclass(kw_only=True)
class CallbackRelay:
    """Sends the outbox's callbacks; every worker runs one, and the consumer group gives each entry to one."""

    client: redis.Redis
    keys: Keys
    send: Send
    consumer: str
    block_s: float = 1.0
    claim_idle_s: float = 30.0
    batch: int = 100

    def relay_once(self) -> int:
        """Send callbacks a dead relay left (idle past `claim_idle_s`), then new ones; how many were sent."""
        self._ensure_group()
        sent = self._deliver(self._claim_stale())
        # Never block while there was work: the next pass comes at once.
        return sent + self._deliver(self._read_new(block=sent == 0))

    def run(self, stop: threading.Event) -> None:
        """Relay until `stop` is set; Redis or broker trouble is logged and the loop goes on after a second."""
        try:
            self.forget_gone_consumers()
        except redis.RedisError as exc:
            log.warning("could not tidy the callback relay's consumers: %s", exc)
        while not stop.is_set():
            try:
                self.relay_once()
            except Exception as exc:  # the relay thread must outlive a Redis or broker outage
                log.warning("callback relay pass failed, retrying in 1s: %s", exc)
                stop.wait(1.0)

    def forget_gone_consumers(self, idle_s: float = 86400.0) -> int:
        """Remove consumers (relays of stopped workers) idle for `idle_s` with nothing pending; how many."""
        self._ensure_group()
        gone = [
            str(consumer["name"])
            for consumer in self.client.xinfo_consumers(self.keys.outbox, GROUP)
            if int(consumer["pending"]) == 0 and int(consumer["idle"]) >= idle_s * 1000
        ]
        for name in gone:
            self.client.xgroup_delconsumer(self.keys.outbox, GROUP, name)
        return len(gone)

    def _ensure_group(self) -> None:
        try:
            self.client.xgroup_create(self.keys.outbox, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _claim_stale(self) -> list[tuple[str, dict[str, str]]]:
        reply = self.client.xautoclaim(
            self.keys.outbox, GROUP, self.consumer, min_idle_time=int(self.claim_idle_s * 1000), count=self.batch
        )
        return [(entry_id, fields) for entry_id, fields in reply[1] if fields is not None]

    def _read_new(self, *, block: bool) -> list[tuple[str, dict[str, str]]]:
        streams: Any = self.client.xreadgroup(
            GROUP,
            self.consumer,
            {self.keys.outbox: ">"},
            count=self.batch,
            block=int(self.block_s * 1000) if block else None,
        )
        return [(entry_id, fields) for _, entries in streams or [] for entry_id, fields in entries]

    def _deliver(self, entries: list[tuple[str, dict[str, str]]]) -> int:
        sent = 0
        for entry_id, fields in entries:
            try:
                callback = Callback.decode(str(fields.get("callback", "")))
            except ValueError as exc:
                log.error("dropping outbox entry %s: %s", entry_id, exc)
                self._done(entry_id)
                continue
            # A send that raises leaves the entry pending: it is claimed again after claim_idle_s.
            self.send(callback)
            self._done(entry_id)
            sent += 1
            log.info(
                "job %s: %s callback %s sent (task id %s)", callback.job_id, callback.kind, callback.task, callback.id
            )
        return sent

    def _done(self, entry_id: str) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.xack(self.keys.outbox, GROUP, entry_id)
        pipe.xdel(self.keys.outbox, entry_id)
        pipe.execute()
