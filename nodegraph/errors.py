"""Errors and problems the engine reports. Every one names its place (file, node, field)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .results import RunStats


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a graph file or graph.

    ``code`` is a stable identifier (documented in docs/graph-format.md); ``field`` reads like
    ``"param steps"``, ``"input model"``, ``"output LATENT"`` or a file field such as ``"pos"``.
    ``severity`` is ``"error"`` (the graph cannot run) or ``"warning"`` (it runs; you may want
    to look).
    """

    code: str
    message: str
    node_id: str | None = None
    node_type: str | None = None
    field: str | None = None
    severity: str = "error"

    @property
    def param(self) -> str | None:
        """The param name when the problem is about a param, else None."""
        return self.field[6:] if self.field and self.field.startswith("param ") else None

    @property
    def input(self) -> str | None:
        """The input name when the problem is about an input, else None."""
        return self.field[6:] if self.field and self.field.startswith("input ") else None

    def __str__(self) -> str:
        place = ""
        if self.node_id is not None:
            place = f"node {self.node_id}"
            if self.node_type:
                place += f" ({self.node_type})"
        if self.field:
            place = f"{place} {self.field}" if place else self.field
        text = f"{place}: {self.message}" if place else self.message
        return f"warning: {text}" if self.severity == "warning" else text

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "node_id": self.node_id,
            "node_type": self.node_type,
            "field": self.field,
            "severity": self.severity,
        }


class NodeGraphError(Exception):
    """Base class of every error the engine raises on purpose."""


class GraphLoadError(NodeGraphError):
    """A graph file could not be read: not JSON, wrong format or version, or malformed fields."""

    def __init__(self, problems: list[Problem], source: str | None = None):
        self.problems = list(problems)
        self.source = source
        lines = [str(p) for p in self.problems]
        prefix = f"{source}: " if source else ""
        super().__init__("\n".join(prefix + line for line in lines) or f"{prefix}cannot load graph")


class GraphValidationError(NodeGraphError):
    """A graph has problems that stop it from running (see ``problems``)."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class UnknownNodeType(NodeGraphError, KeyError):
    """A node type id is not in the registry."""

    def __str__(self) -> str:  # KeyError would add quotes
        return str(self.args[0]) if self.args else "unknown node type"


class RegistryError(NodeGraphError):
    """A node pack tried to register something invalid (duplicate id, unknown socket type, ...)."""


class UsageError(NodeGraphError):
    """A command-line or API argument is wrong (e.g. ``--set`` naming a node that does not exist)."""


class NodeExecutionError(NodeGraphError):
    """A node raised while running. ``__cause__`` holds the original exception."""

    def __init__(
        self,
        node_id: str,
        node_type: str,
        error: BaseException,
        traceback_text: str = "",
        stats: RunStats | None = None,
    ):
        self.node_id = node_id
        self.node_type = node_type
        self.error = error
        self.traceback_text = traceback_text
        self.stats = stats
        detail = str(error) or type(error).__name__
        super().__init__(f"node {node_id} ({node_type}) failed: {type(error).__name__}: {detail}")


class Interrupted(BaseException):
    """Raised inside a run when someone asked it to stop (``Executor.interrupt()``).

    It derives from BaseException, like KeyboardInterrupt, so that a node's ``except Exception``
    does not swallow it.
    """

    def __init__(self, node_id: str | None = None, stats: RunStats | None = None):
        self.node_id = node_id
        self.stats = stats
        where = f" in node {node_id}" if node_id is not None else ""
        super().__init__(f"run interrupted{where}")
