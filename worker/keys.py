"""Every Redis key, channel and stream extendq uses, and nothing else names them."""

from __future__ import annotations

from dataclasses import dataclass

# The broker's queues (Redis lists when the broker is Redis): new jobs, and the steps of jobs already in flight.
QUEUE = "extendq"
CHECKS_QUEUE = "extendq.checks"
# Celery's default queue: where a producer's own Celery app sends a task it names without a queue.
CELERY_DEFAULT_QUEUE = "celery"
# kombu's Redis transport keeps each priority step of a queue in a list of its own (priority 0 is the plain name).
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


def queue_lists(queue: str) -> tuple[str, ...]:
    """The broker's Redis lists that hold `queue`'s messages, one per priority step (kombu pushes on the left)."""
    return tuple(queue + suffix for suffix in _PRIORITY_SUFFIXES)


@dataclass(frozen=True)
class Keys:
    """Key names under one prefix, so several deployments (or test runs) can share a Redis."""

    prefix: str = "extendq:"

    def job(self, job_id: str) -> str:
        """Hash: the job record (request, run id, state, counters)."""
        return f"{self.prefix}job:{job_id}"

    def job_key(self, job_key: str) -> str:
        """String: the job id that owns a producer's `job_key`."""
        return f"{self.prefix}key:{job_key}"

    def run(self, run_id: str) -> str:
        """String: the job id that owns an Extend run id (webhooks and adoption look runs up by it)."""
        return f"{self.prefix}run:{run_id}"

    def aliases(self, job_id: str) -> str:
        """Set: other task ids enqueued with the same job key, which get the same result."""
        return f"{self.prefix}alias:{job_id}"

    def lock(self, job_id: str) -> str:
        """String: held while one task advances the job."""
        return f"{self.prefix}lock:{job_id}"

    @property
    def claims(self) -> str:
        """Hash: job id -> the claim its pending step message carries (a dispatcher's, or `new` for a job its
        producer recorded); the message's step takes the job only while this still names its claim."""
        return f"{self.prefix}claims"

    @property
    def due(self) -> str:
        """Sorted set: job id -> when its next step is due (unix seconds)."""
        return f"{self.prefix}due"

    @property
    def events(self) -> str:
        """Stream: one entry per terminal job (and per progress change)."""
        return f"{self.prefix}events"

    def event_seen(self, event_id: str) -> str:
        """String: set once a webhook event id has been accepted (Extend re-delivers)."""
        return f"{self.prefix}seen:{event_id}"

    @property
    def counters(self) -> str:
        """Hash: counters of things worth watching (webhook events for unknown runs, duplicates...)."""
        return f"{self.prefix}counters"

    @property
    def in_flight(self) -> str:
        """Sorted set: job id -> when it was enqueued, while it is in flight (metrics: the oldest job in flight)."""
        return f"{self.prefix}inflight"

    def limit(self, scope: str, name: str) -> str:
        """String: a rate-limit bucket's state (`requests`, `runs`) or its pause end (`pause`), per scope; hash
        `pauses`: minute (unix seconds // 60) -> 429 pauses in it, the last hour's only; sorted set `runs_log`: the
        times of the creates made and reserved, the last window's and ahead (runs per minute held by the log); hash
        `granted`: unix second -> request tokens granted for it, the last five minutes' (the dashboard's chart)."""
        return f"{self.prefix}limit:{scope}:{name}"

    @property
    def workers(self) -> str:
        """Hash: worker id (host:pid) -> JSON of a live worker (name, concurrency, queues, last heartbeat)."""
        return f"{self.prefix}workers"

    def sweep(self, name: str, tenant: str | None = None) -> str:
        """List-sweep state of one account (the default one, or a tenant's): strings `leader` (lease), `mark` (when
        the last sweep began), `active` (flag), and the sorted set `stretched` (job id -> its stretched check; a job
        leaves it when it finishes, and the set expires a result TTL after its last write)."""
        return f"{self.prefix}sweep:{name}" if tenant is None else f"{self.prefix}sweep:tenant:{tenant}:{name}"

    def tenant_in_flight(self, tenant: str) -> str:
        """Sorted set: job id -> when it was recorded, for a tenant's jobs in flight (its sweeps' switch-on count);
        written with the job's record and left in the finishing step."""
        return f"{self.prefix}tenant:{tenant}:inflight"

    def is_tenant_in_flight(self, key: str) -> bool:
        """Whether `key` is a tenant's in-flight set (the reconciler drops finished jobs from them)."""
        return key.startswith(f"{self.prefix}tenant:") and key.endswith(":inflight")

    def batch(self, batch_id: str) -> str:
        """Hash: one of our batches (its Extend batch id `xb`, when its post began `post`); expires with results."""
        return f"{self.prefix}batch:{batch_id}"

    def adoption(self, run_id: str) -> str:
        """Hash: the rate-limit token an adoption of a batch run holds for its retry (`tok`); short-lived."""
        return f"{self.prefix}adopt:{run_id}"

    def adoption_sent(self, run_id: str) -> str:
        """String: a batch run handed to an adopting task lately (a sweep does not hand it again meanwhile)."""
        return f"{self.prefix}adopt:{run_id}:sent"

    def extend_batch(self, extend_batch_id: str) -> str:
        """String: our batch id for an Extend `batchId` (the sweeper asks whether a run's batch is ours)."""
        return f"{self.prefix}xbatch:{extend_batch_id}"

    # ---- Scheduled work: beat, reconciliation, review follow-up, folder ingestion, usage ----

    @property
    def beat(self) -> str:
        """Prefix of celery-redbeat's keys: its schedule, its entries and the lock only one beat holds."""
        return f"{self.prefix}beat:"

    def periodic(self, name: str) -> str:
        """String: held while one periodic job (`reconcile`, `ingest`, ...) runs, so two never overlap."""
        return f"{self.prefix}periodic:{name}"

    @property
    def review(self) -> str:
        """Sorted set: job id -> when its NEEDS_REVIEW run is next looked at (jobs asking `needs_review: watch`)."""
        return f"{self.prefix}review"

    def reviewed(self, job_id: str) -> str:
        """String: the later outcome of a followed NEEDS_REVIEW run (JSON: status, run_id, at); expires with results."""
        return f"{self.prefix}reviewed:{job_id}"

    @property
    def usage_pending(self) -> str:
        """Hash: run id -> usage of a finished run (credits, workflow, tags, day), until rolled up."""
        return f"{self.prefix}usage:pending"

    def usage_day(self, day: str) -> str:
        """Hash: one UTC day's usage totals (`credits`, `runs`, `credits:workflow:<id>`, `credits:tag:<tag>`, ...)."""
        return f"{self.prefix}usage:day:{day}"

    @property
    def usage_days(self) -> str:
        """Set: the days that have a usage hash."""
        return f"{self.prefix}usage:days"

    @property
    def ingest_seen(self) -> str:
        """Hash: file name in the ingest folder -> its size and mtime when last scanned (not yet submitted)."""
        return f"{self.prefix}ingest:seen"

    # ---- Producer fit: callbacks, finished jobs ----

    @property
    def outbox(self) -> str:
        """Stream: callbacks to send (one entry per finished job that asked for one), read by the relay's group."""
        return f"{self.prefix}outbox"

    @property
    def metrics_handover(self) -> str:
        """List: the metrics of jobs the webhook receiver finished, for a worker's endpoint to count (JSON each)."""
        return f"{self.prefix}metrics:handover"

    @property
    def finished(self) -> str:
        """Sorted set: job id -> when it finished; trimmed to the result TTL (`extendq list`)."""
        return f"{self.prefix}finished"

    def replayed(self, job_id: str) -> str:
        """String: the job that replays a finished job, set by the dashboard's retry (a second click retries
        nothing); expires with results."""
        return f"{self.prefix}replayed:{job_id}"

    def finished_by(self, facet: str, value: str) -> str:
        """Sorted set: job id -> when it finished, for one value of a facet (`outcome`, `workflow`, `tenant`; the
        default account's jobs under tenant ''); written with `finished` and trimmed like it (the dashboard's
        filters)."""
        return f"{self.prefix}finished:{facet}:{value}"

    # ---- Recovery after a Redis data loss (worker/recover.py) ----

    @property
    def dataset(self) -> str:
        """String: written once into each Redis dataset; gone after a server restart means the data went too."""
        return f"{self.prefix}dataset"

    @property
    def replica_fence(self) -> str:
        """Counter: written before a create when the primary has replicas, and waited for (worker/replication.py)."""
        return f"{self.prefix}replica-fence"

    def owned(self, key: str) -> tuple[str, str] | None:
        """`("job" | "key" | "run" | "alias", id)` for a per-job key under this prefix, else None."""
        if not key.startswith(self.prefix):
            return None
        family, sep, ident = key[len(self.prefix) :].partition(":")
        return (family, ident) if sep and family in _OWNED_FAMILIES else None


_OWNED_FAMILIES = frozenset({"job", "key", "run", "alias"})
