"""A1111 hypernetworks: small MLPs that transform the keys and values of the U-Net's attention layers.

A hypernetwork file holds, per attention input width (320, 640, 768, 1280, …), two MLPs — one for the
keys' input, one for the values' — and its settings. Applied as a model patch on self- and cross-
attention alike (ComfyUI's HypernetworkLoader): for an input of width d with MLPs f_k, f_v,

    k_in ← k_in + strength·f_k(k_in),   v_in ← v_in + strength·f_v(v_in)

Each MLP is its Linear layers in order, each followed by the activation (unless it is the last and
``activate_output`` is off), and by a LayerNorm when ``is_layer_norm`` is on. Dropout layers are for
training only and are not applied (ComfyUI leaves them active, which makes its results random).

Files: A1111's ``.pt`` (read with the weights-only unpickler: ``{width: (k_state, v_state), "activation_func":
…, "is_layer_norm": …, "activate_output": …}``), or ``.safetensors`` with the tensors as
``<width>.<0 keys|1 values>.<layer key>`` and the settings in the header's metadata.
"""
from __future__ import annotations

import copy
import re
import threading
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .files import CheckpointError, load_pickle, read_safetensors_header, read_state_dict
from .patches import UNetHooks

ACTIVATIONS = {"linear": nn.Identity, "relu": nn.ReLU, "leakyrelu": nn.LeakyReLU, "elu": nn.ELU,
               "swish": nn.Hardswish, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "softsign": nn.Softsign,
               "mish": nn.Mish}
_LAYER_INDEX = re.compile(r"(?:.*\.)?(\d+)\.weight")


class Hypernetwork:
    """The MLP pairs of a hypernetwork by input width, with copies per device and dtype in use."""

    def __init__(self, layers: dict[int, tuple[nn.Sequential, nn.Sequential]], name: str) -> None:
        self.layers = layers
        self.name = name
        self._placed: dict[tuple[str, torch.dtype], dict[int, tuple[nn.Module, nn.Module]]] = {}
        self._lock = threading.Lock()

    def on(self, device: torch.device, dtype: torch.dtype) -> dict[int, tuple[nn.Module, nn.Module]]:
        key = (str(device), dtype)
        with self._lock:
            if key not in self._placed:
                self._placed[key] = {d: (copy.deepcopy(k).to(device, dtype), copy.deepcopy(v).to(device, dtype))
                                     for d, (k, v) in self.layers.items()}
            return self._placed[key]


class HypernetworkPatch:
    """The attn1/attn2 patch applying a hypernetwork at ``strength``."""

    def __init__(self, hypernetwork: Hypernetwork, strength: float) -> None:
        self.hypernetwork, self.strength = hypernetwork, float(strength)

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, hooks: UNetHooks):
        nets = self.hypernetwork.on(k.device, k.dtype).get(k.shape[-1])
        if nets is not None:
            k = k + nets[0](k) * self.strength
            v = v + nets[1](v) * self.strength
        return q, k, v

    def cross(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, hooks: UNetHooks):
        """The attn2 patch: the prompt is the same tensor at every cross-attention layer of a U-Net call,
        so its transformed keys and values are computed once per call (the memo holds the inputs, so
        their ids stay theirs)."""
        key = (id(self), id(k), id(v))
        hit = hooks.call_memo.get(key)
        if hit is None or hit[0] is not k or hit[1] is not v:
            _, k_out, v_out = self(q, k, v, hooks)
            hit = hooks.call_memo[key] = (k, v, k_out, v_out)
        return q, hit[2], hit[3]


def read_hypernetwork(path: str | Path) -> Hypernetwork:
    """A hypernetwork file (see the module docstring); CheckpointError names the file and the problem."""
    path = Path(path)
    states, settings = _read_safetensors(path) if path.suffix.lower() == ".safetensors" else _read_pickle(path)
    activation = str(settings.get("activation_func", "linear"))
    if activation not in ACTIVATIONS:
        raise CheckpointError(path, f"unknown hypernetwork activation_func {activation!r}; NodeGraph knows "
                                    f"{', '.join(ACTIVATIONS)}")
    if not states:
        raise CheckpointError(path, "no hypernetwork layers in this file (expected entries keyed by attention "
                                    "width, e.g. 320, 640, 768, 1280); it is not an A1111 hypernetwork")
    layers = {}
    for width, (k_state, v_state) in states.items():
        layers[width] = (_mlp(path, width, k_state, activation, settings),
                         _mlp(path, width, v_state, activation, settings))
    return Hypernetwork(layers, path.stem)


def _flag(value: Any) -> bool:
    return value.strip().lower() == "true" if isinstance(value, str) else bool(value)


def _read_pickle(path: Path) -> tuple[dict[int, tuple[dict, dict]], dict]:
    data = load_pickle(path)
    if not isinstance(data, dict):
        raise CheckpointError(path, f"expected an A1111 hypernetwork (a dict), found a {type(data).__name__}")
    states = {}
    for key, value in data.items():
        try:
            width = int(key)
        except (TypeError, ValueError):
            continue
        if not (isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(s, dict) for s in value)):
            raise CheckpointError(path, f"hypernetwork entry {key!r} is not a pair of state dicts (keys, values)")
        states[width] = (dict(value[0]), dict(value[1]))
    return states, {k: v for k, v in data.items() if isinstance(k, str)}


def _read_safetensors(path: Path) -> tuple[dict[int, tuple[dict, dict]], dict]:
    tensors, _ = read_state_dict(path)
    _, metadata = read_safetensors_header(path)
    states: dict[int, tuple[dict, dict]] = {}
    for name, tensor in tensors.items():
        width, _, rest = name.partition(".")
        which, _, layer = rest.partition(".")
        if not (width.isdigit() and which in ("0", "1") and layer):
            raise CheckpointError(path, f"tensor {name!r} is not named <width>.<0|1>.<layer key>")
        states.setdefault(int(width), ({}, {}))[int(which)][layer] = tensor
    return states, dict(metadata)


def _ordered_weights(state: dict[str, torch.Tensor]) -> list[str]:
    """The layers (names before ``.weight``) in order: by their index when every name has one
    (``linear.0``, ``linear.1``, …), else as stored."""
    names = [k for k in state if k.endswith(".weight")]
    indices = [_LAYER_INDEX.fullmatch(k) for k in names]
    if all(indices):
        names = [n for _, n in sorted(zip((int(m[1]) for m in indices), names))]
    return [n[: -len(".weight")] for n in names]


def _mlp(path: Path, width: int, state: dict, activation: str, settings: dict) -> nn.Sequential:
    layer_norm, activate_output = _flag(settings.get("is_layer_norm", False)), _flag(settings.get("activate_output", False))
    names = _ordered_weights(state)
    layers: list[nn.Module] = []
    i = 0
    while i < len(names):
        last = i == len(names) - (2 if layer_norm else 1)
        weight, bias = state[f"{names[i]}.weight"], state.get(f"{names[i]}.bias")
        if weight.ndim != 2 or bias is None:
            raise CheckpointError(path, f"hypernetwork layer {width}.{names[i]} is not a linear layer with a bias")
        linear = nn.Linear(weight.shape[1], weight.shape[0])
        linear.load_state_dict({"weight": weight.float(), "bias": bias.float()})
        layers.append(linear)
        if activation != "linear" and (not last or activate_output):
            layers.append(ACTIVATIONS[activation]())
        if layer_norm:
            i += 1
            norm_w, norm_b = state[f"{names[i]}.weight"], state[f"{names[i]}.bias"]
            norm = nn.LayerNorm(norm_w.shape[0])
            norm.load_state_dict({"weight": norm_w.float(), "bias": norm_b.float()})
            layers.append(norm)
        i += 1
    if not layers or layers[0].in_features != width:
        raise CheckpointError(path, f"hypernetwork entry {width} does not start with a {width}-wide linear layer")
    return nn.Sequential(*layers).eval().requires_grad_(False)
