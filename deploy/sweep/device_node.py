"""Where a cluster sweep's time cells run when the files are timed on a device (``--device``).

One device is one timing slot: every time cell runs on the Ray node of the machine that runs
``deploy benchmark`` (its SSH keys and config are the ones that reach the device) and holds that
node's timing slot, so the device times one model at a time and PyTorch eager, timed on that
node as a local run times it on its host, has the node to itself. Export, evaluation and the
parent stay CPU cells on any node.
"""
from __future__ import annotations

from typing import Any

from deploy.sweep.resources import TIMING_SLOT
from edgebase.errors import ConfigError


def check_client(address: str) -> None:
    """A Ray Client (ray://) is not a node of the cluster: the time cells could not run here."""
    if address.startswith("ray://"):
        raise ConfigError(
            f"--device with --cluster {address}: through Ray Client this machine is not a node "
            f"of the cluster, and the device's time cells run on the node that holds your SSH "
            f"keys; run deploy on a node of the cluster with --cluster auto or HOST:PORT")


def this_node(ray) -> str:
    """The Ray node id of this process's machine, which must offer a timing slot."""
    node_id = ray.get_runtime_context().get_node_id()
    node = next((n for n in ray.nodes() if n.get("NodeID") == node_id and n.get("Alive")), None)
    if node is None or node["Resources"].get(TIMING_SLOT, 0) < 1:
        raise ConfigError(
            f"--device: the device's time cells run on this machine's Ray node, which offers no "
            f"{TIMING_SLOT}; start it with `ray start ... --resources='{{\"{TIMING_SLOT}\": 1}}'`")
    return node_id


def pinned(node_id: str) -> dict[str, Any]:
    """Ray task options that run a task on ``node_id`` or not at all."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node_id, soft=False)}
