"""Errors and problems the engine reports. Every one names its place (file, node, field)."""
from __future__ import annotations

import re
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


class NodeError(NodeGraphError):
    """A node cannot do its job with what it was given: a damaged or missing model file, an image it
    cannot read, an output path it refuses, not enough memory.

    Raised on purpose, with a message that names the file or param and says what to do. Front ends show
    the message alone; any other exception escaping a node is taken for a bug and shown with its
    traceback. Node packs raise it (or a subclass) the same way.
    """


class InputError(NodeError, ValueError):
    """A node's input or param cannot be used as given: a value of the wrong kind or shape, sizes that
    do not fit together, an empty batch. The message names the input and says what to connect or set.
    Also a ValueError, which is what such checks raised before."""


class WriteError(NodeError):
    """Writing a file or making a folder failed (read-only folder, full disk, a name too long, a folder
    where a file should be, …). The message names the path, says why in plain words and what to do;
    ``error`` holds the OSError and ``path`` the path."""

    def __init__(self, path: Any, error: OSError, what: str = "write"):
        self.path = path
        self.error = error
        super().__init__(f"cannot {what} {path}: {os_error_reason(error)}")


def os_error_reason(error: OSError) -> str:
    """Why an OS call failed, in plain words with what to do (EACCES, ENOSPC, EROFS, …)."""
    import errno

    reasons = {
        errno.EISDIR: "it is a folder; give the path of a file",
        errno.ENOTDIR: "a part of the path is a file, not a folder; choose another path",
        errno.EACCES: "permission denied; choose a folder you can write to, or change its permissions",
        errno.EPERM: "operation not permitted; choose a folder you can write to, or change its permissions",
        errno.EROFS: "the file system is read-only; choose a folder on a writable disk",
        errno.ENOSPC: "no space left on the device; free some space or choose a folder on another disk",
        errno.EDQUOT: "the disk quota is exhausted; free some space or choose another folder",
        errno.ENAMETOOLONG: "the name is too long (file systems allow about 255 bytes per name); use a "
                            "shorter one",
        errno.ENOENT: "a folder on the path does not exist and cannot be made there; choose another "
                      "path",
        errno.ELOOP: "too many levels of symbolic links (a link loop?); fix the links or choose another "
                     "folder",
        errno.EEXIST: "a file of that name is in the way; move it or choose another name",
    }
    reason = reasons.get(error.errno or -1)
    return reason or (error.strerror or str(error) or type(error).__name__)


class Absent:
    """An output a node could not fill, with the reason (e.g. the VAE of a checkpoint that has no VAE
    weights). It flows through links like any value; a node that takes it in a required input is not
    run but fails with the reason, naming the input (an optional input receives None)."""

    __slots__ = ("reason",)

    def __init__(self, reason: str):
        self.reason = reason

    def __repr__(self) -> str:
        return f"Absent({self.reason!r})"

    def __bool__(self) -> bool:
        return False


_ALLOCATION = re.compile(r"(?:tried to allocate|allocate) ([0-9.]+) ?(bytes|[KMGT]i?B)", re.I)
_UNITS = {"bytes": 1, "kb": 1e3, "kib": 1024, "mb": 1e6, "mib": 2**20, "gb": 1e9, "gib": 2**30,
          "tb": 1e12, "tib": 2**40}


def out_of_memory(error: BaseException, node: Any) -> NodeError | None:
    """A clear "not enough memory" error for a node whose computation could not allocate memory
    (Python's MemoryError, torch's CPU allocator or CUDA out-of-memory), naming the node, how much it
    asked for and the numeric params that size it; None for any other error."""
    text = str(error)
    if not (isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError"
            or "can't allocate memory" in text or "out of memory" in text.lower()):
        return None
    found = _ALLOCATION.search(text)
    need = ""
    if found:
        size = float(found.group(1)) * _UNITS.get(found.group(2).lower(), 1)
        need = f" needs {size / 1e9:.1f} GB more than it could get"
    numbers = {k: v for k, v in sorted(node.params.items())
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
    driven = (" (its params: " + ", ".join(f"{k}={v}" for k, v in numbers.items()) + ")"
              if numbers else "")
    exc = NodeError(f"not enough memory: the node{need}{driven}; use smaller sizes or batches, or "
                    "tiled nodes, and close other programs. Earlier results are kept.")
    exc.__cause__ = error
    return exc


class NodeExecutionError(NodeGraphError):
    """A node raised while running. ``__cause__`` holds the original exception.

    ``expected`` tells an error raised on purpose (a :class:`NodeGraphError` such as
    :class:`NodeError`: show the message) from a bug (show the traceback too).
    """

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
        if not isinstance(error, NodeGraphError):  # a bug: the exception's type helps
            detail = f"{type(error).__name__}: {detail}"
        super().__init__(f"node {node_id} ({node_type}) failed: {detail}")

    @property
    def expected(self) -> bool:
        """Whether the node raised this on purpose (its message says it all; no traceback needed)."""
        return isinstance(self.error, NodeGraphError)


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
