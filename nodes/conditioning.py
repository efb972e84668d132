"""Conditioning nodes: CLIPTextEncode, ConditioningCombine, ConditioningZeroOut.

A CONDITIONING value is ComfyUI's: a list of ``[context, options]`` pairs, ``context`` a float tensor
``[1, tokens, channels]`` and ``options`` a dict (``pooled_output`` [1, P], and for SDXL optionally
``width``/``height``/``crop_w``/``crop_h``/``target_width``/``target_height``). As in ComfyUI, a
plain CLIPTextEncode sets no SDXL sizes: the sampler fills width/height with the size of the image
being sampled (latent size × 8), crops with 0 and targets with width/height.
"""
from __future__ import annotations

from typing import Any

from nodegraph import RunContext, String, node

from .loaders import NO_CLIP
from .runtime import model_folders, on_device


@node("CLIPTextEncode", display_name="CLIP Text Encode (Prompt)", category="conditioning",
      inputs={"clip": "CLIP"},
      params=[String("text", "", multiline=True,
                     description="the prompt; (word:1.2) and (word) weigh words up, [word] down")],
      outputs={"CONDITIONING": "CONDITIONING"})
def clip_text_encode(clip: Any, text: str, ctx: RunContext) -> list:
    """Encode a prompt with the checkpoint's text encoder(s).

    Prompt weighting as ComfyUI: ``(a red fox:1.3)``, ``(fox)`` = ×1.1, ``\\(`` for a literal bracket;
    prompts longer than 75 tokens are encoded in several 77-token windows and concatenated.
    ``embedding:name`` inserts a textual-inversion embedding from the ``embeddings`` model folders;
    a name with no file there is left out with a warning, as ComfyUI does.
    """
    from nodes.sd.embeddings import EmbeddingLibrary

    if clip is None:
        raise ValueError(NO_CLIP)
    library = EmbeddingLibrary(model_folders(ctx.options))
    with on_device(ctx.options, *clip.models.values()):
        context, pooled = clip.encode(text, embeddings=library)
    if library.missing:
        ctx.log.warning("node %s: no embedding file named %s in %s; left out of the prompt (as ComfyUI does)",
                        ctx.node_id, ", ".join(library.missing), ", ".join(map(str, library.folders)))
    if library.mismatched:
        ctx.log.warning("node %s: embedding %s left out: made for another text encoder",
                        ctx.node_id, "; ".join(library.mismatched))
    options = {} if pooled is None else {"pooled_output": pooled.cpu()}
    return [[context.cpu(), options]]


def _check_conditioning(value: Any, name: str) -> list:
    if not isinstance(value, list) or not all(isinstance(e, (list, tuple)) and len(e) == 2 for e in value):
        raise ValueError(f"{name} is not a CONDITIONING value (a list of [tensor, options] pairs); "
                         "connect the output of CLIPTextEncode or another conditioning node")
    return value


@node("ConditioningCombine", display_name="Conditioning (Combine)", category="conditioning",
      inputs={"conditioning_1": "CONDITIONING", "conditioning_2": "CONDITIONING"},
      outputs={"CONDITIONING": "CONDITIONING"})
def conditioning_combine(conditioning_1: list, conditioning_2: list) -> list:
    """Both conditionings as one: the sampler blends the predictions of all their entries (each entry
    keeps its own area, strength and mask)."""
    return list(_check_conditioning(conditioning_1, "conditioning_1")) + list(
        _check_conditioning(conditioning_2, "conditioning_2"))


@node("ConditioningZeroOut", display_name="ConditioningZeroOut", category="advanced/conditioning",
      inputs={"conditioning": "CONDITIONING"}, outputs={"CONDITIONING": "CONDITIONING"})
def conditioning_zero_out(conditioning: list) -> list:
    """The same conditioning with every context and pooled output set to zeros (e.g. SDXL-Turbo's
    negative prompt)."""
    import torch

    out = []
    for context, options in _check_conditioning(conditioning, "conditioning"):
        options = dict(options)
        if options.get("pooled_output") is not None:
            options["pooled_output"] = torch.zeros_like(options["pooled_output"])
        out.append([torch.zeros_like(context), options])
    return out


NODES = [clip_text_encode, conditioning_combine, conditioning_zero_out]
