"""Model merging nodes (ComfyUI's names, params and arithmetic): ModelMergeSimple, ModelMergeBlocks,
ModelMergeSubtract, ModelMergeAdd, CLIPMergeSimple, CLIPMergeSubtract, CLIPMergeAdd, and the per-architecture
ModelMergeSD1, ModelMergeSD2, ModelMergeSDXL.

A merge returns the first model's value carrying weight patches that read the second model's weights
when the merged model runs (nodes/sd/merging.py): nothing is copied at merge time, the loaded models
are never changed, and the merged value is cached like any node output. Save the result with
CheckpointSave, ModelSave or CLIPSave; extract the difference as a LoRA with LoraSave.
"""
from __future__ import annotations

from typing import Any

from nodegraph import Float, RunContext, node

CATEGORY = "advanced/model_merging"


def _ratio(name: str, what: str) -> Float:
    return Float(name, 1.0, min=0.0, max=1.0, step=0.01,
                 description=f"share of the first model in the {what} (1: the first model's weights as they are, "
                             "0: the second model's)")


def _multiplier() -> Float:
    return Float("multiplier", 1.0, min=-10.0, max=10.0, step=0.01,
                 description="scale of the difference (first − second)")


@node("ModelMergeSimple", category=CATEGORY, inputs={"model1": "MODEL", "model2": "MODEL"},
      params=[_ratio("ratio", "result")], outputs={"MODEL": "MODEL"})
def model_merge_simple(model1: Any, model2: Any, ratio: float, ctx: RunContext) -> Any:
    """Blend two diffusion models of one family: every weight becomes ratio·model1 + (1 − ratio)·model2.

    The result keeps model1's model sampling and patches; model2's LoRAs and merges count as part of
    its weights. Nothing is copied until the merged model samples.
    """
    from nodes.sd.merging import merge_models

    return merge_models(model1, model2, lambda _key: (1.0 - ratio, ratio), f"node {ctx.node_id} (ModelMergeSimple)",
                        ctx.log)


@node("ModelMergeBlocks", category=CATEGORY, inputs={"model1": "MODEL", "model2": "MODEL"},
      params=[_ratio("input", "input blocks (and the time/class embeddings)"), _ratio("middle", "middle block"),
              _ratio("out", "output blocks and the final layers")],
      outputs={"MODEL": "MODEL"})
def model_merge_blocks(model1: Any, model2: Any, input: float, middle: float, out: float, ctx: RunContext) -> Any:
    """Blend two diffusion models with a ratio per U-Net part: input blocks, middle block, output
    blocks. Weights outside the three (time and class embeddings) take the input ratio, as in ComfyUI."""
    from nodes.sd.merging import block_ratio, merge_models

    ratios = {"input": input, "middle": middle, "out": out}

    def factors(key: str) -> tuple[float, float]:
        ratio = block_ratio(key, ratios)
        return 1.0 - ratio, ratio

    return merge_models(model1, model2, factors, f"node {ctx.node_id} (ModelMergeBlocks)", ctx.log)


@node("ModelMergeSubtract", category=CATEGORY, inputs={"model1": "MODEL", "model2": "MODEL"},
      params=[_multiplier()], outputs={"MODEL": "MODEL"})
def model_merge_subtract(model1: Any, model2: Any, multiplier: float, ctx: RunContext) -> Any:
    """The difference of two diffusion models: every weight becomes multiplier·(model1 − model2).

    Add it to a third model with ModelMergeAdd ("add difference" merging), or extract it as a LoRA
    with LoraSave.
    """
    from nodes.sd.merging import merge_models

    return merge_models(model1, model2, lambda _key: (-multiplier, multiplier),
                        f"node {ctx.node_id} (ModelMergeSubtract)", ctx.log)


@node("ModelMergeAdd", category=CATEGORY, inputs={"model1": "MODEL", "model2": "MODEL"},
      outputs={"MODEL": "MODEL"})
def model_merge_add(model1: Any, model2: Any, ctx: RunContext) -> Any:
    """The sum of two diffusion models' weights: model1 + model2 (e.g. a model plus a difference made
    with ModelMergeSubtract)."""
    from nodes.sd.merging import merge_models

    return merge_models(model1, model2, lambda _key: (1.0, 1.0), f"node {ctx.node_id} (ModelMergeAdd)", ctx.log)


@node("CLIPMergeSimple", category=CATEGORY, inputs={"clip1": "CLIP", "clip2": "CLIP"},
      params=[_ratio("ratio", "result")], outputs={"CLIP": "CLIP"})
def clip_merge_simple(clip1: Any, clip2: Any, ratio: float, ctx: RunContext) -> Any:
    """Blend two text encoders of one family: every weight becomes ratio·clip1 + (1 − ratio)·clip2
    (position ids and logit scale stay clip1's). The result keeps clip1's CLIP skip setting."""
    from nodes.sd.merging import merge_clips

    return merge_clips(clip1, clip2, 1.0 - ratio, ratio, f"node {ctx.node_id} (CLIPMergeSimple)", ctx.log)


@node("CLIPMergeSubtract", category=CATEGORY, inputs={"clip1": "CLIP", "clip2": "CLIP"},
      params=[_multiplier()], outputs={"CLIP": "CLIP"})
def clip_merge_subtract(clip1: Any, clip2: Any, multiplier: float, ctx: RunContext) -> Any:
    """The difference of two text encoders: every weight becomes multiplier·(clip1 − clip2)."""
    from nodes.sd.merging import merge_clips

    return merge_clips(clip1, clip2, -multiplier, multiplier, f"node {ctx.node_id} (CLIPMergeSubtract)", ctx.log)


@node("CLIPMergeAdd", category=CATEGORY, inputs={"clip1": "CLIP", "clip2": "CLIP"}, outputs={"CLIP": "CLIP"})
def clip_merge_add(clip1: Any, clip2: Any, ctx: RunContext) -> Any:
    """The sum of two text encoders' weights: clip1 + clip2."""
    from nodes.sd.merging import merge_clips

    return merge_clips(clip1, clip2, 1.0, 1.0, f"node {ctx.node_id} (CLIPMergeAdd)", ctx.log)


def _block_names(blocks: int, dotted: bool) -> list[str]:
    """ComfyUI's per-architecture ratio names: embeddings, each input/middle/output block, the output
    layers ("input_blocks.3." for SD1/SD2; SDXL's are written without the final dot)."""
    end = "." if dotted else ""
    return (["time_embed.", "label_emb."] + [f"input_blocks.{i}{end}" for i in range(blocks)]
            + [f"middle_block.{i}{end}" for i in range(3)] + [f"output_blocks.{i}{end}" for i in range(blocks)]
            + ["out."])


def _model_specific(type_id: str, family: str, names: list[str]):
    """A ModelMergeBlocks with one ratio per block of ``family``'s U-Net (ComfyUI's model-specific merges)."""

    def merge(model1: Any, model2: Any, ctx: RunContext, **ratios: float) -> Any:
        from nodes.sd.merging import block_ratio, merge_models

        ordered = {name: float(ratios[name]) for name in names}  # the first is the default, as in ComfyUI

        def factors(key: str) -> tuple[float, float]:
            ratio = block_ratio(key, ordered)
            return 1.0 - ratio, ratio

        return merge_models(model1, model2, factors, f"node {ctx.node_id} ({type_id})", ctx.log)

    merge.__doc__ = (f"Blend two {family} diffusion models with a ratio per U-Net block: the time and class "
                     "embeddings, each input block, the middle block's three parts, each output block and the "
                     "output layers (1: model1's weights, 0: model2's). A weight takes the ratio of the longest "
                     "name it starts with, as in ComfyUI.")
    return node(type_id, category=CATEGORY + "/model_specific", inputs={"model1": "MODEL", "model2": "MODEL"},
                params=[_ratio(name, name.rstrip(".")) for name in names], outputs={"MODEL": "MODEL"})(merge)


model_merge_sd1 = _model_specific("ModelMergeSD1", "SD1", _block_names(12, True))
model_merge_sd2 = _model_specific("ModelMergeSD2", "SD2", _block_names(12, True))
model_merge_sdxl = _model_specific("ModelMergeSDXL", "SDXL", _block_names(9, False))

NODES = [model_merge_simple, model_merge_blocks, model_merge_subtract, model_merge_add, clip_merge_simple,
         clip_merge_subtract, clip_merge_add, model_merge_sd1, model_merge_sd2, model_merge_sdxl]
