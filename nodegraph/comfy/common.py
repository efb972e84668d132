"""What the ComfyUI importers share: the import report, placeholder nodes, ComfyUI's own conventions.

A node whose ComfyUI type NodeGraph does not have becomes a *placeholder*: a node of that type (so
the editor shows it with its links, and validation reports it) whose ``comfyui`` field keeps what
ComfyUI stored for it — its widget values or API inputs, its sockets — so that the graph file holds
everything the workflow held. A placeholder never runs: the engine has no spec for its type.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Union

from ..errors import GraphLoadError, Problem, UsageError
from ..graph import Graph, Node
from ..registry import INT, NodeSpec, ParamSpec

COMFY_KEY = "comfyui"
"""The node field (``Node.extra[COMFY_KEY]``) that keeps ComfyUI data with no NodeGraph equivalent."""

CONTROL_VALUES = ("fixed", "increment", "decrement", "randomize", "increment-wrap")
"""The values of ComfyUI's "control after generate" widget: our control_after_run's words, and the
newer frontend's ``increment-wrap`` (our ``increment`` wraps anyway)."""

SEED_NAMES = ("seed", "noise_seed")
"""INT inputs ComfyUI's frontend gives a "control after generate" widget unless their definition says
otherwise (``control_after_generate``, which can also ask for one on any INT)."""


def control_mode(value: str) -> str:
    """Our control_after_run mode for a ComfyUI control value."""
    return "increment" if value == "increment-wrap" else value

EXTRA_WIDGETS: dict[str, tuple[str, ...]] = {
    "LoadImage": ("upload",),
    "LoadImageMask": ("upload",),
    "Canny": ("device",),
    "VAEDecodeTiled": ("temporal_size", "temporal_overlap"),
    "VAEEncodeTiled": ("temporal_size", "temporal_overlap"),
}
"""Widgets ComfyUI has after the ones we map, by node type, in its order: the image loaders' upload
button's value, newer ComfyUI's Canny device choice, and the tiled VAE nodes' video-only inputs. Their
values are kept (``comfyui.inputs``) and written back on export."""

PROMPT_PARAMS = frozenset({("CLIPTextEncode", "text"), ("CLIPTextEncodeSDXL", "text_g"),
                           ("CLIPTextEncodeSDXL", "text_l"), ("CLIPTextEncodeSDXLRefiner", "text")})
"""Params holding prompt text, whose square brackets the importers escape (see prompt_text.py)."""

SpecsArg = Union[Mapping[str, NodeSpec], Callable[[], Mapping[str, NodeSpec]], None]


def takes_control_value(param: ParamSpec) -> bool:
    """Whether ComfyUI stores a "control after generate" value right after this param's value."""
    return param.kind == INT and (param.control_after_run is not None or param.name in SEED_NAMES)


def resolve_specs(specs: SpecsArg) -> Mapping[str, NodeSpec]:
    """The node specs to map ComfyUI types onto: given, or computed by the function given."""
    if specs is None:
        raise UsageError("importing ComfyUI data needs the node specs its types map onto: pass a "
                         "registry's nodes (api.load and Session.load pass their registry's)")
    if callable(specs):
        return specs()
    return specs


def mapped_spec(specs: Mapping[str, NodeSpec], class_type: Any) -> NodeSpec | None:
    """Our spec for a ComfyUI class: a built-in type of the same name (packs' ids have a dot)."""
    if not isinstance(class_type, str) or not class_type or "." in class_type:
        return None
    return specs.get(class_type)


@dataclass
class ImportReport:
    """What an import did besides the plain mapping, for the CLI and the editor to show.

    ``unknown`` counts placeholder nodes by ComfyUI type; ``notes`` are one-line remarks (values
    that did not fit, things resolved or left out), each naming its node.
    """

    kind: str
    """``"workflow"`` (UI format) or ``"prompt"`` (API format)."""
    version: Any = None
    unknown: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """Human-readable summary lines (empty when there is nothing to say)."""
        out = []
        if self.unknown:
            listed = ", ".join(f"{t} ×{n}" for t, n in sorted(self.unknown.items()))
            out.append(f"{sum(self.unknown.values())} node(s) of ComfyUI types NodeGraph does not have "
                       f"are kept as placeholders (they cannot run): {listed}")
        out.extend(self.notes)
        return out


def import_error(message: str, source: str | None = None, field: str | None = None) -> GraphLoadError:
    """The one error an import raises: the data is not a readable ComfyUI workflow or prompt."""
    return GraphLoadError([Problem("bad_comfyui", message, field=field)], source)


# -- placeholders ------------------------------------------------------------------------------------
def make_placeholder(node_id: str, class_type: str, kept: dict[str, Any], **fields: Any) -> Node:
    """A node of an unknown ComfyUI type that keeps ComfyUI's data for it (``kept``)."""
    data = {"placeholder": True}
    data.update(kept)
    node = Node(node_id, class_type, **fields)
    node.extra[COMFY_KEY] = data
    return node


def is_placeholder(node: Node) -> bool:
    data = node.extra.get(COMFY_KEY)
    return isinstance(data, dict) and data.get("placeholder") is True


def placeholder_message(node: Node) -> str | None:
    """The validation message for a placeholder node (None if the node is not one)."""
    if not is_placeholder(node):
        return None
    subgraph = node.extra[COMFY_KEY].get("subgraph")
    if subgraph:
        what = (f"a ComfyUI subgraph ({subgraph!r}), which NodeGraph does not import yet; it is kept as "
                "a placeholder with its ComfyUI data")
    else:
        what = (f"ComfyUI node type {node.type!r} has no NodeGraph equivalent; the node is kept as a "
                "placeholder with its ComfyUI data")
    return (f"{what} and cannot run. Install a node pack that provides it, or replace or delete the "
            "node")


def placeholder_counts(graph: Graph) -> Counter[str]:
    """Placeholder nodes by ComfyUI type (muted ones included)."""
    return Counter(n.type for n in graph.nodes.values() if is_placeholder(n))


def placeholder_problems(graph: Graph) -> list[Problem]:
    """One warning listing the placeholder types with their counts (each node's own error says
    that it cannot run)."""
    counts = placeholder_counts(graph)
    if not counts:
        return []
    listed = ", ".join(f"{t} ×{n}" for t, n in sorted(counts.items()))
    return [Problem("comfyui_placeholders", f"{sum(counts.values())} placeholder node(s) for ComfyUI "
                    f"types NodeGraph does not have: {listed}", severity="warning")]


def kept_inputs(node: Node) -> dict[str, Any]:
    """ComfyUI input values of a mapped node that have no param here (e.g. LoadImage's ``upload``),
    kept by the importers so the export gives them back."""
    data = node.extra.get(COMFY_KEY)
    if not isinstance(data, dict) or data.get("placeholder"):
        return {}
    inputs = data.get("inputs")
    return dict(inputs) if isinstance(inputs, dict) else {}
