"""Loader nodes: CheckpointLoaderSimple, VAELoader, CLIPSetLastLayer, LoraLoader, LoraLoaderModelOnly
(ComfyUI's names and params).

Model files are found in the run's model folders (``--models``, ``NODEGRAPH_MODELS``, the user's
folders; see nodes/folders.py) and loaded once through the session's ModelManager (nodes/runtime.py), in the
precision the run's ``--dtype`` resolves to. The MODEL, CLIP and VAE values are the loaded objects
themselves (a ``DiffusionModel``, an ``SDTextEncoder``, a ``VAE``), shared by every graph that loads
the same file with the same settings.
"""
from __future__ import annotations

from typing import Any

from nodegraph import Float, Int, RunContext, node
from nodegraph.errors import Absent, InputError

from .runtime import dtype_choice, find_model, load_checkpoint, load_vae, model_fingerprint, model_param

NO_CLIP = ("the clip input is empty: the checkpoint has no text encoder. Load a checkpoint that "
           "includes one, or connect another CLIP.")


def _absent(what: str, path: Any, fix: str) -> Absent:
    return Absent(f"the checkpoint {path.name} has no {what} weights; {fix}")


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
    choice = dtype_choice(ctx.options)
    loaded = load_checkpoint(ctx, ckpt_name, choice)
    from nodes.sd.checkpoint import describe

    info = describe(loaded)
    ctx.ui["dtype"] = choice.summary
    ctx.ui["model"] = info
    ctx.log.info("%s: %s %s-prediction checkpoint, %s", loaded.path.name, info["family"], info["prediction"],
                 choice.summary)
    clip = loaded.text_encoder if loaded.text_encoder is not None else _absent(
        "text encoder", loaded.path, "load a checkpoint that includes one, or connect another CLIP")
    vae = loaded.vae if loaded.vae is not None else _absent(
        "VAE", loaded.path, "load a VAE file with Load VAE (VAELoader) and connect it instead")
    return loaded.model, clip, vae


@node("VAELoader", display_name="Load VAE", category="loaders",
      params=[model_param("vae_name", "vae", "VAE")], outputs={"VAE": "VAE"},
      fingerprint=model_fingerprint("vae", "vae_name"))
def vae_loader(vae_name: str, ctx: RunContext) -> Any:
    """Load a standalone VAE file (e.g. ``vae-ft-mse-840000`` or ``sdxl_vae``), to use instead of a
    checkpoint's own VAE."""
    return load_vae(ctx, vae_name, dtype_choice(ctx.options).vae)


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
        raise InputError(NO_CLIP)
    return clip.with_last_layer(stop_at_clip_layer)


def _strength(name: str, what: str):
    return Float(name, 1.0, min=-100.0, max=100.0, step=0.01,
                 description=f"how strongly the LoRA changes the {what} (0: not at all, negative: the opposite way)")


def _apply_lora(model: Any, clip: Any, lora_name: str, strength_model: float, strength_clip: float,
                ctx: RunContext) -> tuple[Any, Any]:
    from nodes.sd import lora as lora_module

    path = find_model(ctx.options, "loras", lora_name)
    tensors = lora_module.read_lora(path)
    lora = lora_module.layers_of(tensors, path)
    layers = sorted(lora)
    other = lora_module.other_families(tensors)
    if other:
        message = (f"{', '.join(other)} layers, a LoRA family NodeGraph does not apply (it applies LoRA/LoCon, "
                   "LoHa, LoKr, (IA)³, DoRA and full-difference layers)")
        if not layers:
            raise lora_module.LoraError(f"{path}: {message}")
        ctx.log.warning("node %s: %s: %d %s; the other layers are applied", ctx.node_id, path.name,
                        sum(map(len, other.values())), message)
    if not layers:
        raise lora_module.LoraError(f"{path}: no LoRA layers in this file (lora_up/lora_down, LyCORIS hada_/lokr_, "
                                    "diff or (IA)³ weights); it is not a LoRA, or one in a format NodeGraph does "
                                    "not read")
    applied: list[str] = []
    if model is not None and strength_model != 0:
        model, done = lora_module.model_with_lora(model, lora, strength_model, path)
        applied += done
    if clip is not None and strength_clip != 0:
        clip, done = lora_module.text_encoder_with_lora(clip, lora, strength_clip, path)
        applied += done
    wanted = {n for n in layers if (strength_model != 0 and n.startswith("lora_unet_"))
              or (strength_clip != 0 and clip is not None and n.startswith("lora_te"))}
    if wanted and not applied:
        raise lora_module.LoraError(f"{path}: none of its {len(layers)} layers fit this model (first: "
                                    f"{', '.join(layers[:3])}); it was made for another model family")
    lost = sorted(wanted - set(applied))
    if lost:
        ctx.log.warning("node %s: %d of the LoRA's %d layers do not fit this model and were not applied: %s",
                        ctx.node_id, len(lost), len(layers), ", ".join(lost[:5]) + (", ..." if len(lost) > 5 else ""))
    ctx.ui["lora"] = {"file": str(path), "layers": len(layers), "applied": len(applied)}
    return model, clip


@node("LoraLoader", display_name="Load LoRA", category="loaders",
      inputs={"model": "MODEL", "clip": "CLIP"},
      params=[model_param("lora_name", "loras", "LoRA"), _strength("strength_model", "diffusion model"),
              _strength("strength_clip", "text encoder")],
      outputs={"MODEL": "MODEL", "CLIP": "CLIP"},
      fingerprint=model_fingerprint("loras", "lora_name"))
def lora_loader(model: Any, clip: Any, lora_name: str, strength_model: float, strength_clip: float,
                ctx: RunContext) -> tuple[Any, Any]:
    """Apply a LoRA (.safetensors) to a diffusion model and its text encoder.

    Reads kohya/A1111 LoRAs and LyCORIS files (LoCon, LoHa, LoKr, (IA)³, DoRA, full difference) as
    well as LoRAs saved by diffusers or PEFT (alpha from the file's metadata) and LoRAs extracted by
    ComfyUI's or NodeGraph's Extract and Save Lora. Nothing is copied: the outputs share the loaded
    weights and carry the LoRA as patches, applied while they sample or encode and undone after, so
    the loaded checkpoint stays as it is for every other node using it and LoRAs stack for free.
    Layers that do not fit the model are reported in the log; a LoRA none of whose layers fit (made
    for another family) is an error.
    """
    return _apply_lora(model, clip, lora_name, strength_model, strength_clip, ctx)


@node("LoraLoaderModelOnly", display_name="Load LoRA (model only)", category="loaders",
      inputs={"model": "MODEL"},
      params=[model_param("lora_name", "loras", "LoRA"), _strength("strength_model", "diffusion model")],
      outputs={"MODEL": "MODEL"},
      fingerprint=model_fingerprint("loras", "lora_name"))
def lora_loader_model_only(model: Any, lora_name: str, strength_model: float, ctx: RunContext) -> Any:
    """Apply a LoRA's diffusion-model layers only (its text-encoder layers are ignored)."""
    return _apply_lora(model, None, lora_name, strength_model, 0.0, ctx)[0]


NODES = [checkpoint_loader_simple, vae_loader, clip_set_last_layer, lora_loader, lora_loader_model_only]
