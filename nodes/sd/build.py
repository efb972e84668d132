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
    module.load_state_dict(tensors, strict=True, assign=True)
    tensors.clear()
    left = [n for n, t in list(module.named_parameters()) + list(module.named_buffers()) if t.is_meta]
    if left:
        raise RuntimeError(f"{type(module).__name__}: {', '.join(left[:5])} not filled from the checkpoint")
    return module.eval().requires_grad_(False), [], []
