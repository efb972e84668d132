"""The sweep table's rows as plain data: which node params a graph offers to sweep, the rows a new
table starts with, and the size of the grid the rows form — counted with the engine's own sweep
parser (:mod:`nodegraph.batch.sweeps`: kinds, limits, choices, ``@file``), with errors per row.
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nodegraph.context import RunOptions
from nodegraph.errors import UsageError
from nodegraph.graph import Graph, Node, id_sort_key
from nodegraph.registry import Registry

SEED_PARAMS = ("seed", "noise_seed")
"""Params a new sweep table starts with (the first node that has one): KSampler.seed,
RandomNoise.noise_seed, …"""
DEFAULT_SEED_SPEC = "0:8"
LIVE_CHECK_LIMIT = 200_000
"""A range with more values than this is counted arithmetically while the user types, and only its
first and last values go through the param's parser and limits (the CLI checks every value)."""


@dataclass(frozen=True)
class SweepRow:
    """One row of the sweep table: node id, param name, SPEC as typed (``0:8``, ``a,b``, ``@f``)."""

    node: str
    param: str
    spec: str

    def argument(self, base_dir: str | os.PathLike[str] | None = None) -> str:
        """``NODE.PARAM=SPEC`` for ``--sweep``, a relative ``@file`` made absolute."""
        return f"{self.node}.{self.param}={resolve_spec(self.spec, base_dir)}"


def resolve_spec(spec: str, base_dir: str | os.PathLike[str] | None = None) -> str:
    """SPEC with a relative ``@file`` made absolute against ``base_dir`` (else the current folder),
    so the child process reads the same file whatever its working folder."""
    spec = spec.strip()
    if not spec.startswith("@"):
        return spec
    path = Path(spec[1:].strip()).expanduser()
    if not path.is_absolute():
        path = Path(base_dir) / path if base_dir is not None else Path.cwd() / path
    return "@" + str(path)


def node_label(node: Node, registry: Registry) -> str:
    """How the node combo names a node: ``3 · KSampler``, or ``3 · My title`` if it has one."""
    spec = registry.get(node.type)
    name = node.title or (spec.display_name if spec is not None and spec.display_name else node.type)
    return f"{node.id} · {name}"



def sweepable_nodes(graph: Graph, registry: Registry) -> list[tuple[str, str]]:
    """(id, label) of every node of a known type that has params, in id order."""
    found = []
    for node_id in sorted(graph.nodes, key=id_sort_key):
        node = graph.nodes[node_id]
        spec = registry.get(node.type)
        if spec is not None and spec.params:
            found.append((node_id, node_label(node, registry)))
    return found


def node_params(graph: Graph, registry: Registry, node_id: str) -> list[str]:
    """The param names of a node's spec (empty for an unknown node or type)."""
    node = graph.nodes.get(node_id)
    spec = registry.get(node.type) if node is not None else None
    return [p.name for p in spec.params] if spec is not None else []


def default_rows(graph: Graph, registry: Registry) -> list[SweepRow]:
    """The rows a new sweep table starts with: ``seed`` (or ``noise_seed``) of the first node that
    has one, over ``0:8``; none if the graph has no such param."""
    for node_id, _label in sweepable_nodes(graph, registry):
        names = node_params(graph, registry, node_id)
        for name in SEED_PARAMS:
            if name in names:
                return [SweepRow(node_id, name, DEFAULT_SEED_SPEC)]
    return []


@dataclass
class SweepCount:
    """The grid the rows form: its size, each row's number of values, and what is wrong."""

    total: int
    sizes: list[int]
    row_errors: dict[int, str] = field(default_factory=dict)
    error: str | None = None
    """The first problem (a row's, or the grid's: a param swept twice, too many items)."""

    @property
    def ok(self) -> bool:
        return self.error is None

    def describe(self) -> str:
        """``24 items: 3 × 8`` (``1 item: the graph as it is`` without sweeps)."""
        if not self.sizes:
            return "1 item: the graph as it is (no sweeps)"
        noun = "item" if self.total == 1 else "items"
        if len(self.sizes) == 1:
            return f"{self.total:,} {noun}"
        return f"{self.total:,} {noun}: " + " × ".join(f"{s:,}" for s in self.sizes)


def range_size(spec: str) -> tuple[int, str, str] | None:
    """(number of values, first, last) of a range SPEC (``0:1000:7``) without listing its values;
    None if SPEC is not a range or is empty/invalid (the engine's parser then says why)."""
    from nodegraph.batch.sweeps import range_bounds

    try:
        return range_bounds(spec)
    except UsageError:
        return None


def count_items(graph: Graph, registry: Registry, rows: Sequence[SweepRow], *,
                options: RunOptions | None = None,
                base_dir: str | os.PathLike[str] | None = None) -> SweepCount:
    """Parse each row with ``nodegraph.batch.sweeps.parse_sweep`` (the CLI's parser: kinds, limits,
    choices, ``@file``) and multiply the sizes. Ranges longer than :data:`LIVE_CHECK_LIMIT` are
    counted arithmetically and only their first and last values are parsed."""
    from nodegraph.batch.sweeps import MAX_ITEMS, Sweep, check_distinct, parse_sweep

    sizes: list[int] = []
    errors: dict[int, str] = {}
    parsed: list[Sweep] = []
    for i, row in enumerate(rows):
        if not row.node or not row.param:
            errors[i] = f"sweep {i + 1}: choose a node and a param"
            sizes.append(0)
            continue
        spec = resolve_spec(row.spec, base_dir)
        ranged = range_size(spec)
        try:
            if ranged is not None and LIVE_CHECK_LIMIT < ranged[0] <= MAX_ITEMS:
                count, first, last = ranged
                ends = parse_sweep(graph, registry, f"{row.node}.{row.param}={first},{last}",
                                   options=options)
                parsed.append(Sweep(ends.node, ends.param, spec, ends.values))
                sizes.append(count)
            else:
                sweep = parse_sweep(graph, registry, f"{row.node}.{row.param}={spec}",
                                    options=options)
                parsed.append(sweep)
                sizes.append(len(sweep.values))
        except UsageError as exc:
            errors[i] = str(exc)
            sizes.append(0)
    total = math.prod(sizes) if sizes else 1
    first_error = errors[min(errors)] if errors else None
    if first_error is None:
        try:
            check_distinct(parsed)
        except UsageError as exc:
            first_error = str(exc)
    if first_error is None and total > MAX_ITEMS:
        first_error = f"the sweeps form {total:,} items; at most {MAX_ITEMS:,} are allowed"
    return SweepCount(total, sizes, errors, first_error)
