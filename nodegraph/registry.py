"""Node types as data: NodeSpec, its params/inputs/outputs, socket types, and the Registry.

A node type is a :class:`NodeSpec` (id, names, typed inputs, params, typed outputs, flags)
plus one plain callable that does the work. Node packs build specs with the :func:`node`
decorator and the param helpers (:func:`Int`, :func:`Float`, :func:`String`, :func:`Boolean`,
:func:`Combo`) and hand them to the engine through the ``nodegraph_register_nodes`` hook.
"""
from __future__ import annotations

import difflib
import inspect
import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Union

from .errors import RegistryError, UnknownNodeType

if TYPE_CHECKING:
    from pathlib import Path

    from .context import RunOptions

INT, FLOAT, STRING, BOOLEAN, COMBO = "INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"
PARAM_KINDS = (INT, FLOAT, STRING, BOOLEAN, COMBO)
CONTROL_MODES = ("fixed", "increment", "decrement", "randomize")
ANY = "*"
BUILTIN_PACK = "builtin"
"""The pack name of the built-in node pack (``nodes/``); its type ids are not namespaced."""

ChoicesProvider = Callable[..., Sequence[Any]]
"""``provider(options: RunOptions) -> list of choices``; called whenever choices are needed."""

ModelLocator = Callable[[str, "RunOptions"], "Path | None"]
"""``locate(name, options) -> Path | None``: the model file a param value names (the
``nodegraph_model_locators`` hook)."""

_KIND_WORDS = {
    INT: "a whole number such as 20",
    FLOAT: "a number such as 7.5",
    STRING: "a text string",
    BOOLEAN: "true or false",
    COMBO: "one of the listed choices",
}


def _json_type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _arity(fn: Callable[..., Any]) -> int:
    """How many positional arguments ``fn`` accepts (2 means "two or more")."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 1
    n = 0
    for p in params:
        if p.kind is p.VAR_POSITIONAL:
            return 2
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            n += 1
    return n


@dataclass(frozen=True)
class SocketType:
    """A data type that flows along links, with the colour editors draw its sockets and wires in."""

    name: str
    color: str = "#8c8c8c"
    description: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "color": self.color, "description": self.description}


@dataclass(frozen=True)
class InputSpec:
    """A socket input: ``name`` → ``type``. Optional inputs may stay unconnected."""

    name: str
    type: str
    optional: bool = False
    description: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "optional": self.optional,
            "description": self.description,
        }


@dataclass(frozen=True)
class OutputSpec:
    """A typed output. Links name outputs by ``name`` (ComfyUI names them after their type)."""

    name: str
    type: str
    description: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "description": self.description}


@dataclass(frozen=True)
class ParamSpec:
    """A value edited on the node itself (a ComfyUI "widget").

    ``kind`` is INT, FLOAT, STRING, BOOLEAN or COMBO. ``choices`` (COMBO) is a sequence or a
    provider ``f(options) -> sequence`` evaluated at validate/run time (e.g. model files).
    ``control_after_run`` (INT only, e.g. seeds) is the default mode — fixed, increment,
    decrement or randomize — that editors apply after each run; None means not offered.
    A link into a param of the same name overrides its value (socket type = ``socket_type``).
    """

    name: str
    kind: str
    default: Any = None
    min: float | None = None
    max: float | None = None
    step: float | None = None
    choices: Sequence[Any] | ChoicesProvider | None = None
    multiline: bool = False
    control_after_run: str | None = None
    description: str = ""
    check_unlisted: Callable[[Any, RunOptions | None], str | None] | None = None
    """COMBO only: consulted for a value that is not among the choices. It returns None to accept
    the value anyway (e.g. an image path outside the input folder) or the message saying why not
    (e.g. which folders were searched for a model file and what they hold)."""
    multiple_of: int | None = None
    """INT only: the value must be a multiple of this (validation rejects others, naming the two
    nearest good values). Unlike ``step``, an editor hint as in ComfyUI, this is enforced."""

    def __post_init__(self) -> None:
        where = f"param {self.name!r}"
        if self.kind not in PARAM_KINDS:
            raise RegistryError(f"{where}: kind {self.kind!r} is not one of {', '.join(PARAM_KINDS)}")
        if self.kind == COMBO:
            if self.choices is None:
                raise RegistryError(f"{where}: a COMBO param needs choices (a list or a provider)")
            if not callable(self.choices):
                object.__setattr__(self, "choices", tuple(self.choices))
                if self.default is None and self.choices:
                    object.__setattr__(self, "default", self.choices[0])
        elif self.choices is not None:
            raise RegistryError(f"{where}: only COMBO params take choices")
        if self.control_after_run is not None:
            if self.kind != INT:
                raise RegistryError(f"{where}: control_after_run is only for INT params (seeds)")
            if self.control_after_run not in CONTROL_MODES:
                raise RegistryError(
                    f"{where}: control_after_run {self.control_after_run!r} is not one of "
                    + ", ".join(CONTROL_MODES)
                )
        if self.min is not None and self.max is not None and self.min > self.max:
            raise RegistryError(f"{where}: min {self.min} is above max {self.max}")
        if self.multiple_of is not None and (self.kind != INT or type(self.multiple_of) is not int
                                             or self.multiple_of < 1):
            raise RegistryError(f"{where}: multiple_of is for INT params and must be a positive integer")
        if self.kind != COMBO or not callable(self.choices):
            bad = self.check(self.default, None)
            if bad is not None:
                raise RegistryError(f"{where}: default {self.default!r} is invalid: {bad[1]}")

    @property
    def socket_type(self) -> str:
        """The socket type a link into this param must carry (COMBO params take STRING)."""
        return STRING if self.kind == COMBO else self.kind

    def resolve_choices(self, options: RunOptions | None = None) -> tuple[Any, ...]:
        """The current choices of a COMBO param (calls the provider if there is one)."""
        if self.choices is None:
            return ()
        if callable(self.choices):
            from .context import RunOptions

            fn = self.choices
            got = fn(options or RunOptions()) if _arity(fn) >= 1 else fn()
            return tuple(got)
        return tuple(self.choices)

    def check(self, value: Any, options: RunOptions | None = None,
              choices: Sequence[Any] | None = None) -> tuple[str, str] | None:
        """Check one value. Returns ``(code, message)`` or None when the value is fine.

        ``choices`` lets a caller pass already-resolved choices (validation resolves a provider
        once per pass).
        """
        kind = self.kind
        if kind == INT:
            if type(value) is not int:
                return "wrong_kind", (
                    f"{_short(value)} is {_json_type_name(value)}, expected {_KIND_WORDS[INT]}"
                )
        elif kind == FLOAT:
            if type(value) not in (int, float):
                return "wrong_kind", (
                    f"{_short(value)} is {_json_type_name(value)}, expected {_KIND_WORDS[FLOAT]}"
                )
            if not math.isfinite(value):
                return "wrong_kind", f"{value} is not a finite number"
        elif kind == STRING:
            if type(value) is not str:
                return "wrong_kind", (
                    f"{_short(value)} is {_json_type_name(value)}, expected {_KIND_WORDS[STRING]}"
                )
            return _lone_surrogate(value)
        elif kind == BOOLEAN:
            if type(value) is not bool:
                return "wrong_kind", (
                    f"{_short(value)} is {_json_type_name(value)}, expected {_KIND_WORDS[BOOLEAN]}"
                )
            return None
        else:  # COMBO
            if choices is None:
                choices = self.resolve_choices(options)
            try:
                ok = value in choices
            except TypeError:
                ok = False
            if not ok:
                if self.check_unlisted is not None:
                    why = self.check_unlisted(value, options)
                    return None if why is None else ("bad_choice", why)
                return "bad_choice", _choice_message(value, choices)
            return None
        if self.min is not None and value < self.min:
            return "below_min", f"{value} is below the minimum {self.min}"
        if self.max is not None and value > self.max:
            return "above_max", f"{value} is above the maximum {self.max}"
        m = self.multiple_of
        if m is not None and value % m:
            lower, upper = value - value % m, value - value % m + m
            near = " or ".join(str(v) for v in (lower, upper)
                               if (self.min is None or v >= self.min) and (self.max is None or v <= self.max))
            return "not_multiple", f"{value} is not a multiple of {m}" + (f"; use {near}" if near else "")
        return None

    def to_json(self, options: RunOptions | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "default": self.default,
            "description": self.description,
        }
        for key in ("min", "max", "step", "multiple_of"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.kind == COMBO:
            out["dynamic_choices"] = callable(self.choices)
            try:
                out["choices"] = list(self.resolve_choices(options))
            except Exception as exc:  # a provider failing must not break listing
                out["choices"] = []
                out["choices_error"] = f"{type(exc).__name__}: {exc}"
        if self.multiline:
            out["multiline"] = True
        if self.control_after_run is not None:
            out["control_after_run"] = self.control_after_run
        return out


def _lone_surrogate(text: str) -> tuple[str, str] | None:
    """A lone surrogate (U+D800…U+DFFF: valid in a JSON string, but not a character) cannot be written
    to a file name, an image's text chunk or a tokenizer; refuse it where the value is checked."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return "bad_text", (f"contains a lone surrogate (U+{ord(text[exc.start]):04X} at position "
                            f"{exc.start}), which is not a character and cannot be saved; delete it "
                            "or retype the text")
    return None


def _choice_message(value: Any, choices: Sequence[Any]) -> str:
    if not choices:
        return f"{_short(value)} is not a valid choice: there are no choices available"
    listed = ", ".join(str(c) for c in list(choices)[:8])
    if len(choices) > 8:
        listed += f", ... ({len(choices) - 8} more)"
    msg = f"{_short(value)} is not one of the choices: {listed}"
    if isinstance(value, str):
        close = difflib.get_close_matches(value, [str(c) for c in choices], n=1)
        if close:
            msg += f" (did you mean {close[0]!r}?)"
    return msg


def Int(name: str, default: int = 0, *, min: int | None = None, max: int | None = None,
        step: int | None = None, control_after_run: str | None = None,
        description: str = "", multiple_of: int | None = None) -> ParamSpec:
    """An integer param. ``control_after_run`` (e.g. "randomize") marks a seed; ``multiple_of``
    makes validation reject values that are not multiples of it (``step`` is only an editor hint)."""
    return ParamSpec(name, INT, default, min=min, max=max, step=step,
                     control_after_run=control_after_run, description=description, multiple_of=multiple_of)


def Float(name: str, default: float = 0.0, *, min: float | None = None, max: float | None = None,
          step: float | None = None, description: str = "") -> ParamSpec:
    """A floating-point param (integers in a file are accepted as floats)."""
    return ParamSpec(name, FLOAT, default, min=min, max=max, step=step, description=description)


def String(name: str, default: str = "", *, multiline: bool = False,
           description: str = "") -> ParamSpec:
    """A text param; ``multiline`` asks editors for a text box (prompts)."""
    return ParamSpec(name, STRING, default, multiline=multiline, description=description)


def Boolean(name: str, default: bool = False, *, description: str = "") -> ParamSpec:
    """A true/false param."""
    return ParamSpec(name, BOOLEAN, default, description=description)


def Combo(name: str, choices: Sequence[Any] | ChoicesProvider, default: Any = None, *,
          description: str = "",
          check_unlisted: Callable[[Any, RunOptions | None], str | None] | None = None) -> ParamSpec:
    """A choice among ``choices`` (a list, or a provider ``f(options)`` evaluated when needed).
    ``check_unlisted(value, options)`` may accept a value that is not listed (return None) or
    explain why it is refused (return the message)."""
    return ParamSpec(name, COMBO, default, choices=choices, description=description,
                     check_unlisted=check_unlisted)


_spec_tokens = itertools.count(1)

InputsArg = Union[Mapping[str, str], Iterable[Union[InputSpec, str]]]
OutputsArg = Union[Mapping[str, str], Iterable[Union[OutputSpec, str]]]


def _as_inputs(inputs: InputsArg) -> tuple[InputSpec, ...]:
    if isinstance(inputs, Mapping):
        return tuple(InputSpec(n, t) for n, t in inputs.items())
    out = []
    for item in inputs:
        if isinstance(item, str):
            raise RegistryError(f"input {item!r}: give InputSpec(name, type) or a dict name -> type")
        out.append(item)
    return tuple(out)


def _as_outputs(outputs: OutputsArg) -> tuple[OutputSpec, ...]:
    if isinstance(outputs, Mapping):
        return tuple(OutputSpec(n, t) for n, t in outputs.items())
    return tuple(OutputSpec(o, o) if isinstance(o, str) else o for o in outputs)


@dataclass(frozen=True)
class NodeSpec:
    """A node type: what the editor shows, what validation checks, what the executor calls.

    ``function`` receives every param and every connected input as keyword arguments (unconnected
    optional inputs are left out, so give them defaults), plus ``ctx`` (a RunContext) if it has a
    parameter named ``ctx``. It returns the value itself for one output, a tuple in output order
    for several, None for none.
    """

    type_id: str
    function: Callable[..., Any]
    display_name: str = ""
    category: str = ""
    description: str = ""
    inputs: tuple[InputSpec, ...] = ()
    params: tuple[ParamSpec, ...] = ()
    outputs: tuple[OutputSpec, ...] = ()
    output_node: bool = False
    not_cacheable: bool = False
    fingerprint: Callable[..., str] | None = None
    pack: str = ""
    # Derived (filled in __post_init__): lookups and calling convention.
    takes_context: bool = field(default=False, init=False, compare=False, repr=False)
    fingerprint_takes_options: bool = field(default=False, init=False, compare=False, repr=False)
    token: str = field(default="", init=False, compare=False, repr=False)
    param_names: frozenset[str] = field(default=frozenset(), init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        where = f"node type {self.type_id!r}"
        if not isinstance(self.type_id, str) or not self.type_id:
            raise RegistryError("a node type id must be a non-empty string")
        if not callable(self.function):
            raise RegistryError(f"{where}: function must be callable")
        object.__setattr__(self, "inputs", _as_inputs(self.inputs))
        object.__setattr__(self, "outputs", _as_outputs(self.outputs))
        object.__setattr__(self, "params", tuple(self.params))
        if not self.display_name:
            object.__setattr__(self, "display_name", self.type_id.rsplit(".", 1)[-1])
        seen: set[str] = set()
        for name in [i.name for i in self.inputs] + [p.name for p in self.params]:
            if name in seen:
                raise RegistryError(f"{where}: input/param name {name!r} is used twice")
            if name == "ctx":
                raise RegistryError(f"{where}: 'ctx' is reserved for the run context")
            seen.add(name)
        out_names = [o.name for o in self.outputs]
        if len(set(out_names)) != len(out_names):
            raise RegistryError(f"{where}: output names must be unique, got {out_names}")
        for p in self.params:
            if not isinstance(p, ParamSpec):
                raise RegistryError(f"{where}: params must be ParamSpec objects (use Int(...), ...)")
        try:
            takes = "ctx" in inspect.signature(self.function).parameters
        except (TypeError, ValueError):
            takes = False
        object.__setattr__(self, "takes_context", takes)
        object.__setattr__(self, "fingerprint_takes_options",
                           self.fingerprint is not None and _arity(self.fingerprint) >= 2)
        object.__setattr__(self, "token", f"{self.type_id}#{next(_spec_tokens)}")
        object.__setattr__(self, "param_names", frozenset(p.name for p in self.params))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the node's function directly (handy in tests)."""
        return self.function(*args, **kwargs)

    def input(self, name: str) -> InputSpec | None:
        for i in self.inputs:
            if i.name == name:
                return i
        return None

    def param(self, name: str) -> ParamSpec | None:
        for p in self.params:
            if p.name == name:
                return p
        return None

    def output(self, name: str) -> OutputSpec | None:
        for o in self.outputs:
            if o.name == name:
                return o
        return None

    def output_index(self, name: str) -> int:
        for i, o in enumerate(self.outputs):
            if o.name == name:
                return i
        return -1

    def default_params(self) -> dict[str, Any]:
        """Every param at its default (what an editor puts on a new node)."""
        return {p.name: p.default for p in self.params}

    def fingerprint_of(self, params: dict[str, Any], options: RunOptions) -> str | None:
        """The node's fingerprint for ``params`` (defaults filled in): ``fingerprint(params)``, or
        ``fingerprint(params, options)`` when it takes two arguments (e.g. a model file found through
        the run's model folders); None for a node without one. Raises what the fingerprint raises."""
        fn = self.fingerprint
        if fn is None:
            return None
        if self.fingerprint_takes_options:
            return str(fn(params, options))  # type: ignore[call-arg]
        return str(fn(params))  # type: ignore[call-arg]

    def to_json(self, options: RunOptions | None = None) -> dict[str, Any]:
        return {
            "type": self.type_id,
            "display_name": self.display_name,
            "category": self.category,
            "description": self.description,
            "pack": self.pack,
            "inputs": [i.to_json() for i in self.inputs],
            "params": [p.to_json(options) for p in self.params],
            "outputs": [o.to_json() for o in self.outputs],
            "output_node": self.output_node,
            "not_cacheable": self.not_cacheable,
            "has_fingerprint": self.fingerprint is not None,
        }


def node(type_id: str, *, display_name: str = "", category: str = "", description: str | None = None,
         inputs: InputsArg = (), params: Iterable[ParamSpec] = (), outputs: OutputsArg = (),
         output_node: bool = False, not_cacheable: bool = False,
         fingerprint: Callable[..., str] | None = None,
         ) -> Callable[[Callable[..., Any]], NodeSpec]:
    """Decorator turning a function into a :class:`NodeSpec` (the docstring becomes the description).

    >>> @node("Add", inputs={"a": "INT"}, params=[Int("b", 1)], outputs={"sum": "INT"})
    ... def add(a, b):
    ...     return a + b
    """

    def wrap(fn: Callable[..., Any]) -> NodeSpec:
        desc = description if description is not None else inspect.cleandoc(fn.__doc__ or "")
        return NodeSpec(type_id, fn, display_name=display_name, category=category, description=desc,
                        inputs=_as_inputs(inputs), params=tuple(params), outputs=_as_outputs(outputs),
                        output_node=output_node, not_cacheable=not_cacheable, fingerprint=fingerprint)

    return wrap


CORE_TYPES = (
    SocketType(ANY, "#c8c8c8", "accepts any type"),
    SocketType(INT, "#6fa8dc", "an integer"),
    SocketType(FLOAT, "#76c6b0", "a floating-point number"),
    SocketType(STRING, "#93c47d", "text"),
    SocketType(BOOLEAN, "#c27ba0", "true or false"),
)


def qualify(pack: str | None, type_id: str) -> str:
    """The registered id of ``type_id`` from ``pack``: bare for the built-in pack, else ``pack.Id``."""
    if not pack or pack == BUILTIN_PACK or type_id.startswith(pack + "."):
        return type_id
    return f"{pack}.{type_id}"


@dataclass
class PackInfo:
    """A node pack the engine tried to load: where it came from, what it registered, or why it failed."""

    name: str
    source: str
    kind: str  # "builtin", "entry point", "folder", "object"
    status: str = "loaded"  # or "failed", or "skipped" (could not even be looked at: ``error`` says why)
    error: str = ""  # one line
    traceback: str = ""
    node_types: list[str] = field(default_factory=list)
    socket_types: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "kind": self.kind,
            "status": self.status,
            "error": self.error,
            "traceback": self.traceback,
            "node_types": list(self.node_types),
            "socket_types": list(self.socket_types),
        }


class Registry:
    """Known socket types, node types and node packs. Fill it with :func:`nodegraph.plugins.load_registry`
    (or, in tests, with :meth:`add_node`)."""

    def __init__(self) -> None:
        self.types: dict[str, SocketType] = {t.name: t for t in CORE_TYPES}
        self.nodes: dict[str, NodeSpec] = {}
        self.packs: list[PackInfo] = []
        """Every pack the loader tried, in load order (failed ones included)."""
        self.model_locators: list[ModelLocator] = []
        """What the packs' ``nodegraph_model_locators`` hooks returned, in pack order."""

    # -- filling ---------------------------------------------------------------------------
    def add_type(self, socket_type: SocketType) -> SocketType:
        """Register a socket type; registering the same name again keeps the first definition."""
        if not isinstance(socket_type, SocketType):
            raise RegistryError(f"expected a SocketType, got {type(socket_type).__name__}")
        return self.types.setdefault(socket_type.name, socket_type)

    def check_node(self, spec: NodeSpec, pack: str | None = None) -> NodeSpec:
        """Return ``spec`` as it would be registered (namespaced, pack set), or raise RegistryError."""
        if not isinstance(spec, NodeSpec):
            raise RegistryError(
                f"expected a NodeSpec (made with @node or NodeSpec(...)), got {type(spec).__name__}")
        qualified = qualify(pack, spec.type_id)
        if qualified != spec.type_id or (pack and spec.pack != pack):
            serial = spec.token.rsplit("#", 1)[1]
            spec = replace(spec, type_id=qualified, pack=pack or "")
            # Same function, same cache identity: keep the original's serial in the token.
            object.__setattr__(spec, "token", f"{qualified}#{serial}")
        existing = self.nodes.get(spec.type_id)
        if existing is not None:
            raise RegistryError(
                f"node type {spec.type_id!r} is registered by both pack {existing.pack or '(none)'!r} "
                f"and pack {spec.pack or '(none)'!r}; remove or rename one of them")
        sockets = [(f"input {i.name!r}", i.type) for i in spec.inputs]
        sockets += [(f"output {o.name!r}", o.type) for o in spec.outputs]
        for where, t in sockets:
            if t not in self.types:
                raise RegistryError(
                    f"node type {spec.type_id!r} {where} uses socket type {t!r}, which no pack "
                    "registers; register it with the nodegraph_register_types hook")
        return spec

    def add_node(self, spec: NodeSpec, pack: str | None = None) -> NodeSpec:
        """Register a node type (namespaced by ``pack`` unless it is the built-in pack)."""
        spec = self.check_node(spec, pack)
        self.nodes[spec.type_id] = spec
        return spec

    # -- lookup ----------------------------------------------------------------------------
    def get(self, type_id: str) -> NodeSpec | None:
        return self.nodes.get(type_id)

    def __getitem__(self, type_id: str) -> NodeSpec:
        spec = self.nodes.get(type_id)
        if spec is None:
            raise UnknownNodeType(self.unknown_type_message(type_id))
        return spec

    def __contains__(self, type_id: object) -> bool:
        return type_id in self.nodes

    def __len__(self) -> int:
        return len(self.nodes)

    def compatible(self, output_type: str, input_type: str) -> bool:
        """Whether an output of ``output_type`` may feed an input of ``input_type``."""
        return output_type == input_type or output_type == ANY or input_type == ANY

    def color(self, socket_type: str) -> str:
        t = self.types.get(socket_type)
        return t.color if t else "#8c8c8c"

    def default_params(self, type_id: str) -> dict[str, Any]:
        return self[type_id].default_params()

    def locate_model(self, name: str, options: RunOptions) -> Path | None:
        """The model file ``name`` names, as the first of the packs' model locators finds it (None
        if none does)."""
        for locate in self.model_locators:
            path = locate(name, options)
            if path is not None:
                return path
        return None

    def pack(self, name: str) -> PackInfo | None:
        """The loaded pack of that name, else a failed one, else None."""
        found = [p for p in self.packs if p.name == name]
        return next((p for p in found if p.status == "loaded"), found[0] if found else None)

    def unknown_type_message(self, type_id: str) -> str:
        """Explain an unknown type id: which pack would provide it and whether that pack failed."""
        msg = f"unknown node type {type_id!r}"
        if "." in type_id:
            pack_name = type_id.split(".", 1)[0]
            pack = self.pack(pack_name)
            if pack is None:
                msg += (f": it comes from node pack {pack_name!r}, which is not installed; put it in "
                        "a plugins folder or pip install it")
            elif pack.status == "failed":
                msg += f": node pack {pack_name!r} failed to load ({pack.error}); see `nodegraph plugins`"
            else:
                msg += f": node pack {pack_name!r} is loaded but has no such node"
        else:
            builtin = self.pack(BUILTIN_PACK)
            if builtin is not None and builtin.status == "failed":
                msg += f": the built-in node pack failed to load ({builtin.error})"
            else:
                msg += ": it is not a built-in node type"
        close = difflib.get_close_matches(type_id, list(self.nodes), n=1)
        if close:
            msg += f" (did you mean {close[0]!r}?)"
        return msg

    def to_json(self, options: RunOptions | None = None) -> dict[str, Any]:
        """Everything an editor or a doc generator needs: socket types, node specs, packs."""
        return {
            "types": {name: t.to_json() for name, t in sorted(self.types.items())},
            "nodes": [s.to_json(options) for _, s in sorted(self.nodes.items())],
            "packs": [p.to_json() for p in self.packs],
        }
