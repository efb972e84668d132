"""Sweeps: ``NODE.PARAM=SPEC`` expanded into typed values, and several sweeps into a grid.

SPEC is one of

- ``0:1000``    a half-open range (1000 values: 0 … 999),
- ``0:1000:7``  a range with a step (0, 7, 14, … 994); decimals work for FLOAT params
                (``1:2:0.25``) and are computed exactly, without float drift,
- ``a,b,c``     a list (spaces around each value are dropped),
- ``@file``     one value a line (blank lines skipped): the way to pass prompts with commas.

Every value is parsed by the param's kind with the same parser as ``--set`` and checked against the
param's limits, so a bad value is reported before anything runs. Several sweeps form a grid in
which the last sweep varies fastest (like nested loops written in the order given).
"""
from __future__ import annotations

import itertools
import math
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from ..overrides import parse_assignment
from ..context import RunOptions
from ..errors import UsageError
from ..graph import Graph
from ..registry import Registry

MAX_ITEMS = 10_000_000
"""A grid larger than this is refused (almost certainly a typo such as a missing step)."""

_NUMBER = r"\s*[-+]?\d+(?:\.\d+)?\s*"
_RANGE = re.compile(rf"^({_NUMBER}):({_NUMBER})(?::({_NUMBER}))?$")

Override = tuple[str, str, Any]
"""(node id, param name, value)."""


@dataclass(frozen=True)
class Sweep:
    """One swept param: the node id (titles are resolved), the param, the SPEC as written and the
    values in order."""

    node: str
    param: str
    spec: str
    values: tuple[Any, ...]

    @property
    def name(self) -> str:
        return f"{self.node}.{self.param}"

    def to_json(self) -> dict[str, Any]:
        return {"node": self.node, "param": self.param, "spec": self.spec, "values": list(self.values)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Sweep:
        return cls(str(data["node"]), str(data["param"]), str(data.get("spec", "")),
                   tuple(data["values"]))


def range_bounds(spec: str) -> tuple[int, str, str] | None:
    """(number of values, first, last) of a range SPEC without listing its values (``"0:1000:7"`` →
    ``(143, "0", "994")``), or None if SPEC is not a range. Raises UsageError for a zero step, an
    empty range or one of more than MAX_ITEMS values."""
    start, step, count = _range(spec) or (None, None, 0)
    if start is None:
        return None
    return count, _decimal_text(start), _decimal_text(start + (count - 1) * step)


def range_values(spec: str) -> list[str] | None:
    """The values of a range SPEC as text (``"0:3"`` → ``["0", "1", "2"]``), or None if SPEC is not
    a range. Raises UsageError as :func:`range_bounds`."""
    got = _range(spec)
    if got is None:
        return None
    start, step, count = got
    return [_decimal_text(start + i * step) for i in range(count)]


def _range(spec: str) -> tuple[Decimal, Decimal, int] | None:
    m = _RANGE.match(spec)
    if m is None:
        return None
    start, stop = Decimal(m.group(1).strip()), Decimal(m.group(2).strip())
    step = Decimal(m.group(3).strip()) if m.group(3) else Decimal(1)
    if step == 0:
        raise UsageError(f"range {spec!r}: the step must not be 0")
    count = math.ceil((stop - start) / step)
    if count <= 0:
        raise UsageError(f"range {spec!r} is empty (a range start:stop[:step] stops before stop; "
                         "use a negative step to count down)")
    if count > MAX_ITEMS:
        raise UsageError(f"range {spec!r} has {count} values; at most {MAX_ITEMS} are allowed")
    return start, step, count


def _decimal_text(d: Decimal) -> str:
    if d == d.to_integral_value():
        return str(int(d))
    return format(d.normalize(), "f")


def raw_values(spec: str, *, base_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """The values of SPEC as text, before parsing by kind (see the module docstring)."""
    if spec.startswith("@"):
        path = Path(spec[1:]).expanduser()
        if base_dir is not None and not path.is_absolute():
            path = Path(base_dir) / path
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read the values file {str(path)!r}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise UsageError(f"the values file {str(path)!r} is not UTF-8 text") from None
        values = [line for line in text.splitlines() if line.strip()]
        if not values:
            raise UsageError(f"the values file {str(path)!r} has no values (one value a line)")
        return values
    ranged = range_values(spec)
    if ranged is not None:
        return ranged
    values = [v.strip() for v in spec.split(",")]
    if spec.strip() == "" or any(v == "" for v in values):
        raise UsageError(f"list {spec!r} has an empty value; write a,b,c (or use @file for values "
                         "that contain commas)")
    return values


def parse_sweep(graph: Graph, registry: Registry, text: str, *,
                options: RunOptions | None = None,
                base_dir: str | os.PathLike[str] | None = None) -> Sweep:
    """Parse ``NODE.PARAM=SPEC`` against a graph (NODE: id or unique title). Each value goes through
    the ``--set`` parser of its param's kind and is checked against the param's limits/choices."""
    key, sep, spec = text.partition("=")
    if not sep:
        raise UsageError(f"--sweep {text!r}: write NODE.PARAM=SPEC, e.g. 3.seed=0:100 or "
                         "\"Positive.text=@prompts.txt\"")
    try:
        raws = raw_values(spec, base_dir=base_dir)
    except UsageError as exc:
        raise UsageError(f"--sweep {text!r}: {exc}") from None
    node_id = param_name = None
    values: list[Any] = []
    param = None
    for raw in raws:
        node, name, value = parse_assignment(graph, registry, f"{key}={raw}", option="--sweep")
        if param is None:
            node_id, param_name = node.id, name
            param = registry[node.type].param(name)
        bad = param.check(value, options)  # type: ignore[union-attr]
        if bad is not None:
            raise UsageError(f"--sweep {text!r}: value {raw!r}: {bad[1]}")
        values.append(value)
    assert node_id is not None and param_name is not None
    return Sweep(node_id, param_name, spec, tuple(values))


def check_distinct(sweeps: Sequence[Sweep]) -> None:
    """Two sweeps of the same param would silently override each other: refuse."""
    seen: dict[str, int] = {}
    for i, s in enumerate(sweeps):
        if s.name in seen:
            raise UsageError(f"--sweep {s.name} is given twice (sweeps {seen[s.name] + 1} and {i + 1}); "
                             "merge the values into one sweep")
        seen[s.name] = i


def grid_size(sweeps: Sequence[Sweep]) -> int:
    """How many items the grid has (1 without sweeps: the graph as it is)."""
    return math.prod(len(s.values) for s in sweeps)


def expand(sweeps: Sequence[Sweep]) -> Iterator[tuple[Override, ...]]:
    """Every combination of the sweeps' values as overrides, the last sweep varying fastest."""
    size = grid_size(sweeps)
    if size > MAX_ITEMS:
        raise UsageError(f"the sweeps form {size} items; at most {MAX_ITEMS} are allowed")
    for combo in itertools.product(*(s.values for s in sweeps)):
        yield tuple((s.node, s.param, v) for s, v in zip(sweeps, combo))
