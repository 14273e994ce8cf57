"""The callback relay's Celery side: sends the producer's own tasks by name (see `worker.callbacks`)."""

from __future__ import annotations

import os
import socket
import threading

from extendq.config.settings import Settings
from extendq.tasks.base import store_for
from extendq.tasks.celery import get_app
from extendq.worker.callbacks import Callback, CallbackRelay


def send_callback(callback: Callback) -> None:
    """Send one callback as the producer's task: `task(job_id, run_or_error)`, with its fixed task id."""
    get_app().send_task(callback.task, args=callback.args, task_id=callback.id, queue=callback.queue)


def start_relay(settings: Settings, stop: threading.Event) -> threading.Thread:
    """Run this worker's callback relay in a daemon thread until `stop` is set."""
    store = store_for(settings)
    relay = CallbackRelay(
        client=store.client,
        keys=store.keys,
        send=send_callback,
        consumer=f"{socket.gethostname()}-{os.getpid()}",
        block_s=settings.callback_block_s,
        claim_idle_s=settings.callback_claim_idle_s,
    )
    thread = threading.Thread(target=relay.run, args=(stop,), name="extendq-callbacks", daemon=True)
    thread.start()
    return thread
