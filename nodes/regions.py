"""Regional and scheduled prompts: ConditioningSetArea, ConditioningSetAreaPercentage,
ConditioningSetAreaStrength, ConditioningSetMask, ConditioningSetTimestepRange, ConditioningAverage,
ConditioningConcat (ComfyUI's nodes.py).

These nodes only write options into each ``[context, options]`` entry of a CONDITIONING; the sampler's
guidance (nodes/sd/guidance.py) reads them at every step: an entry with an ``area`` is run on that
crop of the latent and blended in by its ``strength`` (its inner edges ramped over up to 8 latent
pixels); an entry with a ``mask`` is weighted per pixel by mask × ``mask_strength`` × strength; an
entry with ``start_percent``/``end_percent`` takes part only in that stretch of the schedule.
"""
from __future__ import annotations

from typing import Any

from nodegraph import Combo, Float, Int, RunContext, node
from nodegraph.errors import InputError

from .conditioning import check_conditioning
from .values import check_mask

MAX_RESOLUTION = 16384


def with_options(conditioning: list, **options: Any) -> list:
    """A copy of ``conditioning`` with ``options`` set on every entry (ComfyUI's conditioning_set_values)."""
    return [[context, {**entry_options, **options}] for context, entry_options in conditioning]


def _strength(default: float = 1.0) -> Any:
    return Float("strength", default, min=0.0, max=10.0, step=0.01,
                 description="weight of this prompt where it applies, against the others there")


@node("ConditioningSetArea", display_name="Conditioning (Set Area)", category="conditioning",
      inputs={"conditioning": "CONDITIONING"},
      params=[Int("width", 64, min=64, max=MAX_RESOLUTION, step=8, description="area width in image pixels"),
              Int("height", 64, min=64, max=MAX_RESOLUTION, step=8, description="area height in image pixels"),
              Int("x", 0, min=0, max=MAX_RESOLUTION, step=8, description="area's left edge in image pixels"),
              Int("y", 0, min=0, max=MAX_RESOLUTION, step=8, description="area's top edge in image pixels"),
              _strength()],
      outputs={"CONDITIONING": "CONDITIONING"})
def conditioning_set_area(conditioning: list, width: int, height: int, x: int, y: int, strength: float) -> list:
    """Make a prompt apply to one rectangle of the image (area composition): the sampler runs it on that
    part of the latent and blends it with the other prompts there by strength, fading it in over up to 8
    latent pixels at edges inside the image. Combine it with a prompt for the whole image (Conditioning
    (Combine)). Sizes are rounded down to whole latent pixels (8 image pixels); the part of an area
    beyond the image is left out."""
    return with_options(check_conditioning(conditioning, "conditioning"), area=(height // 8, width // 8, y // 8, x // 8),
                        strength=strength, set_area_to_bounds=False)


@node("ConditioningSetAreaPercentage", display_name="Conditioning (Set Area with Percentage)",
      category="conditioning",
      inputs={"conditioning": "CONDITIONING"},
      params=[Float("width", 1.0, min=0.0, max=1.0, step=0.01, description="area width as a share of the image's"),
              Float("height", 1.0, min=0.0, max=1.0, step=0.01, description="area height as a share of the image's"),
              Float("x", 0.0, min=0.0, max=1.0, step=0.01, description="left edge as a share of the image's width"),
              Float("y", 0.0, min=0.0, max=1.0, step=0.01, description="top edge as a share of the image's height"),
              _strength()],
      outputs={"CONDITIONING": "CONDITIONING"})
def conditioning_set_area_percentage(conditioning: list, width: float, height: float, x: float, y: float,
                                     strength: float) -> list:
    """Conditioning (Set Area) with the rectangle given as shares of the image (0..1), so it fits any
    image size: at sampling time each is multiplied by the latent's size and rounded (at least one
    latent pixel wide and high)."""
    return with_options(check_conditioning(conditioning, "conditioning"), area=("percentage", height, width, y, x),
                        strength=strength, set_area_to_bounds=False)


@node("ConditioningSetAreaStrength", display_name="Conditioning (Set Area Strength)", category="conditioning",
      inputs={"conditioning": "CONDITIONING"}, params=[_strength()], outputs={"CONDITIONING": "CONDITIONING"})
def conditioning_set_area_strength(conditioning: list, strength: float) -> list:
    """Set a prompt's strength: its weight against the other prompts of the same list wherever both
    apply (in an area, or everywhere)."""
    return with_options(check_conditioning(conditioning, "conditioning"), strength=strength)


@node("ConditioningSetMask", display_name="Conditioning (Set Mask)", category="conditioning",
      inputs={"conditioning": "CONDITIONING", "mask": "MASK"},
      params=[_strength(),
              Combo("set_cond_area", ("default", "mask bounds"),
                    description="mask bounds: run the prompt only on the rectangle around the mask (faster; "
                                "the model then sees that crop as a whole picture)")],
      outputs={"CONDITIONING": "CONDITIONING"})
def conditioning_set_mask(conditioning: list, mask: Any, strength: float, set_cond_area: str) -> list:
    """Make a prompt apply where a mask is: its prediction is weighted per pixel by mask × strength
    against the other prompts. The mask is resized (bilinear) to the latent when sampling. With "mask
    bounds" the prompt runs only on the rectangle around the mask's non-zero pixels (at least 8 latent
    pixels wide and high)."""
    return with_options(check_conditioning(conditioning, "conditioning"), mask=check_mask(mask),
                        set_area_to_bounds=set_cond_area != "default", mask_strength=strength)


@node("ConditioningSetTimestepRange", display_name="ConditioningSetTimestepRange",
      category="advanced/conditioning",
      inputs={"conditioning": "CONDITIONING"},
      params=[Float("start", 0.0, min=0.0, max=1.0, step=0.001, description="share of the sampling done before "
                                                                            "the prompt starts to act"),
              Float("end", 1.0, min=0.0, max=1.0, step=0.001, description="share of the sampling done when the "
                                                                          "prompt stops acting")],
      outputs={"CONDITIONING": "CONDITIONING"})
def conditioning_set_timestep_range(conditioning: list, start: float, end: float) -> list:
    """Make a prompt act during part of the sampling only, e.g. 0 to 0.3 for the composition and 0.3 to 1
    for the details (combine two prompts with Conditioning (Combine)). The shares are of the model's
    noise schedule, converted to noise levels: a step takes part while its noise is between them."""
    return with_options(check_conditioning(conditioning, "conditioning"), start_percent=start, end_percent=end)


def _first_entry(conditioning_from: list, node_name: str, ctx: RunContext | None) -> list:
    entries = check_conditioning(conditioning_from, "conditioning_from")
    if not entries:
        raise InputError("conditioning_from is empty: connect a prompt's conditioning")
    if len(entries) > 1 and ctx is not None:
        ctx.log.warning("node %s (%s): conditioning_from holds %d entries; only the first is used, as in ComfyUI",
                        ctx.node_id, node_name, len(entries))
    return entries[0]


@node("ConditioningAverage", display_name="ConditioningAverage", category="conditioning",
      inputs={"conditioning_to": "CONDITIONING", "conditioning_from": "CONDITIONING"},
      params=[Float("conditioning_to_strength", 1.0, min=0.0, max=1.0, step=0.01,
                    description="conditioning_to's share (1: unchanged, 0: all conditioning_from)")],
      outputs={"CONDITIONING": "CONDITIONING"})
def conditioning_average(conditioning_to: list, conditioning_from: list, conditioning_to_strength: float,
                         ctx: RunContext | None = None) -> list:
    """Mix two prompts' encodings: each entry of conditioning_to becomes to·s + from·(1 − s), token by
    token (conditioning_from's first entry, cut or padded with zeros to the same length); pooled outputs
    are mixed the same way. Options (areas, masks, ...) are conditioning_to's."""
    import torch

    context_from, options_from = _first_entry(conditioning_from, "ConditioningAverage", ctx)
    pooled_from = options_from.get("pooled_output")
    s = conditioning_to_strength
    out = []
    for context, options in check_conditioning(conditioning_to, "conditioning_to"):
        mixed_from = context_from[:, :context.shape[1]]
        if mixed_from.shape[1] < context.shape[1]:
            pad = torch.zeros((1, context.shape[1] - mixed_from.shape[1], context.shape[2]), dtype=mixed_from.dtype)
            mixed_from = torch.cat([mixed_from, pad], dim=1)
        if mixed_from.shape[2] != context.shape[2]:
            raise InputError(f"conditioning_to {tuple(context.shape)} and conditioning_from {tuple(context_from.shape)} "
                             "come from different text encoders (different widths) and cannot be mixed")
        options = dict(options)
        pooled_to = options.get("pooled_output", pooled_from)
        if pooled_from is not None and pooled_to is not None:
            options["pooled_output"] = pooled_to * s + pooled_from * (1.0 - s)
        out.append([context * s + mixed_from.to(context) * (1.0 - s), options])
    return out


@node("ConditioningConcat", display_name="Conditioning (Concat)", category="conditioning",
      inputs={"conditioning_to": "CONDITIONING", "conditioning_from": "CONDITIONING"},
      outputs={"CONDITIONING": "CONDITIONING"})
def conditioning_concat(conditioning_to: list, conditioning_from: list, ctx: RunContext | None = None) -> list:
    """Append conditioning_from's tokens (its first entry) after each entry of conditioning_to, as if the
    prompts were one long prompt encoded in separate windows; options are conditioning_to's."""
    import torch

    context_from, _ = _first_entry(conditioning_from, "ConditioningConcat", ctx)
    out = []
    for context, options in check_conditioning(conditioning_to, "conditioning_to"):
        if context_from.shape[2] != context.shape[2]:
            raise InputError(f"conditioning_to {tuple(context.shape)} and conditioning_from {tuple(context_from.shape)} "
                             "come from different text encoders (different widths) and cannot be joined")
        out.append([torch.cat((context, context_from.to(context)), dim=1), dict(options)])
    return out


NODES = [conditioning_set_area, conditioning_set_area_percentage, conditioning_set_area_strength,
         conditioning_set_mask, conditioning_set_timestep_range, conditioning_average, conditioning_concat]
