"""What a running node can see: run options and the run context (progress, interrupt, ui results)."""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import Interrupted
from .events import Event, Progress

if TYPE_CHECKING:
    from .graph import Graph
    from .resources import Resources
    from .results import RunStats

DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "fp32", "fp16", "bf16")

node_logger = logging.getLogger("nodegraph.node")


@dataclass
class RunOptions:
    """Settings of a run that nodes may read (``ctx.options``) and choices providers receive.

    ``models_dirs`` are extra model roots given by the user (``--models``), searched first;
    the node pack adds its own default roots. ``extra`` is free for packs and clients.
    ``resources`` are the session's (:mod:`nodegraph.resources`: what packs keep from run to run,
    e.g. loaded models); a session puts its own in the options it runs with, None means the
    default ones. They change no result, so they take no part in signatures or comparisons.
    """

    device: str = "auto"
    dtype: str = "auto"
    output_dir: Path = field(default_factory=lambda: Path("output"))
    models_dirs: tuple[Path, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    resources: Resources | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ValueError(f"device {self.device!r} is not one of {', '.join(DEVICES)}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype {self.dtype!r} is not one of {', '.join(DTYPES)}")
        self.output_dir = Path(self.output_dir)
        self.models_dirs = tuple(Path(p) for p in self.models_dirs)


class RunContext:
    """Handed to a node function that declares a ``ctx`` parameter.

    - ``ctx.progress(step, total, preview=None)`` reports progress (and checks for an interrupt);
      call it once per step of long work, e.g. per sampler step.
    - ``ctx.check_interrupt()`` raises :class:`~nodegraph.errors.Interrupted` if the run was asked
      to stop.
    - ``ctx.ui`` is a dict an output node fills with what clients should show; by convention
      ``ctx.ui["files"]`` lists the paths of files it wrote and ``ctx.ui["images"]`` the images.
    - ``ctx.model_loaded()`` reports that the node read a model file (the run's stats count it).
    - ``ctx.options`` (device, dtype, output_dir, models_dirs), ``ctx.graph`` (the graph being run,
      e.g. to embed it in a PNG), ``ctx.node_id``, ``ctx.node_type``, ``ctx.log`` (a logger).
    """

    __slots__ = ("_emit", "_stats", "_stop", "graph", "log", "node_id", "node_type", "options", "ui")

    def __init__(self, node_id: str, node_type: str, options: RunOptions, graph: Graph | None,
                 emit: Callable[[Event], None] | None, stop: threading.Event,
                 stats: RunStats | None = None):
        self.node_id = node_id
        self.node_type = node_type
        self.options = options
        self.graph = graph
        self.ui: dict[str, Any] = {}
        self.log = node_logger
        self._emit = emit
        self._stop = stop
        self._stats = stats

    @property
    def interrupted(self) -> bool:
        """True once someone asked the run to stop."""
        return self._stop.is_set()

    def check_interrupt(self) -> None:
        """Raise Interrupted if the run was asked to stop."""
        if self._stop.is_set():
            raise Interrupted(self.node_id)

    def model_loaded(self) -> None:
        """Report that this node read a model file from disk (not one it found already in memory):
        the run's stats count it (``RunStats.model_loads``), and so does a batch."""
        if self._stats is not None:
            self._stats.model_loads += 1

    def progress(self, step: int, total: int, preview: Any = None) -> None:
        """Report that ``step`` of ``total`` is done (optionally with a preview image); checks for
        an interrupt first, so a loop that reports progress is interruptible."""
        if self._stop.is_set():
            raise Interrupted(self.node_id)
        if self._emit is not None:
            self._emit(Progress(self.node_id, self.node_type, step, total, preview))
