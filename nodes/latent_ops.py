"""Latent arithmetic, transform and batch nodes: LatentComposite, LatentBlend, LatentAdd, LatentSubtract,
LatentMultiply, LatentInterpolate, LatentBatch, LatentBatchSeedBehavior, LatentRotate, LatentFlip,
LatentCrop, RepeatLatentBatch (ComfyUI's nodes.py and comfy_extras/nodes_latent.py).

Outputs keep the first input's other entries (noise mask, batch index) unless a node says otherwise.
Positions and sizes are in image pixels (8 per latent pixel), as on ComfyUI's nodes.
"""
from __future__ import annotations

from typing import Any

from nodegraph import Combo, Float, Int, node
from nodegraph.errors import InputError

from .image_ops import FLIPS, ROTATIONS, quarter_turns
from .values import broadcast_batch, check_latent, check_same_channels, repeat_to_batch

MAX_RESOLUTION = 16384


def _with_samples(latent: dict, samples: Any) -> dict:
    out = dict(latent)
    out["samples"] = samples
    return out


def _fit_to(samples: Any, target: Any, name: str, target_name: str, repeat: bool = True) -> Any:
    """``samples`` at ``target``'s size (bilinear, cut to its aspect ratio in the middle) and, with
    ``repeat``, batch (ComfyUI's ``reshape_latent_to``)."""
    from nodes.sd.resize import common_upscale

    check_same_channels(target, samples, target_name, name)
    if samples.shape[2:] != target.shape[2:]:
        samples = common_upscale(samples, target.shape[-1], target.shape[-2], "bilinear", "center")
    return repeat_to_batch(samples, target.shape[0]) if repeat else samples


@node("LatentComposite", display_name="Latent Composite", category="latent",
      inputs={"samples_to": "LATENT", "samples_from": "LATENT"},
      params=[Int("x", 0, min=0, max=MAX_RESOLUTION, step=8, description="where samples_from's left edge goes"),
              Int("y", 0, min=0, max=MAX_RESOLUTION, step=8, description="where samples_from's top edge goes"),
              Int("feather", 0, min=0, max=MAX_RESOLUTION, step=8,
                  description="pixels over which the pasted edges fade in (edges on the border stay hard)")],
      outputs={"LATENT": "LATENT"})
def latent_composite(samples_to: dict, samples_from: dict, x: int, y: int, feather: int) -> dict:
    """Paste samples_from onto samples_to at (x, y), cut where it runs past the edge; with feather, the
    pasted edges that lie inside samples_to fade in linearly. A samples_from batch of one pastes onto
    every latent."""
    from nodes.sd.compositing import latent_paste

    to, src = check_latent(samples_to, "samples_to"), check_latent(samples_from, "samples_from")
    check_same_channels(to, src, "samples_to", "samples_from")
    if src.shape[0] not in (1, to.shape[0]):
        raise InputError(f"samples_to {tuple(to.shape)} and samples_from {tuple(src.shape)} have batches of "
                         f"{to.shape[0]} and {src.shape[0]}: samples_from must be one latent, or one per latent of "
                         "samples_to. Make the batches match first")
    return _with_samples(samples_to, latent_paste(to, src.to(to), x // 8, y // 8, feather // 8))


@node("LatentBlend", display_name="Latent Blend", category="_for_testing",
      inputs={"samples1": "LATENT", "samples2": "LATENT"},
      params=[Float("blend_factor", 0.5, min=0.0, max=1.0, step=0.01, description="samples1's share")],
      outputs={"LATENT": "LATENT"})
def latent_blend(samples1: dict, samples2: dict, blend_factor: float) -> dict:
    """samples1·f + samples2·(1 − f). samples2 is resized (bicubic, cut to the aspect ratio in the middle)
    to samples1's size if it differs; a batch of one combines with every latent of the other."""
    from nodes.sd.resize import common_upscale

    s1, s2 = check_latent(samples1, "samples1"), check_latent(samples2, "samples2")
    broadcast_batch(s1, s2, "samples1", "samples2")
    check_same_channels(s1, s2, "samples1", "samples2")
    if s1.shape[2:] != s2.shape[2:]:
        s2 = common_upscale(s2, s1.shape[3], s1.shape[2], "bicubic", "center")
    return _with_samples(samples1, s1 * blend_factor + s2.to(s1) * (1 - blend_factor))


@node("LatentAdd", display_name="Latent Add", category="latent/advanced",
      inputs={"samples1": "LATENT", "samples2": "LATENT"}, outputs={"LATENT": "LATENT"})
def latent_add(samples1: dict, samples2: dict) -> dict:
    """samples1 + samples2 (samples2 resized and repeated to samples1's size and batch)."""
    s1 = check_latent(samples1, "samples1")
    return _with_samples(samples1, s1 + _fit_to(check_latent(samples2, "samples2"), s1, "samples2", "samples1"))


@node("LatentSubtract", display_name="Latent Subtract", category="latent/advanced",
      inputs={"samples1": "LATENT", "samples2": "LATENT"}, outputs={"LATENT": "LATENT"})
def latent_subtract(samples1: dict, samples2: dict) -> dict:
    """samples1 − samples2 (samples2 resized and repeated to samples1's size and batch)."""
    s1 = check_latent(samples1, "samples1")
    return _with_samples(samples1, s1 - _fit_to(check_latent(samples2, "samples2"), s1, "samples2", "samples1"))


@node("LatentMultiply", display_name="Latent Multiply", category="latent/advanced",
      inputs={"samples": "LATENT"},
      params=[Float("multiplier", 1.0, min=-10.0, max=10.0, step=0.01)],
      outputs={"LATENT": "LATENT"})
def latent_multiply(samples: dict, multiplier: float) -> dict:
    """Scale latents: every value is multiplied by the multiplier (the noise mask and batch positions are
    kept)."""
    return _with_samples(samples, check_latent(samples) * multiplier)


@node("LatentInterpolate", display_name="Latent Interpolate", category="latent/advanced",
      inputs={"samples1": "LATENT", "samples2": "LATENT"},
      params=[Float("ratio", 1.0, min=0.0, max=1.0, step=0.01, description="samples1's share")],
      outputs={"LATENT": "LATENT"})
def latent_interpolate(samples1: dict, samples2: dict, ratio: float) -> dict:
    """Blend two latents pixel by pixel, keeping their strength: the channel vectors' directions are
    mixed by ratio and renormalised, their lengths mixed linearly (samples2 is resized and repeated to
    samples1's size and batch)."""
    from nodes.sd.compositing import interpolate_latents

    s1 = check_latent(samples1, "samples1")
    s2 = _fit_to(check_latent(samples2, "samples2"), s1, "samples2", "samples1")
    return _with_samples(samples1, interpolate_latents(s1, s2.to(s1), ratio))


@node("LatentBatch", display_name="Latent Batch", category="latent/batch",
      inputs={"samples1": "LATENT", "samples2": "LATENT"}, outputs={"LATENT": "LATENT"})
def latent_batch(samples1: dict, samples2: dict) -> dict:
    """One batch of samples1's latents followed by samples2's (resized to samples1's size if it differs).
    Each latent keeps its position in its own batch (batch_index), so sampling gives each the noise it
    would have had on its own."""
    import torch

    s1, s2 = check_latent(samples1, "samples1"), check_latent(samples2, "samples2")
    s2 = _fit_to(s2, s1, "samples2", "samples1", repeat=False)
    out = _with_samples(samples1, torch.cat((s1, s2.to(s1)), dim=0))
    out["batch_index"] = (list(samples1.get("batch_index", range(s1.shape[0])))
                          + list(samples2.get("batch_index", range(s2.shape[0]))))
    return out


@node("LatentBatchSeedBehavior", display_name="Latent Batch Seed Behavior", category="latent/advanced",
      inputs={"samples": "LATENT"},
      params=[Combo("seed_behavior", ("random", "fixed"), "fixed",
                    description="fixed: every latent gets the first one's noise; random: each its own")],
      outputs={"LATENT": "LATENT"})
def latent_batch_seed_behavior(samples: dict, seed_behavior: str) -> dict:
    """Choose the sampler's noise across a batch: "fixed" gives every latent the noise of the first one
    (same seed for all), "random" gives each its own (forgetting any batch positions it carried)."""
    latents = check_latent(samples)
    out = dict(samples)
    if seed_behavior == "random":
        out.pop("batch_index", None)
    else:
        first = list(samples.get("batch_index") or [0])[0]
        out["batch_index"] = [first] * latents.shape[0]
    return out


@node("LatentRotate", display_name="Rotate Latent", category="latent/transform",
      inputs={"samples": "LATENT"}, params=[Combo("rotation", ROTATIONS, description="clockwise")],
      outputs={"LATENT": "LATENT"})
def latent_rotate(samples: dict, rotation: str) -> dict:
    """Rotate latents clockwise by a quarter, half or three-quarter turn."""
    import torch

    return _with_samples(samples, torch.rot90(check_latent(samples), k=quarter_turns(rotation), dims=[3, 2]))


@node("LatentFlip", display_name="Flip Latent", category="latent/transform",
      inputs={"samples": "LATENT"},
      params=[Combo("flip_method", FLIPS, description="x-axis: upside down; y-axis: mirrored left to right")],
      outputs={"LATENT": "LATENT"})
def latent_flip(samples: dict, flip_method: str) -> dict:
    """Flip latents upside down (about the x axis) or mirror them left to right (about the y axis)."""
    import torch

    dim = 2 if flip_method.startswith("x") else 3
    return _with_samples(samples, torch.flip(check_latent(samples), dims=[dim]))


@node("LatentCrop", display_name="Crop Latent", category="latent/transform",
      inputs={"samples": "LATENT"},
      params=[Int("width", 512, min=64, max=MAX_RESOLUTION, step=8),
              Int("height", 512, min=64, max=MAX_RESOLUTION, step=8),
              Int("x", 0, min=0, max=MAX_RESOLUTION, step=8, description="left edge of the crop"),
              Int("y", 0, min=0, max=MAX_RESOLUTION, step=8, description="top edge of the crop")],
      outputs={"LATENT": "LATENT"})
def latent_crop(samples: dict, width: int, height: int, x: int, y: int) -> dict:
    """The width×height rectangle (in image pixels, 8 per latent pixel) starting at (x, y). As ComfyUI,
    the start is moved back so that at least 64 pixels remain, and the rectangle is cut at the edge."""
    latents = check_latent(samples)
    x = max(0, min(x // 8, latents.shape[3] - 8))
    y = max(0, min(y // 8, latents.shape[2] - 8))
    return _with_samples(samples, latents[:, :, y:y + height // 8, x:x + width // 8])


@node("RepeatLatentBatch", display_name="Repeat Latent Batch", category="latent/batch",
      inputs={"samples": "LATENT"}, params=[Int("amount", 1, min=1, max=64, description="how many copies")],
      outputs={"LATENT": "LATENT"})
def repeat_latent_batch(samples: dict, amount: int) -> dict:
    """The batch repeated "amount" times. A noise mask per latent is repeated with it, and batch
    positions continue (each copy gets new positions, so new noise)."""
    latents = check_latent(samples)
    out = _with_samples(samples, latents.repeat((amount, 1, 1, 1)))
    mask = samples.get("noise_mask")
    if mask is not None and mask.shape[0] > 1:
        out["noise_mask"] = repeat_to_batch(mask, latents.shape[0]).repeat((amount,) + (1,) * (mask.ndim - 1))
    if "batch_index" in samples:
        index = list(samples["batch_index"])
        offset = max(index) - min(index) + 1
        out["batch_index"] = index + [i + copy * offset for copy in range(1, amount) for i in index]
    return out


NODES = [latent_composite, latent_blend, latent_add, latent_subtract, latent_multiply, latent_interpolate,
         latent_batch, latent_batch_seed_behavior, latent_rotate, latent_flip, latent_crop, repeat_latent_batch]
