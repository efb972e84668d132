"""Conditioning nodes: CLIPTextEncode, CLIPTextEncodeSDXL, CLIPTextEncodeSDXLRefiner, ConditioningCombine,
ConditioningZeroOut.

A CONDITIONING value is ComfyUI's: a list of ``[context, options]`` pairs, ``context`` a float tensor
``[1, tokens, channels]`` and ``options`` a dict (``pooled_output`` [1, P], and for SDXL optionally
``width``/``height``/``crop_w``/``crop_h``/``target_width``/``target_height``). As in ComfyUI, a
plain CLIPTextEncode sets no SDXL sizes: the sampler fills width/height with the size of the image
being sampled (latent size × 8), crops with 0 and targets with width/height.
"""
from __future__ import annotations

from typing import Any

from nodegraph import Float, Int, RunContext, String, node
from nodegraph.errors import InputError

from .loaders import NO_CLIP
from .runtime import model_folders, on_device

MAX_RESOLUTION = 16384


def _encode(clip: Any, ctx: RunContext, tokenize: Any) -> tuple[Any, Any]:
    """``(context, pooled)`` of the tokens ``tokenize(clip, library)`` returns, on the run's device, with
    ``embedding:name`` looked up in the model folders (names not found are left out with a warning)."""
    from nodes.sd.embeddings import EmbeddingLibrary

    if clip is None:
        raise InputError(NO_CLIP)
    library = EmbeddingLibrary(model_folders(ctx.options))
    with on_device(ctx.options, *clip.models.values()):
        context, pooled = clip.encode_tokens(tokenize(clip, library))
    if library.missing:
        ctx.log.warning("node %s: no embedding file named %s in %s; left out of the prompt (as ComfyUI does)",
                        ctx.node_id, ", ".join(library.missing), ", ".join(map(str, library.folders)))
    if library.mismatched:
        ctx.log.warning("node %s: embedding %s left out: made for another text encoder",
                        ctx.node_id, "; ".join(library.mismatched))
    return context.cpu(), None if pooled is None else pooled.cpu()


def _entry(context: Any, pooled: Any, **options: Any) -> list:
    return [[context, options if pooled is None else {"pooled_output": pooled, **options}]]


@node("CLIPTextEncode", display_name="CLIP Text Encode (Prompt)", category="conditioning",
      inputs={"clip": "CLIP"},
      params=[String("text", "", multiline=True,
                     description="the prompt; (word:1.2) and (word) weigh words up, [word] down")],
      outputs={"CONDITIONING": "CONDITIONING"})
def clip_text_encode(clip: Any, text: str, ctx: RunContext) -> list:
    """Encode a prompt with the checkpoint's text encoder(s).

    Prompt weighting as ComfyUI: (a red fox:1.3), (fox) = ×1.1, \\( for a literal bracket;
    prompts longer than 75 tokens are encoded in several 77-token windows and concatenated.
    "embedding:name" inserts a textual-inversion embedding from the "embeddings" model folders;
    a name with no file there is left out with a warning, as ComfyUI does.
    """
    return _entry(*_encode(clip, ctx, lambda c, library: c.tokenize(text, embeddings=library)))


def _size(name: str, default: int, what: str) -> Any:
    return Int(name, default, min=0, max=MAX_RESOLUTION, description=what)


def _sdxl_tokens(clip: Any, library: Any, text_g: str, text_l: str) -> dict:
    """text_g's windows for OpenCLIP-G and text_l's for CLIP-L, the shorter padded with empty windows."""
    tokens = dict(clip.tokenize(text_g, embeddings=library))
    if set(tokens) != {"l", "g"}:
        raise InputError(f"CLIPTextEncodeSDXL needs the CLIP of an SDXL base checkpoint (text encoders l and g); "
                         f"this CLIP has {', '.join(sorted(tokens))}. Use CLIP Text Encode for it")
    g, l = list(tokens["g"]), list(clip.tokenize(text_l, embeddings=library)["l"])
    empty = clip.tokenize("")
    while len(l) < len(g):
        l += list(empty["l"])
    while len(g) < len(l):
        g += list(empty["g"])
    return {"l": l, "g": g}


@node("CLIPTextEncodeSDXL", display_name="CLIPTextEncodeSDXL", category="advanced/conditioning",
      inputs={"clip": "CLIP"},
      params=[_size("width", 1024, "original image width SDXL is told (size conditioning)"),
              _size("height", 1024, "original image height SDXL is told (size conditioning)"),
              _size("crop_w", 0, "crop from the left SDXL is told (0: uncropped)"),
              _size("crop_h", 0, "crop from the top SDXL is told (0: uncropped)"),
              _size("target_width", 1024, "target width SDXL is told"),
              _size("target_height", 1024, "target height SDXL is told"),
              String("text_g", "", multiline=True, description="prompt for the large encoder (OpenCLIP bigG)"),
              String("text_l", "", multiline=True, description="prompt for the small encoder (CLIP ViT-L)")],
      outputs={"CONDITIONING": "CONDITIONING"})
def clip_text_encode_sdxl(clip: Any, width: int, height: int, crop_w: int, crop_h: int, target_width: int,
                          target_height: int, text_g: str, text_l: str, ctx: RunContext) -> list:
    """Encode a prompt for SDXL with a separate text for each of its two text encoders, and set SDXL's
    size conditioning: the original size, crop and target size it is told about (fed to the U-Net with
    the pooled output). CLIP Text Encode uses the same text for both and the sampled size for all sizes.
    The shorter prompt is padded with empty 77-token windows to the longer one's length."""
    context, pooled = _encode(clip, ctx, lambda c, library: _sdxl_tokens(c, library, text_g, text_l))
    return _entry(context, pooled, width=width, height=height, crop_w=crop_w, crop_h=crop_h,
                  target_width=target_width, target_height=target_height)


@node("CLIPTextEncodeSDXLRefiner", display_name="CLIPTextEncodeSDXLRefiner", category="advanced/conditioning",
      inputs={"clip": "CLIP"},
      params=[Float("ascore", 6.0, min=0.0, max=1000.0, step=0.01,
                    description="aesthetic score the refiner is told (ComfyUI's default: 6; 2.5 for negatives)"),
              _size("width", 1024, "image width the refiner is told"),
              _size("height", 1024, "image height the refiner is told"),
              String("text", "", multiline=True, description="the prompt")],
      outputs={"CONDITIONING": "CONDITIONING"})
def clip_text_encode_sdxl_refiner(clip: Any, ascore: float, width: int, height: int, text: str,
                                  ctx: RunContext) -> list:
    """Encode a prompt for the SDXL refiner and set its conditioning: the aesthetic score and the image
    size it is told about (without this node the refiner gets 6, or 2.5 for the negative prompt, and
    the sampled size)."""
    context, pooled = _encode(clip, ctx, lambda c, library: c.tokenize(text, embeddings=library))
    return _entry(context, pooled, aesthetic_score=ascore, width=width, height=height)


def check_conditioning(value: Any, name: str) -> list:
    """``value`` if it is a CONDITIONING value (a list of [tensor, options] pairs), else a ValueError."""
    if not isinstance(value, list) or not all(isinstance(e, (list, tuple)) and len(e) == 2 for e in value):
        raise InputError(f"{name} is not a CONDITIONING value (a list of [tensor, options] pairs); "
                         "connect the output of CLIPTextEncode or another conditioning node")
    return value


@node("ConditioningCombine", display_name="Conditioning (Combine)", category="conditioning",
      inputs={"conditioning_1": "CONDITIONING", "conditioning_2": "CONDITIONING"},
      outputs={"CONDITIONING": "CONDITIONING"})
def conditioning_combine(conditioning_1: list, conditioning_2: list) -> list:
    """Both conditionings as one: the sampler blends the predictions of all their entries (each entry
    keeps its own area, strength and mask)."""
    return list(check_conditioning(conditioning_1, "conditioning_1")) + list(
        check_conditioning(conditioning_2, "conditioning_2"))


@node("ConditioningZeroOut", display_name="ConditioningZeroOut", category="advanced/conditioning",
      inputs={"conditioning": "CONDITIONING"}, outputs={"CONDITIONING": "CONDITIONING"})
def conditioning_zero_out(conditioning: list) -> list:
    """The same conditioning with every context and pooled output set to zeros (e.g. SDXL-Turbo's
    negative prompt)."""
    import torch

    out = []
    for context, options in check_conditioning(conditioning, "conditioning"):
        options = dict(options)
        if options.get("pooled_output") is not None:
            options["pooled_output"] = torch.zeros_like(options["pooled_output"])
        out.append([torch.zeros_like(context), options])
    return out


NODES = [clip_text_encode, clip_text_encode_sdxl, clip_text_encode_sdxl_refiner, conditioning_combine,
         conditioning_zero_out]
