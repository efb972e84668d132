"""The run history: the last runs (200 by default), each with its graph, outputs, timing and outcome.

A :class:`HistoryEntry` is what a finished queue item leaves behind: the graph as it was queued (a
snapshot, so "restore graph" gives exactly what ran), what each node showed (``outputs``: file paths,
never copies of the images), which nodes ran and which came from the cache, the outcome (success,
error with the failing node, or interrupted), start and end times, and two things a history list
shows at a glance: the seed and a summary of the prompt.

:class:`History` keeps the entries in memory and, given a folder, one JSON file per entry in it
(``<finish time>-<id>.json``, written atomically), so the history survives restarts; a damaged file
costs that one entry. The default folder is the user data folder's ``history/``
(:func:`default_history_folder`; none under ``NODEGRAPH_TESTING=1``). Thread-safe; no Qt.
"""
from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import GraphLoadError
from .fileio import write_text_atomic
from .format import from_data, to_data
from .graph import Graph, id_sort_key
from .registry import STRING, Registry

log = logging.getLogger("nodegraph.history")

MAX_ENTRIES = 200
STATUSES = ("success", "error", "interrupted")
ENTRY_VERSION = 1
SUMMARY_CHARS = 200
SEED_PARAMS = ("seed", "noise_seed")
_FILE_RE = re.compile(r"^\d{13,}-[A-Za-z0-9_.-]+\.json$")


@dataclass(frozen=True)
class HistoryEntry:
    """One finished run. ``outputs`` maps node ids to what they showed (``ctx.ui``: ``files`` and
    ``images`` hold paths); ``executed`` are the nodes that ran to the end, ``cached`` those whose
    outputs came from the cache. ``error`` (status "error" or "interrupted") has ``node_id``,
    ``node_type`` (None when no node was at fault or running), ``message``, ``exception_type`` and
    ``traceback``. ``extra`` belongs to the client that queued the run (the HTTP server keeps
    ComfyUI's prompt there)."""

    id: str
    number: float
    status: str
    started_at: float
    finished_at: float
    graph: Graph
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    executed: tuple[str, ...] = ()
    cached: tuple[str, ...] = ()
    targets: tuple[str, ...] | None = None
    error: dict[str, Any] | None = None
    seed: int | None = None
    summary: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} is not one of {', '.join(STATUSES)}")

    @property
    def duration(self) -> float:
        """Seconds from the start of the run to its end."""
        return max(0.0, self.finished_at - self.started_at)

    @property
    def images(self) -> list[str]:
        """Paths of the images the run showed, in node-id order (output nodes' ``ui["images"]``)."""
        return [str(p) for _, ui in sorted(self.outputs.items(), key=lambda kv: id_sort_key(kv[0]))
                for p in ui.get("images", ()) if isinstance(p, (str, os.PathLike))]

    @property
    def thumbnail(self) -> str | None:
        """The path of the image a history list shows for this run (the first image), if any."""
        images = self.images
        return images[0] if images else None

    def to_json(self) -> dict[str, Any]:
        return {
            "version": ENTRY_VERSION, "id": self.id, "number": self.number, "status": self.status,
            "started_at": self.started_at, "finished_at": self.finished_at,
            "graph": to_data(self.graph), "outputs": self.outputs, "executed": list(self.executed),
            "cached": list(self.cached), "targets": None if self.targets is None else list(self.targets),
            "error": self.error, "seed": self.seed, "summary": self.summary, "extra": self.extra,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str | None = None) -> HistoryEntry:
        """Read an entry written by :meth:`to_json` (ValueError or GraphLoadError if it is not one)."""
        if not isinstance(data, dict) or data.get("version") != ENTRY_VERSION:
            raise ValueError(f"{source or 'entry'}: not a version {ENTRY_VERSION} history entry")
        targets = data.get("targets")
        return cls(
            id=str(data["id"]), number=float(data["number"]), status=str(data["status"]),
            started_at=float(data["started_at"]), finished_at=float(data["finished_at"]),
            graph=from_data(data["graph"], source), outputs=dict(data.get("outputs") or {}),
            executed=tuple(data.get("executed") or ()), cached=tuple(data.get("cached") or ()),
            targets=None if targets is None else tuple(targets), error=data.get("error"),
            seed=data.get("seed"), summary=str(data.get("summary") or ""),
            extra=dict(data.get("extra") or {}))


@dataclass(frozen=True)
class HistoryRemoved:
    """Entries left the history: deleted (``ids``), or all of them (``cleared``)."""

    ids: tuple[str, ...]
    cleared: bool = False


class History:
    """The last ``max_entries`` runs, oldest first; persisted in ``folder`` when one is given.

    ``on_change(HistoryRemoved)`` is called (outside the lock) when entries are deleted, cleared or
    pushed out by newer ones; the run queue forwards it to its subscribers.
    """

    def __init__(self, folder: str | os.PathLike[str] | None = None, *, max_entries: int = MAX_ENTRIES,
                 on_change: Callable[[HistoryRemoved], None] | None = None):
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.folder = Path(folder) if folder is not None else None
        self.max_entries = max_entries
        self.on_change = on_change
        self._entries: OrderedDict[str, HistoryEntry] = OrderedDict()
        self._files: dict[str, Path] = {}
        self._lock = threading.RLock()
        if self.folder is not None:
            self._load()

    # -- reading ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._entries

    def get(self, entry_id: str) -> HistoryEntry | None:
        return self._entries.get(entry_id)

    def entries(self, last: int | None = None) -> list[HistoryEntry]:
        """The entries, oldest first (only the ``last`` newest ones when given)."""
        with self._lock:
            items = list(self._entries.values())
        return items if last is None else items[max(0, len(items) - last):] if last > 0 else []

    # -- changing --------------------------------------------------------------------------
    def add(self, entry: HistoryEntry) -> None:
        """Add (or replace) an entry as the newest; the oldest go beyond ``max_entries``."""
        with self._lock:
            self._entries.pop(entry.id, None)
            self._entries[entry.id] = entry
            self._write(entry)
            dropped = []
            while len(self._entries) > self.max_entries:
                old_id, _ = self._entries.popitem(last=False)
                self._unlink(old_id)
                dropped.append(old_id)
        if dropped:
            self._changed(HistoryRemoved(tuple(dropped)))

    def delete(self, ids: Iterable[str]) -> list[str]:
        """Remove entries by id (unknown ids are ignored); returns the ids removed. The files the
        runs wrote stay where they are."""
        with self._lock:
            removed = [i for i in dict.fromkeys(ids) if self._entries.pop(i, None) is not None]
            for entry_id in removed:
                self._unlink(entry_id)
        if removed:
            self._changed(HistoryRemoved(tuple(removed)))
        return removed

    def clear(self) -> None:
        """Remove every entry (the output files stay)."""
        with self._lock:
            ids = tuple(self._entries)
            self._entries.clear()
            for entry_id in ids:
                self._unlink(entry_id)
        self._changed(HistoryRemoved(ids, cleared=True))

    # -- persistence -----------------------------------------------------------------------
    def _write(self, entry: HistoryEntry) -> None:
        if self.folder is None:
            return
        name = f"{int(entry.finished_at * 1000):013d}-{_safe_id(entry.id)}.json"
        path = self.folder / name
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            write_text_atomic(path, json.dumps(entry.to_json(), default=str, ensure_ascii=False))
        except OSError as exc:
            log.warning("could not save history entry %s to %s: %s", entry.id, path, exc)
            return
        previous = self._files.get(entry.id)
        if previous is not None and previous != path:
            previous.unlink(missing_ok=True)
        self._files[entry.id] = path

    def _unlink(self, entry_id: str) -> None:
        path = self._files.pop(entry_id, None)
        if path is not None:
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                log.warning("could not delete history file %s: %s", path, exc)

    def _load(self) -> None:
        assert self.folder is not None
        try:
            names = sorted(p.name for p in self.folder.iterdir() if _FILE_RE.match(p.name))
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warning("cannot read the history folder %s: %s", self.folder, exc)
            return
        for name in names:
            path = self.folder / name
            try:
                entry = HistoryEntry.from_json(json.loads(path.read_text(encoding="utf-8")), str(path))
            except (OSError, ValueError, KeyError, TypeError, GraphLoadError) as exc:
                log.warning("skipping history file %s: %s", path, str(exc).splitlines()[0])
                continue
            old = self._files.get(entry.id)
            if old is not None:
                old.unlink(missing_ok=True)
            self._entries.pop(entry.id, None)
            self._entries[entry.id] = entry
            self._files[entry.id] = path
        while len(self._entries) > self.max_entries:
            old_id, _ = self._entries.popitem(last=False)
            self._unlink(old_id)

    def _changed(self, event: HistoryRemoved) -> None:
        if self.on_change is not None:
            try:
                self.on_change(event)
            except Exception:
                log.exception("a history listener raised")


def default_history_folder() -> Path | None:
    """The user data folder's ``history/`` (e.g. ``~/.local/share/NodeGraph/history``); None under
    ``NODEGRAPH_TESTING=1``, so tests never touch the real one."""
    if os.environ.get("NODEGRAPH_TESTING", "") in ("1", "true", "yes"):
        return None
    import platformdirs

    return Path(platformdirs.user_data_dir("NodeGraph", appauthor=False)) / "history"


# -- what a history list shows --------------------------------------------------------------------
def summarize(graph: Graph, registry: Registry) -> tuple[int | None, str]:
    """``(seed, prompt summary)`` of a graph, for a history list.

    The seed is the first seed-like param (one with a "control after run" mode, or named ``seed`` /
    ``noise_seed``) set on a node, in node-id order. The summary is the multi-line text of the node
    feeding an input named ``positive`` (ComfyUI's convention), else the first non-empty multi-line
    text; whitespace collapsed, cut at 200 characters."""
    seed: int | None = None
    texts: list[tuple[str, str]] = []
    for node_id in sorted(graph.nodes, key=id_sort_key):
        node = graph.nodes[node_id]
        spec = registry.get(node.type)
        if spec is None or node.mode == "muted":
            continue
        linked = graph.inputs_of(node_id)
        for p in spec.params:
            value = node.params.get(p.name, p.default)
            if p.name in linked:
                continue
            if seed is None and type(value) is int and (p.control_after_run or p.name in SEED_PARAMS):
                seed = value
            if p.kind == STRING and p.multiline and isinstance(value, str) and value.strip():
                texts.append((node_id, value))
    positive = {lk.src for lk in graph.iter_links() if lk.input == "positive"}
    chosen = next((t for nid, t in texts if nid in positive), texts[0][1] if texts else "")
    text = " ".join(chosen.split())
    return seed, text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 1] + "…"


def _safe_id(entry_id: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "_", entry_id)[:80].strip(".")
    return cleaned or "entry"

