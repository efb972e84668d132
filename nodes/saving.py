"""Saving models (ComfyUI's names, params and files): CheckpointSave, CLIPSave, VAESave, ModelSave and
LoraSave (Extract and Save Lora).

Files are single-file safetensors in the run's output folder, named as SaveImage names images,
``<filename_prefix>_00001_.safetensors`` (the prefix may hold sub-folders, never leave the output folder);
each is written to a temporary file and takes its name only if that name is still free, so nothing is
overwritten and no reader sees half a file. The weights saved are those the values run with: LoRAs and
merges applied (nodes/sd/saving.py has the layout and the modelspec metadata).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from nodegraph import Boolean, Combo, Int, NodeError, RunContext, String, node
from nodegraph.registry import InputSpec

CATEGORY = "advanced/model_merging"


def _prefix(default: str) -> String:
    return String("filename_prefix", default,
                  description="file name start inside the output folder; may hold sub-folders ('checkpoints/mix'), "
                              "never '..'; _00001_.safetensors is added")


def _graph_metadata(ctx: RunContext) -> dict[str, str]:
    """ComfyUI's ``prompt`` (the graph in its API format) and our ``nodegraph`` graph, when known."""
    from .image import graph_chunks

    graph_json, prompt_json = graph_chunks(ctx) if getattr(ctx, "graph", None) is not None else (None, None)
    out = {}
    if prompt_json is not None:
        out["prompt"] = prompt_json
    if graph_json is not None:
        out["nodegraph"] = graph_json
    return out


def _write(ctx: RunContext, prefix: str, tensors: dict, metadata: dict[str, str]) -> Path:
    from nodes.sd.saving import write_safetensors

    from .imageio import save_new_file

    path = save_new_file(ctx.options.output_dir, prefix, ".safetensors",
                         lambda tmp: write_safetensors(tmp, tensors, metadata))
    ctx.ui.setdefault("files", []).append(str(path))
    ctx.log.info("node %s: wrote %s (%d tensors)", ctx.node_id, path, len(tensors))
    return path


def _title(prefix: str) -> str:
    return prefix.rsplit("/", 1)[-1]


def _save_checkpoint(ctx: RunContext, model: Any, clip: Any, vae: Any, prefix: str) -> Path:
    from nodes.sd.merging import weights_in_use
    from nodes.sd.saving import modelspec, text_tensors, unet_tensors, vae_tensors

    if clip is not None and clip.family != model.family:
        raise NodeError(f"node {ctx.node_id}: the clip input is a {clip.family} text encoder but the model is "
                        f"{model.family}; a checkpoint holds one family: connect the CLIP of the same checkpoint")
    metadata = {**modelspec(model, _title(prefix)), **_graph_metadata(ctx)}
    with weights_in_use(model, clip):
        tensors = unet_tensors(model)
        if clip is not None:
            tensors.update(text_tensors(clip))
        if vae is not None:
            tensors.update(vae_tensors(vae))
        return _write(ctx, prefix, tensors, metadata)


@node("CheckpointSave", display_name="Save Checkpoint", category=CATEGORY,
      inputs={"model": "MODEL", "clip": "CLIP", "vae": "VAE"}, params=[_prefix("checkpoints/ComfyUI")],
      output_node=True)
def checkpoint_save(model: Any, clip: Any, vae: Any, filename_prefix: str, ctx: RunContext) -> None:
    """Save a diffusion model, text encoder and VAE as one checkpoint (.safetensors) in the output folder,
    in the standard single-file layout every Stable Diffusion tool loads (Load Checkpoint, A1111,
    ComfyUI, diffusers' from_single_file), with modelspec metadata (architecture, resolution,
    prediction type) and the graph. LoRAs and merges on the inputs are baked into the saved weights."""
    _save_checkpoint(ctx, model, clip, vae, filename_prefix)


@node("ModelSave", category=CATEGORY, inputs={"model": "MODEL"}, params=[_prefix("diffusion_models/ComfyUI")],
      output_node=True)
def model_save(model: Any, filename_prefix: str, ctx: RunContext) -> None:
    """Save the diffusion model (U-Net) alone, in the checkpoint layout (model.diffusion_model.*) with
    modelspec metadata; LoRAs and merges on it are baked in."""
    _save_checkpoint(ctx, model, None, None, filename_prefix)


@node("CLIPSave", category=CATEGORY, inputs={"clip": "CLIP"}, params=[_prefix("clip/ComfyUI")], output_node=True)
def clip_save(clip: Any, filename_prefix: str, ctx: RunContext) -> None:
    """Save each text encoder as its own file, ``<prefix>_clip_l_00001_.safetensors`` (and ``_clip_g``
    for SDXL, ``_clip_h`` for SD2): CLIP-L in transformers' layout (text_model.*), OpenCLIP encoders in
    OpenCLIP's. LoRAs and merges on the input are baked in."""
    from nodes.sd.merging import weights_in_use
    from nodes.sd.saving import clip_files

    metadata = {"format": "pt", **_graph_metadata(ctx)}
    with weights_in_use(clip):
        for suffix, tensors in clip_files(clip).items():
            _write(ctx, f"{filename_prefix}_{suffix}", tensors, metadata)


@node("VAESave", category=CATEGORY, inputs={"vae": "VAE"}, params=[_prefix("vae/ComfyUI_vae")], output_node=True)
def vae_save(vae: Any, filename_prefix: str, ctx: RunContext) -> None:
    """Save a VAE as a standalone file in the original layout (encoder.*, decoder.*, quant_conv.*), as
    Load VAE and every Stable Diffusion tool read it."""
    from nodes.sd.saving import vae_tensors

    _write(ctx, filename_prefix, vae_tensors(vae, ""), _graph_metadata(ctx))


@node("LoraSave", display_name="Extract and Save Lora", category="_for_testing",
      inputs=[InputSpec("model_diff", "MODEL", optional=True,
                        description="the ModelMergeSubtract output to turn into a LoRA"),
              InputSpec("text_encoder_diff", "CLIP", optional=True,
                        description="the CLIPMergeSubtract output to turn into a LoRA")],
      params=[_prefix("loras/ComfyUI_extracted_lora"),
              Int("rank", 8, min=1, max=4096, step=1, description="rank of each extracted layer (higher: closer "
                                                                   "to the difference, bigger file)"),
              Combo("lora_type", ("standard", "full_diff"),
                    description="standard: a low-rank LoRA by SVD; full_diff: the whole difference of each weight"),
              Boolean("bias_diff", True, description="also store the difference of biases and norm weights")],
      output_node=True)
def lora_save(filename_prefix: str, rank: int, lora_type: str, bias_diff: bool, ctx: RunContext,
              model_diff: Any = None, text_encoder_diff: Any = None) -> None:
    """Extract a LoRA from a model difference and save it in the output folder (loras/…).

    Connect the output of ModelMergeSubtract (fine-tuned − base) to model_diff and/or of
    CLIPMergeSubtract to text_encoder_diff. Each weight's difference becomes the best rank-``rank``
    approximation (truncated SVD, outliers clamped as ComfyUI does), stored in float16; Load LoRA on
    the base model then gives back the fine-tune, up to what the rank leaves out. Nothing connected:
    nothing is saved.
    """
    if model_diff is None and text_encoder_diff is None:
        ctx.log.info("node %s: nothing connected to model_diff or text_encoder_diff; no LoRA saved", ctx.node_id)
        return
    from nodes.sd.lora.extract import LORA_TYPES
    from nodes.sd.lora.extract_models import extract_lora

    if lora_type not in LORA_TYPES:
        raise NodeError(f"node {ctx.node_id}: lora_type {lora_type!r} is not one of {', '.join(LORA_TYPES)}")
    tensors = extract_lora(model_diff, text_encoder_diff, rank, lora_type, bias_diff)
    _write(ctx, filename_prefix, tensors, {})


NODES = [checkpoint_save, clip_save, vae_save, model_save, lora_save]
