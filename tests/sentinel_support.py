"""A Redis primary, a replica and three sentinels on loopback ports, for failover tests.

Each is a real redis-server (the embedded binary) in its own directory under the test's
tmp_path; ``stop()`` ends whatever is still running.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from custsync.embedded.server import redis_server_binary
from tests.operations_run import free_port

MASTER = "custsync-primary"


@dataclass
class Node:
    name: str
    port: int
    proc: subprocess.Popen[bytes]

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2, decode_responses=True)


@dataclass
class SentinelSet:
    folder: Path
    primary: Node | None = None
    replica: Node | None = None
    sentinels: list[Node] = field(default_factory=list)

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"sentinel://{hosts}/{MASTER}/0"

    def start(self) -> SentinelSet:
        primary_port, replica_port = free_port(), free_port()
        self.primary = self._node("primary", primary_port, ["appendonly yes"])
        self.replica = self._node(
            "replica", replica_port, ["appendonly yes", f"replicaof 127.0.0.1 {primary_port}"]
        )
        for i in range(3):
            monitor = [
                f"sentinel monitor {MASTER} 127.0.0.1 {primary_port} 2",
                f"sentinel down-after-milliseconds {MASTER} 1000",
                f"sentinel failover-timeout {MASTER} 10000",
                f"sentinel parallel-syncs {MASTER} 1",
            ]
            self.sentinels.append(self._node(f"sentinel-{i}", free_port(), monitor, sentinel=True))
        self._wait(self._replica_known, "the sentinels to see the replica")
        return self

    def _node(self, name: str, port: int, lines: list[str], sentinel: bool = False) -> Node:
        folder = self.folder / name
        folder.mkdir(parents=True)
        conf = folder / "redis.conf"
        base = ["bind 127.0.0.1", f"port {port}", f"dir {folder}", "save ''"]
        conf.write_text("\n".join(base + lines) + "\n")
        argv = [redis_server_binary(), str(conf), *(["--sentinel"] if sentinel else [])]
        with (folder / "out.log").open("ab") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=log)
        node = Node(name, port, proc)
        self._wait(lambda: _answers(node), f"{name} to answer")
        return node

    def _replica_known(self) -> bool:
        try:
            return all(
                len(s.client().execute_command("SENTINEL", "REPLICAS", MASTER)) >= 1
                and len(s.client().execute_command("SENTINEL", "SENTINELS", MASTER)) >= 2
                for s in self.sentinels
            )
        except redis.RedisError:
            return False

    def master_port(self) -> int | None:
        try:
            _, port = (
                self.sentinels[0]
                .client()
                .execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER)
            )
        except (redis.RedisError, TypeError, ValueError):
            return None
        return int(port)

    def kill_primary(self) -> None:
        assert self.primary is not None
        self.primary.proc.kill()  # SIGKILL: no goodbye, no final fsync
        self.primary.proc.wait(10)

    def stop(self) -> None:
        for node in [*self.sentinels, self.replica, self.primary]:
            if node is not None and node.proc.poll() is None:
                node.proc.terminate()
                try:
                    node.proc.wait(10)
                except subprocess.TimeoutExpired:
                    node.proc.kill()

    @staticmethod
    def _wait(predicate: object, what: str, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():  # type: ignore[operator]
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout_s}s for {what}")
            time.sleep(0.1)


def _answers(node: Node) -> bool:
    try:
        return bool(node.client().ping())
    except redis.RedisError:
        return False
