"""Redis that fails over, for tests: a primary, a replica and three Sentinels, each a private `redis-server` process.

The Sentinels are `redis-server <conf> --sentinel` (no `redis-sentinel` binary needed), with short timeouts: a primary
that stops answering is down after `down_after_ms`, and a replica is promoted a second or two later.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import redis

from extendq.cli.redis_server import redis_answers
from tests.support.asgi import free_port
from tests.support.groups import kill_group, stop_group

SERVICE = "mymaster"


class RedisNode:
    """One `redis-server` process (a data node or a Sentinel) on a free loopback port, in a folder of its own."""

    def __init__(self, folder: Path, args: list[str], *, password: str | None = None) -> None:
        self.folder = folder
        self.port = free_port()
        self.args = args
        self.password = password
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 30.0) -> RedisNode:
        """Start the process and wait until it answers PING."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._log = (self.folder / "redis.log").open("ab")
        where = ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder)]
        command = ["redis-server", *self.args, *where]
        self.proc = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while not self._answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on {self.port} did not start:\n{self.log_text()[-3000:]}")
            time.sleep(0.05)
        return self

    def client(self, **kwargs: Any) -> redis.Redis:
        """A plain client of this process (with its password)."""
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, **kwargs)

    def _answers(self) -> bool:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return redis_answers(f"redis://{auth}127.0.0.1:{self.port}", timeout_s=1.0)

    def log_text(self) -> str:
        """What the process logged so far."""
        path = self.folder / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self) -> None:
        """SIGKILL, as a crash of the machine would: nothing is written or sent on the way out."""
        kill_group(self.proc)

    def pause(self) -> None:
        """SIGSTOP: the process holds its connections but answers nothing until `resume`."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after `pause`."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM (SIGKILL if it lingers), a paused process included, and close the log."""
        if self.alive:
            self.resume()
        stop_group(self.proc, 5.0)
        log = getattr(self, "_log", None)
        if log is not None and not log.closed:
            log.close()


class SentinelGroup:
    """A primary, a replica of it and three Sentinels watching them as `SERVICE`."""

    def __init__(
        self,
        folder: Path,
        *,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 5000,
        password: str | None = None,
        sentinel_password: str | None = None,
        primary_args: tuple[str, ...] = (),
    ) -> None:
        data = ["--save", "", "--appendonly", "no", "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"]
        if password:
            data += ["--requirepass", password, "--masterauth", password]
        self.primary = RedisNode(folder / "primary", [*data, *primary_args], password=password)
        replica_of = ["--replicaof", "127.0.0.1", str(self.primary.port)]
        self.replica = RedisNode(folder / "replica", [*data, *replica_of], password=password)
        timeouts = (down_after_ms, failover_timeout_ms)
        self.sentinels = [
            self._sentinel(folder / f"sentinel-{n}", timeouts, password, sentinel_password) for n in range(3)
        ]

    def _sentinel(
        self, folder: Path, timeouts: tuple[int, int], password: str | None, sentinel_password: str | None
    ) -> RedisNode:
        folder.mkdir(parents=True, exist_ok=True)
        conf = folder / "sentinel.conf"
        lines = [
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary.port} 2",
            f"sentinel down-after-milliseconds {SERVICE} {timeouts[0]}",
            f"sentinel failover-timeout {SERVICE} {timeouts[1]}",
            f"sentinel parallel-syncs {SERVICE} 1",
        ]
        if password:
            lines.append(f"sentinel auth-pass {SERVICE} {password}")
        if sentinel_password:  # the Sentinels talk to each other with it too
            lines += [f"requirepass {sentinel_password}", f"sentinel sentinel-pass {sentinel_password}"]
        conf.write_text("\n".join(lines) + "\n")
        return RedisNode(folder, [str(conf), "--sentinel"], password=sentinel_password)

    @property
    def nodes(self) -> list[RedisNode]:
        return [self.primary, self.replica, *self.sentinels]

    def url(self, db: int = 0) -> str:
        """`EXTENDQ_REDIS_URL` for this group."""
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}/{db}"

    def start(self, timeout_s: float = 60.0) -> SentinelGroup:
        """Start every process; return once each Sentinel knows the replica and the two other Sentinels."""
        for node in self.nodes:
            node.start()
        deadline = time.monotonic() + timeout_s
        while not all(self._settled(node) for node in self.sentinels):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Sentinels did not settle within {timeout_s}s")
            time.sleep(0.2)
        return self

    def _settled(self, sentinel: RedisNode) -> bool:
        with sentinel.client(decode_responses=True, socket_timeout=2) as client:
            master: dict[str, Any] = client.sentinel_master(SERVICE)
        return int(master["num-slaves"]) >= 1 and int(master["num-other-sentinels"]) >= 2

    def master_port(self) -> int | None:
        """The primary's port as a majority of the Sentinels name it (None while they disagree)."""
        ports = []
        for sentinel in self.sentinels:
            if not sentinel.alive:
                continue
            with sentinel.client(decode_responses=True, socket_timeout=2) as client:
                ports.append(int(client.sentinel_get_master_addr_by_name(SERVICE)[1]))
        agreed = max(set(ports), key=ports.count) if ports else None
        return agreed if ports.count(agreed) >= 2 else None

    def wait_promoted(self, node: RedisNode, timeout_s: float = 60.0) -> None:
        """Wait until the Sentinels name `node` as the primary and it says it is one."""
        deadline = time.monotonic() + timeout_s
        while not (self.master_port() == node.port and self._role(node) == "master"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{node.port} was not promoted within {timeout_s}s")
            time.sleep(0.1)

    def hold_replica(self) -> None:
        """From now on the replica receives the primary's writes but applies none (`CLIENT PAUSE WRITE`): they lag."""
        with self.replica.client() as client:
            client.execute_command("CLIENT", "PAUSE", 600_000, "WRITE")
        self._held = True

    def kill_primary(self, timeout_s: float = 30.0) -> None:
        """SIGKILL the primary. A replica held back lets go of the writes it received and never applied (they end with
        the primary's connection) and answers again, so the Sentinels can promote it."""
        self.primary.kill()
        if not getattr(self, "_held", False):
            return
        with self.replica.client(decode_responses=True, socket_timeout=5) as client:
            deadline = time.monotonic() + timeout_s
            while client.info("replication")["master_link_status"] != "down":
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the replica did not see the primary go within {timeout_s}s")
                time.sleep(0.02)
            client.execute_command("CLIENT", "UNPAUSE")
        self._held = False

    def _role(self, node: RedisNode) -> str:
        with node.client(decode_responses=True, socket_timeout=2) as client:
            return str(client.info("replication")["role"])

    def stop(self) -> None:
        """Stop every process still running."""
        for node in reversed(self.nodes):
            node.stop()

    def __enter__(self) -> SentinelGroup:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
