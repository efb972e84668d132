"""Items: one variant of the graph each, with a key that names exactly what it computes.

An item's key is the SHA-256 (first 16 hex digits) of the *canonical graph* with the item's
overrides applied, the NodeGraph version and the SHA-256 of every model file the item uses. The
canonical graph keeps what changes results — node types, params, modes, links — and drops what
does not (positions, sizes, colours, titles, groups, meta), so moving a node in the editor keeps
the keys; editing a param, upgrading NodeGraph or replacing a model file changes them.

Model files are found the way nodes find them: every text param value that ends in a model
extension (``.safetensors``, ``.ckpt``, …) is looked up by the node packs' model locators (the
``nodegraph_model_locators`` hook; the built-in pack's looks in the model folders of every
category); the first file found is the one hashed. Hashing a multi-GB file takes seconds, so hashes are
cached by (path, size, modification time) in memory and, optionally, in a JSON file, and a
batch hashes each file once, not once per item.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import format as graph_format
from ..context import RunOptions
from ..graph import Graph
from ..registry import Registry
from .sweeps import Override

KEY_LENGTH = 16
"""Hex digits of an item key used in file names (64 bits)."""

MODEL_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".sft", ".gguf")
_CHUNK = 1 << 20

ModelResolver = Callable[[str], "Path | None"]
"""Maps a param value (e.g. ``"sd15.safetensors"``) to the model file it names, or None."""


@dataclass(frozen=True)
class Item:
    """One variant: its position in the grid, its key and its overrides."""

    index: int
    key: str
    overrides: tuple[Override, ...]
    models: dict[str, str] = field(default_factory=dict, compare=False)
    """Model param value → SHA-256 of the file it named on the coordinator."""

    def label(self) -> str:
        """``3.seed=42, 6.text=a fox`` (for messages)."""
        return ", ".join(f"{n}.{p}={v!r}" for n, p, v in self.overrides) or "(no overrides)"

    def overrides_json(self) -> list[list[Any]]:
        return [[n, p, v] for n, p, v in self.overrides]

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "key": self.key, "overrides": self.overrides_json(),
                "models": dict(self.models)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Item:
        overrides = tuple((str(n), str(p), v) for n, p, v in data.get("overrides", []))
        return cls(int(data["index"]), str(data["key"]), overrides, dict(data.get("models", {})))


# -- canonical graph ----------------------------------------------------------------------------
def canonical_graph(graph: Graph | dict[str, Any]) -> dict[str, Any]:
    """What of a graph changes its results: node types, params and modes, and the links."""
    data = graph_format.to_data(graph) if isinstance(graph, Graph) else graph
    nodes = {}
    for node_id, node in data.get("nodes", {}).items():
        nodes[node_id] = {"type": node["type"], "params": copy.deepcopy(node.get("params", {})),
                          "mode": node.get("mode", "normal")}
    links = sorted(([l["from"], l["output"], l["to"], l["input"]] for l in data.get("links", [])))
    return {"nodes": nodes, "links": links}


def canonical_json(value: Any) -> str:
    """Deterministic JSON text (sorted keys, no spaces) that hashes the same everywhere."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def graph_hash(graph: Graph | dict[str, Any]) -> str:
    """SHA-256 of the canonical graph (the manifest compares it on resume)."""
    return hashlib.sha256(canonical_json(canonical_graph(graph)).encode()).hexdigest()


def apply_overrides(canon: dict[str, Any], overrides: Iterable[Override]) -> dict[str, Any]:
    """A copy of a canonical graph with the overrides set (only the touched nodes are copied)."""
    nodes = dict(canon["nodes"])
    for node_id, param, value in overrides:
        node = dict(nodes[node_id])
        node["params"] = dict(node["params"])
        node["params"][param] = value
        nodes[node_id] = node
    return {"nodes": nodes, "links": canon["links"]}


def item_key(applied: dict[str, Any], version: str, model_hashes: dict[str, str]) -> str:
    """The key of one item (see the module docstring) from its canonical graph with the
    overrides applied."""
    payload = {"graph": applied, "nodegraph": version, "models": model_hashes}
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:KEY_LENGTH]


def model_names(canon: dict[str, Any]) -> list[str]:
    """Text param values that look like model file names, sorted."""
    found = set()
    for node in canon["nodes"].values():
        for value in node["params"].values():
            if isinstance(value, str) and value.lower().endswith(MODEL_EXTENSIONS):
                found.add(value)
    return sorted(found)


# -- model files --------------------------------------------------------------------------------
def model_resolver(registry: Registry, options: RunOptions) -> ModelResolver:
    """Find model files as the node packs find them (their ``nodegraph_model_locators`` hook, in the
    run's model folders), each name looked up once; values that name no file resolve to None."""
    memo: dict[str, Path | None] = {}

    def resolve(name: str) -> Path | None:
        if name not in memo:
            memo[name] = registry.locate_model(name, options)
        return memo[name]

    return resolve


class ModelHasher:
    """SHA-256 of model files, computed once per (path, size, modification time).

    ``cache_file`` (optional) keeps the hashes across processes and runs: a worker that starts
    next to a 7 GB checkpoint another run already hashed does not read it again.
    """

    def __init__(self, cache_file: str | os.PathLike[str] | None = None):
        self.cache_file = Path(cache_file) if cache_file is not None else None
        self._memo: dict[str, str] = {}
        self._lock = threading.Lock()
        self.hashed = 0  # files actually read (for tests and stats)
        if self.cache_file is not None:
            try:
                data = json.loads(self.cache_file.read_text(encoding="utf-8"))
                if isinstance(data, dict):
                    self._memo.update({str(k): str(v) for k, v in data.items()})
            except (OSError, ValueError):
                pass

    @staticmethod
    def identity(path: Path) -> str:
        st = path.stat()
        return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"

    def sha256(self, path: str | os.PathLike[str]) -> str:
        path = Path(path)
        ident = self.identity(path)
        with self._lock:
            known = self._memo.get(ident)
        if known is not None:
            return known
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
        value = digest.hexdigest()
        with self._lock:
            self._memo[ident] = value
            self.hashed += 1
            self._save()
        return value

    def _save(self) -> None:
        if self.cache_file is None:
            return
        try:
            self.cache_file.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".hashes-", dir=self.cache_file.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self._memo, f, sort_keys=True, indent=0)
            os.replace(tmp, self.cache_file)
        except OSError:
            pass  # a cache that cannot be written only costs time


def default_hash_cache() -> Path | None:
    """``<user cache dir>/model-sha256.json``; None under NODEGRAPH_TESTING=1."""
    if os.environ.get("NODEGRAPH_TESTING") == "1":
        return None
    try:
        import platformdirs
    except ImportError:
        return None
    return platformdirs.user_cache_path("nodegraph", appauthor=False) / "model-sha256.json"


def model_hashes(canon: dict[str, Any], resolve: ModelResolver, hasher: ModelHasher
                 ) -> dict[str, str]:
    """Param value → SHA-256 for every model file a (canonical, overridden) graph names."""
    out = {}
    for name in model_names(canon):
        path = resolve(name)
        if path is not None:
            out[name] = hasher.sha256(path)
    return out


def build_items(graph: Graph, grid: Iterable[tuple[Override, ...]], *, version: str,
                resolve: ModelResolver | None = None, hasher: ModelHasher | None = None
                ) -> list[Item]:
    """Number the grid's override tuples and key each one."""
    canon = canonical_graph(graph)
    hasher = hasher or ModelHasher()
    resolve = resolve or (lambda name: None)
    hashes_of: dict[str, str | None] = {}  # name -> sha256: each file is looked at once a batch
    items = []
    for index, overrides in enumerate(grid):
        applied = apply_overrides(canon, overrides)
        hashes = {}
        for name in model_names(applied):
            if name not in hashes_of:
                path = resolve(name)
                hashes_of[name] = hasher.sha256(path) if path is not None else None
            if hashes_of[name] is not None:
                hashes[name] = hashes_of[name]
        items.append(Item(index, item_key(applied, version, hashes), overrides, hashes))
    return items
