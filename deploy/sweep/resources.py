"""The Ray resources a sweep asks for. Each node offers one timing slot; a timing cell takes the
whole slot and every other cell a sliver of it, so a node times only while it runs nothing else
of the sweep (start nodes with ``ray start ... --resources='{"timing_slot": 1}'``)."""
from __future__ import annotations

TIMING_SLOT = "timing_slot"
SLIVER = 0.001  # a CPU cell's share of its node's slot: 1000 such cells per node at most

CPU_CELL = {"num_cpus": 1, "resources": {TIMING_SLOT: SLIVER}}
TIMING_CELL = {"num_cpus": 0, "resources": {TIMING_SLOT: 1}}
