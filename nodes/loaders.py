"""Loader nodes: CheckpointLoaderSimple, VAELoader, CLIPSetLastLayer (ComfyUI's names and params).

Model files are found in the run's model folders (``--models``, ``NODEGRAPH_MODELS``, the user's
folders; see nodes/folders.py) and loaded once through nodes/sd/memory.py's ModelManager, in the
precision the run's ``--dtype`` resolves to. The MODEL, CLIP and VAE values are the loaded objects
themselves (a ``DiffusionModel``, an ``SDTextEncoder``, a ``VAE``), shared by every graph that loads
the same file with the same settings.
"""
from __future__ import annotations

from typing import Any

from nodegraph import Int, RunContext, node

from .runtime import dtype_choice, find_model, manager, model_fingerprint, model_param

NO_CLIP = ("the clip input is empty: the checkpoint has no text encoder. Load a checkpoint that "
           "includes one, or connect another CLIP.")


@node("CheckpointLoaderSimple", display_name="Load Checkpoint", category="loaders",
      params=[model_param("ckpt_name", "checkpoints", "Stable Diffusion checkpoint (SD1.x, SD2.x, SDXL)")],
      outputs={"MODEL": "MODEL", "CLIP": "CLIP", "VAE": "VAE"},
      fingerprint=model_fingerprint("checkpoints", "ckpt_name"))
def checkpoint_loader_simple(ckpt_name: str, ctx: RunContext) -> tuple[Any, Any, Any]:
    """Load a single-file Stable Diffusion checkpoint: its diffusion model, text encoder(s) and VAE.

    The family (SD1, SD2, SDXL, SDXL refiner) and ε/v prediction are read from the file. Weights
    stay loaded while the file is unchanged, so switching graphs does not reload them. The run's
    precision (``--dtype``; ``auto`` picks bf16 on CPUs with fast bf16 units) is recorded in the
    node's result as ``dtype``.
    """
    path = find_model(ctx.options, "checkpoints", ckpt_name)
    choice = dtype_choice(ctx.options)
    loaded = manager(ctx.options).load_checkpoint(path, dtype=choice)
    from nodes.sd.checkpoint import describe

    info = describe(loaded)
    ctx.ui["dtype"] = choice.summary
    ctx.ui["model"] = info
    ctx.log.info("%s: %s %s-prediction checkpoint, %s", path.name, info["family"], info["prediction"],
                 choice.summary)
    return loaded.model, loaded.text_encoder, loaded.vae


@node("VAELoader", display_name="Load VAE", category="loaders",
      params=[model_param("vae_name", "vae", "VAE")], outputs={"VAE": "VAE"},
      fingerprint=model_fingerprint("vae", "vae_name"))
def vae_loader(vae_name: str, ctx: RunContext) -> Any:
    """Load a standalone VAE file (e.g. ``vae-ft-mse-840000`` or ``sdxl_vae``), to use instead of a
    checkpoint's own VAE."""
    path = find_model(ctx.options, "vae", vae_name)
    choice = dtype_choice(ctx.options)
    return manager(ctx.options).load_vae(path, dtype=choice.vae)


@node("CLIPSetLastLayer", display_name="CLIP Set Last Layer", category="conditioning",
      inputs={"clip": "CLIP"},
      params=[Int("stop_at_clip_layer", -1, min=-24, max=-1, step=1,
                  description="-1: the last layer, -2: the penultimate (\"CLIP skip 2\"), ...")],
      outputs={"CLIP": "CLIP"})
def clip_set_last_layer(clip: Any, stop_at_clip_layer: int) -> Any:
    """Take the prompt encoding from an earlier layer of the text encoder ("CLIP skip").

    The weights are shared with the input CLIP; only the layer read changes. A layer beyond the
    encoder's depth falls back to its last layer, as in ComfyUI.
    """
    if clip is None:
        raise ValueError(NO_CLIP)
    return clip.with_last_layer(stop_at_clip_layer)


NODES = [checkpoint_loader_simple, vae_loader, clip_set_last_layer]
