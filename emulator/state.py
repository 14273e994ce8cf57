"""The emulator's whole mutable state, shared by the Extend surface, the admin API and the dispatcher."""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable

from extendq.emulator.errors import ApiProblem, not_found
from extendq.emulator.faults import FaultInjector
from extendq.emulator.files import FileStore
from extendq.emulator.outages import Outages
from extendq.emulator.profiles import Profile, WorkflowSpec
from extendq.emulator.ratelimit import RateLimiter
from extendq.emulator.requestlog import RequestLog
from extendq.emulator.statuses import STATUSES
from extendq.emulator.store import RunStore
from extendq.emulator.webhooks import WebhookDispatcher

Sleep = Callable[[float], Awaitable[None]]


class Emulator:
    """Profile, stores, limits, faults, outages, request log and webhook dispatcher of one app.

    `sleep` is how faults that are waits (delays, slow answers) wait; tests may inject one that
    advances their clock instead.
    """

    def __init__(
        self,
        profile: Profile,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        api_keys: Iterable[str] = (),
        public_url: str | None = None,
    ) -> None:
        self.clock = clock
        self.sleep = sleep
        self.outages = Outages()
        self.api_keys = frozenset(api_keys)
        self.public_url = public_url or "http://127.0.0.1:8765"
        self.public_url_fixed = public_url is not None
        self.url_key = secrets.token_bytes(16)
        self.files = FileStore()
        self.log = RequestLog()
        self.webhooks = WebhookDispatcher(
            lookup=lambda run_id: self.runs.get(run_id),
            policy=lambda: self.profile.webhooks,
            public_url=lambda: self.public_url,
            clock=clock,
            url=webhook_url,
            secret=webhook_secret,
        )
        self.runs = RunStore(clock=clock, rng=random.Random(), on_due=self.webhooks.schedule)
        self.apply_profile(profile)

    def apply_profile(self, profile: Profile) -> None:
        """Switch to `profile`: limits, faults and random draws start afresh, and outage windows are the
        profile's, starting now; existing runs keep their timeline."""
        self.profile = profile
        seed = profile.seed
        self.runs.rng = random.Random(seed)
        self.limiter = RateLimiter(profile.rate_limit)
        self.faults = FaultInjector(profile.faults, random.Random(None if seed is None else seed + 1))
        self.outages.clear()
        at = self.clock()
        for outage in profile.faults.outages:
            self.outages.start(outage.route, outage.status, at, outage.for_s)

    def reset(self) -> None:
        """Forget runs, files, requests, stats and webhook records; keep the profile and webhook target."""
        self.runs.clear()
        self.files.clear()
        self.log.clear()
        self.webhooks.reset()
        self.apply_profile(self.profile)

    def workflow(self, workflow_id: str) -> WorkflowSpec:
        """The profile's workflow, for creating runs.

        Raises:
            ApiProblem: 404 for a workflow the profile does not declare; the workflow's own
                `create_error` when it refuses every create.
        """
        spec = self.profile.workflows.get(workflow_id)
        if spec is None:
            raise not_found("Workflow", workflow_id)
        refusal = spec.create_error
        if refusal is not None:
            raise ApiProblem(refusal.status, refusal.message, code=refusal.code)
        return spec

    def known_statuses(self) -> tuple[str, ...]:
        """The statuses `GET /workflow_runs?status=` accepts: the documented ones, the profile's unknown
        one and any other unknown one a run was given (the API knows the statuses it hands out)."""
        unknown = self.profile.faults.unknown_status
        if unknown is None and not self.runs.unknown_statuses:
            return STATUSES
        extra = self.runs.unknown_statuses | ({unknown.status} if unknown is not None else set())
        return (*STATUSES, *sorted(extra))

    def learn_public_url(self, scheme: str, host: str) -> None:
        """Remember how clients reach us, for signed URLs and presigned file URLs."""
        if not self.public_url_fixed and host:
            self.public_url = f"{scheme}://{host}"
