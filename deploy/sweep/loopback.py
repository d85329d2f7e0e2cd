"""A throwaway Ray cluster on 127.0.0.1: a head node and more worker nodes as processes of this
machine, each offering one timing slot. For trying a cluster sweep on one machine (the tests and
the sweep benchmark use it); a real cluster is started with ``ray start`` on each machine.

Every address stays on loopback (``ray start --node-ip-address=127.0.0.1`` would advertise the
network interface instead). Ray reads its environment at import, so ``start`` sets it first.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from deploy.sweep.artifacts import NODE_CACHE_ENV
from deploy.sweep.resources import TIMING_SLOT

# node loss noticed in ~2 s instead of ~14 s: health checks every second, dead after two misses
FAST_FAILURE_DETECTION = {"health_check_period_ms": 1000, "health_check_timeout_ms": 1000,
                          "health_check_failure_threshold": 2}


def ray_environment(tmpdir: Path) -> dict[str, str]:
    """What Ray must find in the environment (of this process and of every driver started
    against the cluster): no usage reporting, its session files under ``tmpdir``, and so
    the nodes' caches of finished cells: a throwaway cluster starts with nothing cached."""
    return {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_TMPDIR": str(tmpdir), NODE_CACHE_ENV: str(Path(tmpdir) / "node-cache")}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LoopbackCluster:
    """``nodes`` Ray nodes (the first is the head) with ``cpus`` CPUs and one timing slot each
    (the head none with ``head_slot=False``, as a head that only schedules)."""

    def __init__(self, nodes: int = 2, cpus: int = 1, tmpdir: str | os.PathLike | None = None,
                 object_store_mb: int = 100, client_port: int | None = None,
                 head_slot: bool = True):
        if nodes < 1 or cpus < 1:
            raise ValueError("a cluster needs at least one node with one CPU")
        # short: Ray's socket paths under it must stay below the 107-byte limit
        self._owns_tmpdir = tmpdir is None  # removed with the cluster, node caches and all
        self.tmpdir = Path(tmpdir or tempfile.mkdtemp(prefix="ray", dir="/tmp"))
        self.nodes, self.cpus, self.object_store_mb = nodes, cpus, object_store_mb
        self.client_port = client_port  # a Ray Client server on the head (ray://) when set
        self.head_slot = head_slot
        self.cluster = None
        self.workers: list = []
        self._saved_env: dict[str, str | None] = {}  # what start() replaced in os.environ

    def start(self) -> "LoopbackCluster":
        env = ray_environment(self.tmpdir)
        self._saved_env = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        from ray.cluster_utils import Cluster

        node = dict(num_cpus=self.cpus, resources={TIMING_SLOT: 1},
                    object_store_memory=self.object_store_mb * 1024 * 1024,
                    node_ip_address="127.0.0.1")
        head = dict(node, include_dashboard=False, _system_config=FAST_FAILURE_DETECTION,
                    resources={TIMING_SLOT: 1} if self.head_slot else {})
        if self.client_port:
            # the client server asks the runtime-env agent for each client's server: it needs
            # the agent's real port (Cluster would let it pick one the server cannot know)
            head.update(ray_client_server_port=self.client_port,
                        runtime_env_agent_port=free_port())
        self.cluster = Cluster(initialize_head=True, head_node_args=head)
        for _ in range(self.nodes - 1):
            self.workers.append(self.cluster.add_node(**node))
        self.cluster.wait_for_nodes()
        return self

    @property
    def address(self) -> str:
        return self.cluster.address

    @property
    def client_address(self) -> str:
        """The Ray Client address (needs ``client_port``)."""
        return f"ray://127.0.0.1:{self.client_port}"

    @property
    def env(self) -> dict[str, str]:
        return ray_environment(self.tmpdir)

    def kill(self, node) -> None:
        """A real node loss: every process of ``node`` killed at once, no graceful exit."""
        self.cluster.remove_node(node, allow_graceful=False)
        self.workers.remove(node)

    def shutdown(self) -> None:
        if self.cluster is not None:
            self.cluster.shutdown()
            self.cluster = None
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env = {}
        if self._owns_tmpdir:
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    def __enter__(self) -> "LoopbackCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.shutdown()
