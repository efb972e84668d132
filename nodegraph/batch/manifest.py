"""``DIR/manifest.json``: what a batch is (graph, sweeps, items), so it can be resumed — and
refused when what it would now compute differs from what it started computing.

Rules:

- a folder without a manifest starts a new batch (``--resume`` on it also starts one);
- a folder with a manifest is only continued with ``--resume`` (never silently mixed);
- ``--resume`` refuses, naming the difference, if the graph (its canonical form: types, params,
  modes, links), the sweeps (params or values) or the item keys (NodeGraph version, model files)
  differ from the manifest's.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..fileio import writing
from .items import Item, canonical_graph, canonical_json, graph_hash
from .sweeps import Sweep
from .writer import atomic_write

MANIFEST = "manifest.json"
FORMAT = "nodegraph-batch"
VERSION = 1


class ResumeRefused(UsageError):
    """The batch folder holds a batch that is not the one asked for (or --resume is missing)."""


@dataclass
class Manifest:
    """The batch's definition as stored in ``manifest.json``."""

    graph: dict[str, Any]  # the graph file's data (format.to_data), for reproducing the batch
    sweeps: list[Sweep]
    items: list[Item]
    nodegraph_version: str
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    @property
    def graph_sha256(self) -> str:
        return graph_hash(self.graph)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "version": VERSION, "created": self.created,
            "nodegraph_version": self.nodegraph_version,
            "graph_sha256": self.graph_sha256, "graph": self.graph,
            "sweeps": [s.to_json() for s in self.sweeps],
            "total": len(self.items),
            "items": [i.to_json() for i in self.items],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        return cls(graph=data["graph"], sweeps=[Sweep.from_json(s) for s in data["sweeps"]],
                   items=[Item.from_json(i) for i in data["items"]],
                   nodegraph_version=str(data.get("nodegraph_version", "?")),
                   created=str(data.get("created", "")))

    def write(self, out_dir: Path) -> Path:
        path = out_dir / MANIFEST
        text = json.dumps(self.to_json(), sort_keys=True, ensure_ascii=False, indent=1) + "\n"
        atomic_write(path, text.encode("utf-8"), replace=True)
        return path


def read_manifest(out_dir: Path) -> Manifest | None:
    """The manifest in ``out_dir``, None if there is none; UsageError if it is unreadable."""
    path = out_dir / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: cannot read the batch manifest ({exc}); move the folder away or "
                         "choose another --out") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UsageError(f"{path} is not a NodeGraph batch manifest; choose another --out")
    if data.get("version") != VERSION:
        raise UsageError(f"{path}: batch manifest version {data.get('version')!r} is not supported by "
                         f"this NodeGraph (it reads version {VERSION})")
    try:
        return Manifest.from_json(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"{path}: the batch manifest is damaged ({type(exc).__name__}: {exc})") from None


_UNSET = "\x00unset"


def _show(value: Any) -> str:
    return "(not set)" if value == _UNSET else repr(value)


def _graph_differences(old: dict[str, Any], new: dict[str, Any], limit: int = 5) -> list[str]:
    a, b = canonical_graph(old), canonical_graph(new)
    diffs = []
    for node_id in sorted(set(a["nodes"]) | set(b["nodes"])):
        na, nb = a["nodes"].get(node_id), b["nodes"].get(node_id)
        if na is None:
            diffs.append(f"node {node_id} ({nb['type']}) was added")
        elif nb is None:
            diffs.append(f"node {node_id} ({na['type']}) was removed")
        elif na["type"] != nb["type"]:
            diffs.append(f"node {node_id} changed type {na['type']} → {nb['type']}")
        elif na["mode"] != nb["mode"]:
            diffs.append(f"node {node_id} mode {na['mode']} → {nb['mode']}")
        else:
            for p in sorted(set(na["params"]) | set(nb["params"])):
                va, vb = na["params"].get(p, _UNSET), nb["params"].get(p, _UNSET)
                if canonical_json(va) != canonical_json(vb):
                    diffs.append(f"node {node_id} param {p}: {_show(va)} → {_show(vb)}")
    if a["links"] != b["links"]:
        diffs.append("the links changed")
    return diffs[:limit] + ([f"… and {len(diffs) - limit} more"] if len(diffs) > limit else [])


def check_same_batch(old: Manifest, new: Manifest, where: Path) -> None:
    """Raise ResumeRefused naming what differs between the stored batch and the asked-for one."""
    hint = (f"Resume with the same graph and sweeps, or start the changed batch in another --out "
            f"folder (the outputs in {where} were made by the old one).")
    if old.graph_sha256 != new.graph_sha256:
        lines = "; ".join(_graph_differences(old.graph, new.graph)) or "the graph differs"
        raise ResumeRefused(f"cannot resume {where}: the graph changed since the batch started "
                            f"({lines}). {hint}")
    old_s = [(s.node, s.param, list(s.values)) for s in old.sweeps]
    new_s = [(s.node, s.param, list(s.values)) for s in new.sweeps]
    if old_s != new_s:
        raise ResumeRefused(f"cannot resume {where}: the sweeps changed since the batch started "
                            f"(was {_describe(old.sweeps)}; now {_describe(new.sweeps)}). {hint}")
    if [i.key for i in old.items] != [i.key for i in new.items]:
        why = []
        if old.nodegraph_version != new.nodegraph_version:
            why.append(f"NodeGraph {old.nodegraph_version} → {new.nodegraph_version}")
        old_m = {k: v for i in old.items for k, v in i.models.items()}
        new_m = {k: v for i in new.items for k, v in i.models.items()}
        for name in sorted(set(old_m) | set(new_m)):
            if old_m.get(name) != new_m.get(name):
                why.append(f"model file {name} changed (sha256 {str(old_m.get(name))[:12]} → "
                           f"{str(new_m.get(name))[:12]})")
        raise ResumeRefused(f"cannot resume {where}: the items' keys changed "
                            f"({'; '.join(why) or 'their inputs differ'}). {hint}")


def _describe(sweeps: list[Sweep]) -> str:
    if not sweeps:
        return "no sweeps"
    return ", ".join(f"{s.name} ({len(s.values)} values)" for s in sweeps)


def open_batch(out_dir: Path, manifest: Manifest, *, resume: bool) -> Manifest:
    """Start the batch in ``out_dir`` or continue it. Returns the manifest in force; raises
    ResumeRefused if the folder holds another batch or a batch without ``resume``, WriteError if the
    folder cannot be made or written (a file in the way, no permission, …)."""
    with writing(out_dir, "use the batch folder"):
        out_dir.mkdir(parents=True, exist_ok=True)
    old = read_manifest(out_dir)
    if old is None:
        with writing(out_dir / MANIFEST):
            manifest.write(out_dir)
        return manifest
    if not resume:
        raise ResumeRefused(f"{out_dir} already holds a batch ({MANIFEST}, {len(old.items)} items, "
                            f"started {old.created}); add --resume to continue it, or choose another "
                            "--out folder")
    check_same_batch(old, manifest, out_dir)
    return old


def manifest_from_folder(out_dir: str | os.PathLike[str]) -> Manifest:
    """The manifest of an existing batch (for ``--resume`` without GRAPH)."""
    found = read_manifest(Path(out_dir))
    if found is None:
        raise UsageError(f"{out_dir} holds no batch ({MANIFEST} is missing): give the GRAPH and "
                         "--sweep arguments to start one")
    return found
