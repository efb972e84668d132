"""Model merges as weight patches over shared weights (ComfyUI's ModelMerge*/CLIPMerge* arithmetic).

A merge of ``model1`` and ``model2`` is ``model1``'s value with one `WeightPatch` per weight of
``model2`` that ``model1`` also has (same name and shape):

    W1 ← strength_model·W1 + strength·W2

with W2 read from ``model2`` *when the merged model runs* — ``model2``'s loaded weight with ``model2``'s
own weight patches (LoRAs, earlier merges) applied, as ComfyUI's ``get_key_patches`` gives them. So a
merge copies nothing until it runs, chains of merges stay patches, and the loaded models are never
changed. (strength, strength_model) per node, as in ComfyUI: Simple (1 − ratio, ratio), Subtract
(−multiplier, multiplier), Add (1, 1); Blocks takes the ratio of the longest block prefix a weight's
name starts with.

``weights_in_use`` holds a model value with its patches applied, for saving its weights.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from nodegraph.errors import NodeError

from .patches import WeightPatch, applied_float32, module_lock, weights_applied

CLIP_SKIPPED = (".position_ids", ".logit_scale")  # never merged (ComfyUI's CLIP merges skip them)


def effective_weight(modules: Mapping[str, nn.Module], patches: Sequence[WeightPatch], module: str,
                     key: str) -> torch.Tensor:
    """The float32 value weight ``key`` of ``modules[module]`` has with ``patches`` applied (a new tensor;
    the module is not changed). Holds the module's lock while reading, so that a use of it elsewhere,
    which swaps patched weights in, has swapped the originals back."""
    owner = modules[module]
    with module_lock(owner), torch.no_grad():
        own = [p for p in patches if p.module == module and p.key == key]
        return applied_float32(owner.get_parameter(key), own)


@dataclass(frozen=True, eq=False)
class SourceWeight:
    """A patch's delta: the other model's weight as that model would run it (read at use time)."""

    modules: Mapping[str, nn.Module]
    patches: tuple[WeightPatch, ...]
    module: str
    key: str

    def __call__(self, current: torch.Tensor) -> torch.Tensor:
        return effective_weight(self.modules, self.patches, self.module, self.key)


def merge_patches(target: Mapping[str, nn.Module], source: Mapping[str, nn.Module],
                  source_patches: Sequence[WeightPatch], factors: Callable[[str, str], tuple[float, float]],
                  skip: tuple[str, ...] = ()) -> tuple[list[WeightPatch], list[str]]:
    """One patch per weight of ``source`` that ``target`` has with the same shape:
    ``W ← strength_model·W + strength·W_source`` with ``factors(module, key)`` = (strength,
    strength_model). Returns the patches and the source weights that did not fit (name or shape)."""
    patches: list[WeightPatch] = []
    unfit: list[str] = []
    frozen = tuple(source_patches)
    for slot, module in source.items():
        own = dict(target[slot].named_parameters()) if slot in target else {}
        for key, param in module.named_parameters():
            if key.endswith(skip):
                continue
            mine = own.get(key)
            if mine is None or mine.shape != param.shape:
                unfit.append(f"{slot}:{key}")
                continue
            strength, strength_model = factors(slot, key)
            patches.append(WeightPatch(slot, key, SourceWeight(source, frozen, slot, key), strength, strength_model))
    return patches, unfit


def _fit_or_fail(what: str, patches: list, unfit: list[str], log=None) -> None:
    if not patches:
        raise NodeError(f"{what}: none of the second model's weights fit the first ({unfit[:3]} …): the two "
                        "are of different families; merge models of one family")
    if unfit and log is not None:
        log.warning("%s: %d weights of the second model do not fit the first and were left out: %s", what,
                    len(unfit), ", ".join(unfit[:5]) + (", ..." if len(unfit) > 5 else ""))


def merge_models(model1, model2, factors: Callable[[str], tuple[float, float]], what: str, log=None):
    """``model1``'s value with ``model2``'s U-Net merged in by ``factors(key)`` (see the module doc)."""
    if model1.family != model2.family:
        raise NodeError(f"{what}: the second model is {model2.family}, the first {model1.family}; merge models "
                        "of one family")
    patches, unfit = merge_patches({"unet": model1.unet}, {"unet": model2.unet}, model2.patches.weights,
                                   lambda _slot, key: factors(key))
    _fit_or_fail(what, patches, unfit, log)
    return model1.patched(weights=patches)


def merge_clips(clip1, clip2, strength: float, strength_model: float, what: str, log=None):
    """``clip1``'s value with ``clip2``'s text encoders merged in, encoder by encoder (slots "l", "g", "h")."""
    if clip1.family != clip2.family:
        raise NodeError(f"{what}: the second text encoder is {clip2.family}'s, the first {clip1.family}'s; merge "
                        "text encoders of one family")
    patches, unfit = merge_patches(clip1.models, clip2.models, clip2.weight_patches,
                                   lambda _slot, _key: (strength, strength_model), CLIP_SKIPPED)
    _fit_or_fail(what, patches, unfit, log)
    return clip1.with_weight_patches(patches)


def block_ratio(key: str, ratios: Mapping[str, float]) -> float:
    """ModelMergeBlocks' rule: the ratio of the longest name in ``ratios`` that ``key`` starts with, else
    the first ratio given (so "out" covers ``output_blocks.*`` and ``out.*``; ``time_embed`` takes "input")."""
    ratio = next(iter(ratios.values()))
    longest = 0
    for prefix, value in ratios.items():
        if key.startswith(prefix) and len(prefix) > longest:
            ratio, longest = value, len(prefix)
    return ratio


@contextmanager
def weights_in_use(*values) -> Iterator[None]:
    """Hold model values (DiffusionModel, SDTextEncoder; None skipped) with their weight patches applied
    in place, restored on exit: their modules then hold the weights the values run with."""
    with ExitStack() as stack:
        for value in values:
            if value is None:
                continue
            if hasattr(value, "in_use"):
                stack.enter_context(value.in_use())
            else:
                stack.enter_context(weights_applied(value.models, value.weight_patches))
        yield
