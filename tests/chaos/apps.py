"""Closing what a test's Celery app opened, so no socket is left for the garbage collector to warn about."""

from __future__ import annotations

from celery import Celery


def close_app(app: Celery) -> None:
    """Close the app's result-backend connections (the pub/sub one `.get()` uses too).

    The broker connections stay: kombu keeps one pool per broker URL for the whole process, shared by every
    app on that URL, and holds it (so it is never garbage).
    """
    backend = app.backend
    consumer = getattr(backend, "result_consumer", None)
    if consumer is not None:
        consumer.stop()
    client = getattr(backend, "client", None)
    if client is not None:
        client.connection_pool.disconnect()
    app.close()
