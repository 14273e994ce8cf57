"""Reconciliation: jobs nobody is driving are driven again, and nothing a finished job left in Redis outlives it.

One pass walks every extendq key under the prefix (SCAN, in batches) and:

- drives every unfinished job whose next step is missing from the due set (a Redis restart without
  persistence, a purged schedule), overdue by more than the grace period (no dispatcher got to it), or
  whose deadline passed more than the grace period ago. Driving is an `advance`: the job's next step,
  under its lock, so a job that ended on Extend while nobody looked is published from Extend's answer,
  a job past its deadline has its run cancelled and fails, and a submitted job is never submitted again;
- gives an expiry to finished job records, job-key and run indexes and alias sets that have none
  (a late alias, an index rewritten after the job finished), and deletes those whose job is gone;
- removes due-set entries whose job record is gone or finished (they would otherwise come due for ever).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from extendq.worker.records import _F_DEADLINE, _F_FINISHED, _F_REQUEST
from extendq.worker.store import RedisJobStore

log = logging.getLogger("extendq.reconcile")
Drive = Callable[[Sequence[str]], None]

_FIX_INDEX = f"""
-- KEYS: an index key (job key, run id or alias set), its owner's job hash.
-- ARGV: the owner id a string index must still name ('' for a set), the expiry (ms) when the owner has none.
-- Returns 1 when the index was deleted (its job is gone), 2 when it was given an expiry, else 0.
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if redis.call('PTTL', KEYS[1]) ~= -1 then return 0 end
if redis.call('EXISTS', KEYS[2]) == 0 then redis.call('DEL', KEYS[1]) return 1 end
if redis.call('HEXISTS', KEYS[2], '{_F_FINISHED}') == 0 then return 0 end
local left = redis.call('PTTL', KEYS[2])
if left < 0 then left = tonumber(ARGV[2]) end
redis.call('PEXPIRE', KEYS[1], left)
return 2
"""

_DROP_ORPHAN = """
-- KEYS: due set, job hash. ARGV: job id. Removes the entry only if the job record does not exist or says the
-- job finished (a finished job is never due again).
if redis.call('EXISTS', KEYS[2]) == 1 and redis.call('HEXISTS', KEYS[2], 'fin') == 0 then return 0 end
return redis.call('ZREM', KEYS[1], ARGV[1])
"""


@dataclass(kw_only=True)
class Reconciler:
    """One reconciliation pass over Redis; `drive` hands job ids to `advance` (without a lease)."""

    store: RedisJobStore
    drive: Drive
    result_ttl_s: int
    grace_s: float = 120.0
    batch: int = 1000
    clock: Callable[[], float] = time.time

    def run(self) -> dict[str, int]:
        """Reconcile once; counts of what was found and done (`unscheduled`, `overdue`, `past_deadline`, ...)."""
        counts: Counter[str] = Counter()
        now = self.clock()
        for keys in self._batches():
            owned = [(key, *parsed) for key in keys if (parsed := self.store.keys.owned(key)) is not None]
            self._jobs([(key, ident) for key, family, ident in owned if family == "job"], now, counts)
            self._indexes([(key, family, ident) for key, family, ident in owned if family != "job"], counts)
            for key in filter(self.store.keys.is_tenant_in_flight, keys):
                self._tenant_orphans(key, counts)
        self._due_orphans(counts)
        if any(counts.values()):
            log.info("reconcile: %s", " ".join(f"{name}={value}" for name, value in sorted(counts.items())))
        return dict(counts)

    def _batches(self) -> Iterator[list[str]]:
        client, cursor = self.store.client, 0
        pattern = _glob_escape(self.store.keys.prefix) + "*"
        while True:
            cursor, keys = client.scan(cursor, match=pattern, count=self.batch)
            if keys:
                yield [str(key) for key in keys]
            if int(cursor) == 0:
                return

    def _jobs(self, jobs: list[tuple[str, str]], now: float, counts: Counter[str]) -> None:
        if not jobs:
            return
        pipe = self.store.client.pipeline(transaction=False)
        for key, job_id in jobs:
            pipe.hmget(key, [_F_FINISHED, _F_DEADLINE])
            pipe.hstrlen(key, _F_REQUEST)
            pipe.pttl(key)
            pipe.zscore(self.store.keys.due, job_id)
        replies = pipe.execute()
        stuck: list[str] = []
        for index, (key, job_id) in enumerate(jobs):
            (finished, deadline), request_len, pttl, due = replies[index * 4 : index * 4 + 4]
            if finished is not None or not request_len:
                self._expire_record(key, finished, pttl, now, counts)
            elif (reason := self._stuck(due, deadline, now)) is not None:
                counts[reason] += 1
                stuck.append(job_id)
        if stuck:
            self.drive(stuck)
            counts["driven"] += len(stuck)

    def _stuck(self, due: float | None, deadline: Any, now: float) -> str | None:
        if due is None:
            return "unscheduled"
        if due < now - self.grace_s:
            return "overdue"
        if deadline is not None and float(deadline) < now - self.grace_s:
            return "past_deadline"
        return None

    def _expire_record(self, key: str, finished: Any, pttl: int, now: float, counts: Counter[str]) -> None:
        if pttl != -1:
            return  # it expires already (or vanished meanwhile)
        left_s = float(finished) + self.result_ttl_s - now if finished is not None else 0.0
        if left_s <= 0:
            # Past its TTL, or a fragment without a request (written after the record expired): nothing can use it.
            self.store.client.delete(key)
            counts["records_removed"] += 1
        else:
            self.store.client.pexpire(key, int(left_s * 1000))
            counts["records_expiring"] += 1

    def _indexes(self, indexes: list[tuple[str, str, str]], counts: Counter[str]) -> None:
        """Index keys without an expiry whose job finished or is gone; in-flight jobs' indexes stay as they are."""
        if not indexes:
            return
        client, keys = self.store.client, self.store.keys
        ttls = _each(client, "pttl", [key for key, _, _ in indexes])
        lasting = [item for item, pttl in zip(indexes, ttls, strict=True) if pttl == -1]
        named = iter(_each(client, "get", [key for key, family, _ in lasting if family != "alias"]))
        owners = [ident if family == "alias" else next(named) for _, family, ident in lasting]
        pipe = client.pipeline(transaction=False)
        for owner in owners:
            pipe.exists(keys.job(str(owner)))
            pipe.hexists(keys.job(str(owner)), _F_FINISHED)
        replies = pipe.execute() if owners else []
        for (key, family, _), owner, exists, finished in zip(lasting, owners, replies[::2], replies[1::2], strict=True):
            if owner is None or (exists and not finished):
                continue
            expected = "" if family == "alias" else str(owner)
            fixed = client.eval(_FIX_INDEX, 2, key, keys.job(str(owner)), expected, self.result_ttl_s * 1000)
            if fixed:
                counts["indexes_removed" if fixed == 1 else "indexes_expiring"] += 1

    def _due_orphans(self, counts: Counter[str]) -> None:
        client, keys = self.store.client, self.store.keys
        cursor = 0
        while True:
            cursor, entries = client.zscan(keys.due, cursor, count=self.batch)
            job_ids = [str(job_id) for job_id, _ in entries]
            for job_id, done in zip(job_ids, self.store.finished_flags(job_ids) if job_ids else [], strict=True):
                if done and client.eval(_DROP_ORPHAN, 2, keys.due, keys.job(job_id), job_id):
                    counts["due_orphans_removed"] += 1
            if int(cursor) == 0:
                return

    def _tenant_orphans(self, key: str, counts: Counter[str]) -> None:
        """Drop finished or unknown jobs from a tenant's in-flight set (a job's finish leaves it; one whose record
        was lost never finishes), so that the tenant's sweeps count only its jobs in flight."""
        client, cursor = self.store.client, 0
        while True:
            cursor, entries = client.zscan(key, cursor, count=self.batch)
            job_ids = [str(job_id) for job_id, _ in entries]
            done = [job_id for job_id, flag in zip(job_ids, self.store.finished_flags(job_ids), strict=True) if flag]
            if done and (removed := client.zrem(key, *done)):
                counts["tenant_orphans_removed"] += int(removed)
            if int(cursor) == 0:
                return


def _each(client: Any, command: str, keys: list[str]) -> list[Any]:
    """One reply per key, for a one-key read command, in one round trip."""
    pipe = client.pipeline(transaction=False)
    for key in keys:
        getattr(pipe, command)(key)
    return list(pipe.execute()) if keys else []


def _glob_escape(text: str) -> str:
    return "".join(f"\\{ch}" if ch in "*?[]\\" else ch for ch in text)
