"""Events a run delivers to its callbacks, in order: RunStarted, then per node NodeStarted →
(Progress …) → NodeFinished | NodeFailed, or NodeCached; finally RunFinished, RunInterrupted or
RunFailed."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    from .results import RunStats


@dataclass(frozen=True)
class RunStarted:
    """A run begins; ``node_ids`` are the nodes it will visit, in execution order."""

    run_id: int
    node_ids: tuple[str, ...]


@dataclass(frozen=True)
class NodeStarted:
    node_id: str
    node_type: str


@dataclass(frozen=True)
class NodeCached:
    """A node's outputs came from the cache; its function did not run. ``ui`` is what it showed."""

    node_id: str
    node_type: str
    ui: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NodeFinished:
    node_id: str
    node_type: str
    seconds: float
    ui: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NodeFailed:
    node_id: str
    node_type: str
    error: BaseException
    traceback: str


@dataclass(frozen=True)
class Progress:
    """A node reported ``step`` of ``total`` (``preview`` is an optional image, e.g. a latent preview)."""

    node_id: str
    node_type: str
    step: int
    total: int
    preview: Any = None


@dataclass(frozen=True)
class RunFinished:
    stats: RunStats


@dataclass(frozen=True)
class RunInterrupted:
    node_id: str | None
    stats: RunStats


@dataclass(frozen=True)
class RunFailed:
    """The run stopped because node ``node_id`` failed (a NodeFailed event came just before)."""

    node_id: str
    stats: RunStats


Event = Union[RunStarted, NodeStarted, NodeCached, NodeFinished, NodeFailed, Progress,
              RunFinished, RunInterrupted, RunFailed]
