"""Before a run is created, what the job wrote ahead of it must reach a replica, so that no failover orphans the run.

Redis replicates asynchronously: a primary that dies may take its last writes with it. A job's record, and the
mark that its create is going out, are such writes; a run created after them on Extend must not outlive them. So,
when the primary has replicas (INFO `connected_slaves` in state `online`, looked up at most once a second), a step
writes one more thing (an increment of `Keys.replica_fence`) and sends `WAIT 1 <timeout>` on the same connection:
the replication stream is in order, so a replica that has the fence has everything written before it, by any
client. No replica acknowledging within the timeout raises `NotReplicated`, and the create waits for a later
step; it is never sent unreplicated while replicas are there. A primary with no replica (a single Redis, or its
replicas all gone) is not waited for: there is nothing to fail over to; nor is a Redis that refuses INFO or WAIT
(some proxies), which then relies on recovery alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from extendq.errors import NotReplicated

log = logging.getLogger("extendq.replication")
_RETRY_S = 1.0  # a create that found no replica in time is tried again this much later


@dataclass(kw_only=True)
class ReplicaWait:
    """Waits for the writes made so far to reach a replica, when the primary has any."""

    client: redis.Redis
    fence_key: str
    timeout_ms: int = 500
    cache_s: float = 1.0
    clock: Callable[[], float] = time.monotonic
    _replicas: int = field(default=0, init=False)
    _looked_at: float | None = field(default=None, init=False)

    def confirm(self, what: str) -> None:
        """Return once everything written so far is on a replica, or at once when there is none to wait for.

        Raises:
            NotReplicated: replicas are connected, and none acknowledged within the timeout (`what` names the
                create that must wait, for the message).
        """
        if self.timeout_ms <= 0 or self.replicas() == 0:
            return
        pipe = self.client.pipeline(transaction=False)
        pipe.incr(self.fence_key)
        pipe.wait(1, self.timeout_ms)
        try:
            _, acknowledged = pipe.execute()
        except redis.ResponseError as exc:  # WAIT refused (some proxies and managed services): nothing to wait with
            log.warning("Redis refused WAIT (%s): creates no longer wait for a replica in this process", exc)
            self.timeout_ms = 0
            return
        if int(acknowledged) >= 1:
            return
        self._looked_at = None  # look again: the replica may have gone meanwhile
        log.warning("no replica acknowledged within %d ms: %s waits", self.timeout_ms, what)
        raise NotReplicated(f"no Redis replica acknowledged within {self.timeout_ms} ms: {what} waits", _RETRY_S)

    def replicas(self) -> int:
        """How many replicas are online, as the primary said at most `cache_s` ago (0 where INFO is refused)."""
        now = self.clock()
        if self._looked_at is None or now - self._looked_at >= self.cache_s:
            self._replicas, self._looked_at = _online_replicas(self.client), now
        return self._replicas


def _online_replicas(client: redis.Redis) -> int:
    try:
        info: dict[str, Any] = client.info("replication")
    except redis.ResponseError:  # INFO refused (some proxies): nothing to wait for that can be seen
        return 0
    return sum(1 for name, value in info.items() if name.startswith("slave") and _online(value))


def _online(value: Any) -> bool:
    return isinstance(value, dict) and value.get("state") == "online"
