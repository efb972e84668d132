"""What a run gives back: :class:`RunResult` (outputs, what output nodes showed, stats) and
:class:`RunStats` (what ran, what came from the cache, how long, how many model files were read)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .graph import Node


@dataclass
class RunStats:
    """What a run did: nodes executed and cached (in order), seconds per executed node, and how
    many model files its nodes read (``model_loads``: what they reported with
    ``ctx.model_loaded()``; a model already in memory is not read again and does not count)."""

    run_id: int = 0
    executed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    total_seconds: float = 0.0
    model_loads: int = 0

    def summary(self) -> str:
        return (f"{len(self.executed)} node(s) ran, {len(self.cached)} cached, "
                f"{self.total_seconds:.2f} s")


@dataclass
class RunResult:
    """Outputs of the target nodes (``outputs[node_id][output_name]``), what output nodes showed
    (``ui[node_id]``, e.g. ``{"files": [...]}``) and the run's stats."""

    outputs: dict[str, dict[str, Any]]
    ui: dict[str, dict[str, Any]]
    stats: RunStats

    def output(self, node: str | Node, name: str | None = None) -> Any:
        """One output value of a target node (``name`` may be left out if it has one output)."""
        node_id = node.id if isinstance(node, Node) else node
        outs = self.outputs[node_id]
        if name is None:
            if len(outs) != 1:
                raise KeyError(f"node {node_id} has outputs {list(outs)}; name the one you want")
            return next(iter(outs.values()))
        return outs[name]
