"""Noticing that Redis lost writes, after a restart or a failover, and having the pool run one recovery pass for it.

Each worker's main process looks every few seconds at a marker key (`Keys.dataset`) and at the primary it talks to:
its `run_id` (new at every server start) and its replication id (`master_replid`, new whenever a server becomes a
primary: at a start without the data of a former primary, and when a replica is promoted). The marker holds the
replication id of the primary that wrote it (`intact:<replid>`). Any of these says writes may be gone:

- the marker is gone and the server is not the one this process saw before (a restart that lost the data; where
  INFO is refused, as behind some proxies, the marker gone is enough);
- the marker names another replication id than the primary's (a failover: the promoted replica may lack the old
  primary's last writes; or a restart that kept its data but not its last second of writes), with or without
  the marker having made it to the replica: a promoted replica without it is a new server with no marker.

The first worker to notice flags the marker `recovering` (one atomic swap, whoever else noticed too), one worker
(a lock) runs the recovery pass (worker/recover.py) over `EXTENDQ_RECOVER_SINCE_S`, and sets the marker to the
current replication id once the pass completed, so a pass cut short is run again. A marker deleted without a restart
(FLUSHDB, a test's cleanup) is written again without a pass, and a pool started on an already empty Redis cannot
tell it from a new one: run `extendq recover` then.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import redis

from extendq.worker.periodic import exclusive, repeat
from extendq.worker.recover import Recovery

log = logging.getLogger("extendq.recover")
INTACT, RECOVERING = "intact", "recovering"

# Swap the marker for `recovering` only if it still holds what this process read (another may have swapped it).
_SWAP = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('SET', KEYS[1], ARGV[2]) end
return false
"""


@dataclass(frozen=True)
class Server:
    """The primary a process talks to: its run id (new at every start) and its replication id."""

    run_id: str
    replication_id: str


def intact(server: Server | None) -> str:
    """The marker of a dataset known whole on `server`'s primary."""
    return INTACT if server is None else f"{INTACT}:{server.replication_id}"


def is_intact(marker: str | None) -> bool:
    """Whether a marker says the dataset is whole (on some primary)."""
    return marker is not None and (marker == INTACT or marker.startswith(f"{INTACT}:"))


@dataclass(kw_only=True)
class DataLossWatch:
    """Notices a Redis restart or failover that may have lost writes, and has the pool run one recovery pass."""

    recovery: Recovery
    since_s: float = 24 * 3600.0
    interval_s: float = 5.0
    lock_ttl_s: float = 600.0
    _server: Server | None = field(default=None, init=False)
    _seen: bool = field(default=False, init=False)

    def check(self) -> dict[str, int] | None:
        """Look once; the counts of the recovery pass this process ran, or None when it ran none."""
        client, key = self.recovery.store.client, self.recovery.store.keys.dataset
        server = primary(client)
        marker = _text(client.get(key))
        if marker is None:
            lost = self._seen and (server is None or self._server is None or server.run_id != self._server.run_id)
            if lost:
                log.warning("Redis restarted without extendq's data: recovering jobs from Extend's runs")
            client.set(key, RECOVERING if lost else intact(server), nx=True)
        elif is_intact(marker) and server is not None and marker != intact(server):
            self._moved(client, key, marker, server)
        self._server, self._seen = server, True
        return self._recover(server) if _text(client.get(key)) == RECOVERING else None

    def _moved(self, client: redis.Redis, key: str, marker: str, server: Server) -> None:
        """The marker was written on another primary's lineage: a failover or a restart may have lost writes. A marker
        of the earlier form (no replication id) is only brought up to date."""
        if marker == INTACT:
            client.eval(_SWAP, 1, key, marker, intact(server))
            return
        if client.eval(_SWAP, 1, key, marker, RECOVERING):
            log.warning(
                "Redis has a new primary (replication id %s, was %s), after a failover or a restart: recovering "
                "jobs whose writes it may lack from Extend's runs",
                server.replication_id,
                marker.removeprefix(f"{INTACT}:"),
            )

    def _recover(self, server: Server | None) -> dict[str, int] | None:
        store = self.recovery.store
        with exclusive(store.client, store.keys.periodic("recover"), ttl_s=self.lock_ttl_s) as held:
            if not held or _text(store.client.get(store.keys.dataset)) != RECOVERING:
                return None  # another worker runs the pass, or has just run it
            counts = self.recovery.run(since=self.recovery.clock() - self.since_s)
            store.client.set(store.keys.dataset, intact(primary(store.client) or server))
            return counts


def watch_forever(watch: DataLossWatch, stop: Callable[[float], bool]) -> None:
    """Check every interval until `stop(timeout)` answers True; errors are logged and the next check tries again."""
    repeat(watch.check, every_s=watch.interval_s, stop=stop, what="data-loss check or recovery")


def primary(client: redis.Redis) -> Server | None:
    """The server's run id and replication id; None where INFO is not allowed (some proxies)."""
    try:
        info = client.info("server")
        replication = client.info("replication")
    except redis.ResponseError:
        return None
    run_id, replication_id = info.get("run_id"), replication.get("master_replid")
    if run_id is None or replication_id is None:
        return None
    return Server(run_id=str(run_id), replication_id=str(replication_id))


def _text(value: object) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)
