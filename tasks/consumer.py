"""The worker's broker consumer: Celery's, surviving a broker that restarts under it.

Celery 5.7 handles a lost broker connection by collecting the connection (which lets go of its transport's
settings) and then closing it; with the Redis transport the close restores unacknowledged messages, reads
those settings, and raises `AttributeError` ('NoneType' object has no attribute 'hostname'). Celery calls it an
unrecoverable error and the worker exits, so a Redis restart could stop the pool (seen with a restart under
load). Here that close is allowed to fail: the consumer connects again as it does after any connection loss.
The messages it could not restore come back after the visibility timeout, and the due set drives their jobs
again before that, so nothing waits for them.

The same fault ends a worker later too: a task that was running when the connection was lost finishes after the
consumer connected again, and its acknowledgement goes to the old connection's channel, whose transport was let go
(`AttributeError` again, raised in the consumer's loop). Such a message is left unacknowledged here: it stays in
the broker's unacked set, comes back after the visibility timeout, and does nothing then (its job's claim was used).

It also tries again sooner: kombu waits 2 s, then 4, 6 ... up to 30 s between rounds of attempts, so a Redis failover
of two or three seconds left the pool idle for six. Here the waits are 0.5 s, 1, 1.5 ... up to 4 s.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer
from vine import promise

log = logging.getLogger("extendq.worker")
_RECONNECT = {"interval_start": 0.5, "interval_step": 0.5, "interval_max": 4.0}


class Consumer(CeleryConsumer):
    """Celery's consumer, reconnecting even when closing the lost connection fails."""

    def on_connection_error_after_connected(self, exc: Exception) -> None:
        try:
            super().on_connection_error_after_connected(exc)
        except AttributeError as failed:  # the close of an already collected connection (see the module)
            log.warning("the lost broker connection could not be closed cleanly (%s); connecting again", failed)

    def ensure_connected(self, conn: Any) -> Any:
        """Celery's, with shorter waits between attempts (see the module)."""
        conn.ensure_connection = partial(conn.ensure_connection, **_RECONNECT)
        try:
            return super().ensure_connected(conn)
        finally:
            del conn.ensure_connection  # the class's own again

    def create_task_handler(self, promise: Any = promise) -> Callable[[Any], Any]:
        """Celery's handler of task messages, each message settled only while its connection lives (see the module)."""
        handle = super().create_task_handler(promise)

        def on_task_received(message: Any) -> Any:
            message.ack_log_error = partial(settle_unless_gone, message, message.ack_log_error, "acknowledged")
            message.reject_log_error = partial(settle_unless_gone, message, message.reject_log_error, "rejected")
            return handle(message)

        return on_task_received


def settle_unless_gone(message: Any, settle: Callable[..., Any], what: str, *args: Any, **kwargs: Any) -> Any:
    """Acknowledge or reject `message` with `settle`, unless its broker connection was lost and let go meanwhile."""
    transport = getattr(message.channel, "connection", None)
    if transport is not None and getattr(transport, "client", transport) is None:
        log.warning(
            "message %s was not %s: its broker connection was lost since; it comes back after the visibility timeout",
            message.delivery_tag,
            what,
        )
        return None
    return settle(*args, **kwargs)
