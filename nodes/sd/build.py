"""Building model modules without allocating weights, then handing them a checkpoint's tensors.

Every loader (checkpoint, standalone VAE, text encoders) builds its ``nn.Module`` on the meta
device and fills it from the file's tensors: tensors already in the wanted dtype and device become
the parameters as they are (for a memory-mapped file: no copy at all); others are converted one at
a time, and the source pages of a mapped file are handed back to the OS after each conversion
(:mod:`nodes.sd.mapped`), so a load never holds the file and the converted model at once.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from .mapped import Mapping

M = TypeVar("M", bound=nn.Module)


class SkipInitOnMeta(TorchFunctionMode):
    """Skips ``torch.nn.init`` / in-place random fills on meta tensors.

    Modules built on the meta device still run their initialisers; for some (``nn.Embedding``'s
    ``normal_``) torch routes meta tensors through Python decompositions whose first use imports
    ``torch._dynamo`` (1-3 s). The values are never used — the checkpoint's tensors replace them.
    """

    _NAMES = frozenset({"normal_", "uniform_", "trunc_normal_", "kaiming_uniform_", "kaiming_normal_",
                        "xavier_uniform_", "xavier_normal_", "zeros_", "ones_", "constant_", "orthogonal_",
                        "zero_", "fill_", "random_", "exponential_"})

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__name__", "") in self._NAMES:
            target = args[0] if args else kwargs.get("tensor", kwargs.get("self"))
            if isinstance(target, torch.Tensor) and target.is_meta:
                return target
        return func(*args, **kwargs)


def on_meta(make: Callable[[], M]) -> M:
    """``make()`` with every parameter and buffer on the meta device (shapes only, no memory)."""
    with SkipInitOnMeta(), torch.device("meta"):
        return make()


def convert(tensors: dict[str, torch.Tensor], dtype: torch.dtype | None, device: torch.device | str | None,
            mapping: Mapping | None = None) -> None:
    """Convert ``tensors`` in place to ``dtype`` (floating point only) and ``device``, one at a time.

    A tensor already right is kept as it is. When ``mapping`` is the memory-mapped file the tensors
    come from, each converted source's pages are released at once.
    """
    for key, t in tensors.items():
        target = dtype if (dtype is not None and t.is_floating_point()) else t.dtype
        new = t.to(device=device or t.device, dtype=target)
        if new is not t:
            tensors[key] = new
            if mapping is not None:
                mapping.release(t)


def assign(module: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Make ``tensors`` (keyed like ``module.state_dict()``, every key present) the module's
    parameters and buffers, as they are: ``load_state_dict(assign=True)`` without its per-module
    hook machinery (a third of the build time of an SD U-Net).

    A stored weight may differ from the module's shape only by trailing 1-sized dimensions (linear
    ``[C, C]`` weights of what the module holds as 1×1 convolutions ``[C, C, 1, 1]``, as some VAE files
    store them); any other difference raises ``ValueError`` naming the key and both shapes.
    """
    owners = dict(module.named_modules())
    for key, t in tensors.items():
        path, _, name = key.rpartition(".")
        owner = owners[path]
        slots = owner._parameters if name in owner._parameters else owner._buffers
        current = slots[name]
        if current is not None and t.shape != current.shape:
            if t.shape != current.shape[: t.dim()] or any(d != 1 for d in current.shape[t.dim():]):
                raise ValueError(f"{key}: the file holds shape {tuple(t.shape)}, the model needs "
                                 f"{tuple(current.shape)}")
            t = t.reshape(current.shape)
        slots[name] = nn.Parameter(t, requires_grad=False) if slots is owner._parameters else t


def fill_module(
    make: Callable[[], nn.Module],
    tensors: dict[str, torch.Tensor],
    dtype: torch.dtype | None,
    device: torch.device | str | None,
    mapping: Mapping | None = None,
) -> tuple[nn.Module, list[str], list[str]]:
    """Build ``make()`` on the meta device and give it ``tensors`` as its parameters.

    Consumes ``tensors`` (see :func:`convert` for dtype/device and ``mapping``). Returns (module,
    missing keys, unexpected keys); with any key problem the module is returned unfilled.
    """
    module = on_meta(make)
    expected = set(module.state_dict())
    missing = sorted(expected - set(tensors))
    unexpected = sorted(set(tensors) - expected)
    if missing or unexpected:
        return module, missing, unexpected
    convert(tensors, dtype, device, mapping)
    assign(module, tensors)
    tensors.clear()
    left = [n for n, t in list(module.named_parameters()) + list(module.named_buffers()) if t.is_meta]
    if left:
        raise RuntimeError(f"{type(module).__name__}: {', '.join(left[:5])} not filled from the checkpoint")
    return module.eval().requires_grad_(False), [], []
