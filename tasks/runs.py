"""The job tasks: start a job, advance it when due, cancel it. Thin: the work is in `worker.jobs`."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from celery import shared_task
from celery.signals import task_received, worker_process_init, worker_ready, worker_shutdown
from celery.worker import state as worker_state

from extendq.config.settings import get_settings
from extendq.errors import InvalidJobRequest
from extendq.tasks.base import get_runner, set_runner, store_for, sweepers_for
from extendq.tasks.bulk import send_adoptions
from extendq.tasks.callbacks import start_relay
from extendq.tasks.celery import get_app
from extendq.tasks.observe import serve_metrics, watch_pool
from extendq.worker.claims import ClaimKeeper
from extendq.worker.dataloss import DataLossWatch, watch_forever
from extendq.worker.dispatcher import Dispatcher
from extendq.worker.events import EventApplier, Outcome, busy_delay_s
from extendq.worker.extend import resolve_signed_payload
from extendq.worker.recover import Recovery
from extendq.worker.store import NEW_CLAIM
from extendq.worker.sweep import run_forever

log = logging.getLogger("extendq.tasks")
_dispatcher: Dispatcher | None = None
_claims: ClaimKeeper | None = None
_stopping = threading.Event()
# Due jobs go out several to a message once there are many: a message costs about as much worker CPU as a
# step, and a busy pool has more due jobs than slots anyway. A few due jobs go one to a message, in parallel.
_STEPS_PER_MESSAGE = 16
_SINGLE_BELOW = 32


@shared_task(name="extendq.run_workflow", bind=True)
def run_workflow(self: Any, /, *args: Any, **kwargs: Any) -> None:
    """Start a job: the task id is the job id; kwargs are the job request (see `worker.models.JobRequest`)."""
    runner = get_runner()
    if args:  # refuse the job with a typed error, not a TypeError nobody reads
        message = f"extendq.run_workflow takes the job request as keyword arguments; got {len(args)} positional"
        runner.publisher.failure(self.request.id, InvalidJobRequest(message))
        return
    runner.start_message(self.request.id, kwargs)


@shared_task(name="extendq.advance")
def advance(job_id: str, lease: float | str | None = None) -> None:
    """Take a due job's next step; the dispatcher sends this."""
    get_runner().advance(job_id, lease)


@shared_task(name="extendq.advance_many")
def advance_many(steps: list[tuple[str, float]]) -> None:
    """Take several due jobs' next steps, one after the other; the dispatcher sends this under load.

    A step that breaks (Redis or a bug) does not stop the others: its job stays claimed until its lease
    ends, then comes due again.
    """
    runner = get_runner()
    for job_id, lease in steps:
        try:
            runner.advance(job_id, lease)
        except Exception:
            log.exception("job %s: step failed, due again when its claim lapses", job_id)


@shared_task(name="extendq.cancel", ignore_result=False)
def cancel(job_id: str) -> bool:
    """Cancel a job: its Extend run if submitted, else the job itself. False when unknown or finished."""
    runner = get_runner()
    if not runner.request_cancel(job_id):
        return False
    runner.advance(job_id)
    return True


@shared_task(name="extendq.webhook_event", bind=True, max_retries=None)
def webhook_event(self: Any, event: dict[str, Any]) -> str:
    """Apply a verified Extend webhook event to its job (the receiver sends this)."""
    outcome = EventApplier(runner=get_runner()).apply(resolve_signed_payload(event))
    if outcome is Outcome.BUSY:
        # A step holds the job: look again shortly, never wait in the slot, and never give up (the receiver
        # answered 200, so Extend will not deliver the event again).
        raise self.retry(countdown=busy_delay_s(self.request.retries))
    return outcome.value


def send_due(claimed: Sequence[tuple[str, float]]) -> None:
    """Hand claimed due jobs to `advance` tasks over one producer connection; many go several to a message."""
    with get_app().producer_or_acquire() as producer:
        if len(claimed) < _SINGLE_BELOW:
            for job_id, lease in claimed:
                advance.apply_async(args=(job_id, lease), producer=producer)
            return
        for start in range(0, len(claimed), _STEPS_PER_MESSAGE):
            advance_many.apply_async(args=(list(claimed[start : start + _STEPS_PER_MESSAGE]),), producer=producer)


def claims_in_hand() -> list[tuple[str, float | str]]:
    """The claims (job id, claim) of the step and start messages this worker has taken from the broker and not
    finished (Celery's reserved requests, running ones included), read in the worker's main process."""
    for _ in range(3):
        try:
            requests = list(worker_state.reserved_requests)
            break
        except RuntimeError:  # the consumer changed the set while it was copied: copy again
            continue
    else:
        return []
    return [claim for request in requests for claim in _claims_of(request)]


def _claims_of(request: Any) -> list[tuple[str, float | str]]:
    name = getattr(request, "name", "")
    try:
        if name == advance.name and len(request.args) >= 2 and request.args[1] is not None:
            return [(str(request.args[0]), request.args[1])]
        if name == advance_many.name and request.args:
            return [(str(job_id), lease) for job_id, lease in request.args[0]]
        if name == run_workflow.name:
            return [(str(request.id), NEW_CLAIM)]
    except (TypeError, ValueError):  # a malformed message: its task refuses it
        return []
    return []


@task_received.connect
def _claim_received(request: Any = None, **_: Any) -> None:
    # In the worker's main process, as the consumer takes a message: its claims are renewed on the short lease.
    if _claims is not None and request is not None:
        _claims.received(_claims_of(request))


@worker_process_init.connect
def _fresh_runner(**_: Any) -> None:
    # A pool child forked after the main process built its runner must not share its sockets.
    set_runner(None)


@worker_ready.connect
def _start_dispatcher(sender: Any = None, **_: Any) -> None:
    global _dispatcher
    settings = get_settings()
    _dispatcher = Dispatcher(
        store=store_for(settings),
        send=send_due,
        interval_s=settings.dispatch_interval_s,
        batch=settings.dispatch_batch,
        lease_s=settings.claim_lease_s,
        send_lease_s=settings.step_lease,
    )
    _dispatcher.start()
    global _claims
    _claims = ClaimKeeper(store=_dispatcher.store, held=claims_in_hand, lease_s=settings.step_lease)
    _claims.start()

    # One thread per account: a sweep waiting out one account's pause or outage never delays another's.
    for sweeper in sweepers_for(settings, sleep=_stopping.wait, adopt=send_adoptions):
        name = "extendq-sweeper" if sweeper.tenant is None else f"extendq-sweeper-{sweeper.tenant}"
        threading.Thread(target=run_forever, args=(sweeper, _stopping.wait), name=name, daemon=True).start()
    start_relay(settings, _stopping)
    serve_metrics(settings)
    watch_pool(settings, sender, _stopping)
    if settings.recover_on_restart:
        watch = DataLossWatch(recovery=Recovery.for_runner(get_runner()), since_s=settings.recover_since_s)
        args = (watch, _stopping.wait)
        threading.Thread(target=watch_forever, args=args, name="extendq-recover", daemon=True).start()


@worker_shutdown.connect
def _stop_dispatcher(**_: Any) -> None:
    _stopping.set()
    if _claims is not None:
        _claims.stop()
    if _dispatcher is not None:
        _dispatcher.stop()
