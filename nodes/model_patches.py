"""Model-patch nodes (ComfyUI's names, params and outputs): ModelSamplingDiscrete,
ModelSamplingContinuousEDM, FreeU, FreeU_V2, HyperTile, TomePatchModel, PatchModelAddDownscale,
UNetSelfAttentionMultiply, UNetCrossAttentionMultiply, CLIPAttentionMultiply, HypernetworkLoader,
DifferentialDiffusion.

Each returns a clone of its MODEL (or CLIP) that shares the loaded weights and carries one more patch
(nodes/sd/patches.py); the input model is unchanged for every other node using it. The guidance
patches (RescaleCFG, SAG, PAG, Perp-Neg, APG, TCFG, CFG-Zero*, CFGNorm) are in guidance_patches.py.
"""
from __future__ import annotations

from typing import Any

from nodegraph import Boolean, Combo, Float, Int, NodeError, RunContext, node
from nodegraph.registry import InputSpec

from .runtime import load_model, model_file, model_fingerprint, model_param

UNET = "model_patches/unet"
ATTENTION = "_for_testing/attention_experiments"
DISCRETE_SAMPLINGS = ("eps", "v_prediction", "lcm", "x0", "img_to_img")
CONTINUOUS_EDM_SAMPLINGS = ("v_prediction", "edm", "edm_playground_v2.5", "eps", "cosmos_rflow")
RESIZE_METHODS = ("bicubic", "nearest-exact", "bilinear", "area", "bislerp")


def model_channels(model: Any, node_type: str) -> int:
    config = getattr(model.unet, "config", None)
    if config is None:
        raise NodeError(f"{node_type}: this model's U-Net ({type(model.unet).__name__}) has no channel layout; "
                        "connect a Stable Diffusion checkpoint's MODEL")
    return int(config.model_channels)


# -- model sampling -------------------------------------------------------------------------------------
@node("ModelSamplingDiscrete", category="advanced/model", inputs={"model": "MODEL"},
      params=[Combo("sampling", DISCRETE_SAMPLINGS,
                    description="what the model predicts: eps (noise), v_prediction, lcm (a latent consistency "
                                "model), x0 (the clean latent), img_to_img (x0 from the latent as it is)"),
              Boolean("zsnr", False, description="rescale the noise schedule to zero terminal SNR (for models "
                                                 "trained that way)")],
      outputs={"MODEL": "MODEL"})
def model_sampling_discrete(model: Any, sampling: str, zsnr: bool) -> Any:
    """Sample the model as another prediction type on SD's discrete noise schedule.

    For checkpoints whose file does not say how they were trained: v-prediction models, LCM models
    (eps prediction distilled on 50 of the 1000 timesteps, with LCM's boundary conditions), x0 models,
    and models trained with zero terminal SNR. The weights are shared with the input model.
    """
    from nodes.sd.sampling_patches import discrete_sampling

    return model.with_model_sampling(discrete_sampling(model.model_sampling, sampling, zsnr))


@node("ModelSamplingContinuousEDM", category="advanced/model", inputs={"model": "MODEL"},
      params=[Combo("sampling", CONTINUOUS_EDM_SAMPLINGS,
                    description="the prediction type: v_prediction, edm (Karras' preconditioning, σ_data 0.5), "
                                "edm_playground_v2.5 (edm with Playground v2.5's latent normalisation), eps, "
                                "cosmos_rflow"),
              Float("sigma_max", 120.0, min=0.0, max=1000.0, step=0.001, description="the highest noise level"),
              Float("sigma_min", 0.002, min=0.0, max=1000.0, step=0.001, description="the lowest noise level")],
      outputs={"MODEL": "MODEL"})
def model_sampling_continuous_edm(model: Any, sampling: str, sigma_max: float, sigma_min: float) -> Any:
    """Sample the model on a continuous noise schedule, log-linear from sigma_min to sigma_max (EDM-style
    models such as Playground v2.5 or the EDM-trained SDXL variants); timestep = ¼·ln σ."""
    from nodes.sd.sampling_patches import continuous_edm_sampling

    if not 0 < sigma_min < sigma_max:
        raise NodeError(f"ModelSamplingContinuousEDM: need 0 < sigma_min < sigma_max, got sigma_min={sigma_min} "
                        f"and sigma_max={sigma_max}")
    schedule, latent_format = continuous_edm_sampling(sampling, sigma_max, sigma_min)
    return model.with_model_sampling(schedule, latent_format)


# -- U-Net patches ---------------------------------------------------------------------------------------
def _freeu_params(b1: float, b2: float) -> list:
    def scale(name: str, default: float, what: str) -> Any:
        return Float(name, default, min=0.0, max=10.0, step=0.01, description=what)

    return [scale("b1", b1, "backbone factor at the deepest decoder level"),
            scale("b2", b2, "backbone factor at the next level"),
            scale("s1", 0.9, "skip low-frequency factor at the deepest decoder level"),
            scale("s2", 0.2, "skip low-frequency factor at the next level")]


@node("FreeU", category=UNET, inputs={"model": "MODEL"}, params=_freeu_params(1.1, 1.2), outputs={"MODEL": "MODEL"})
def freeu(model: Any, b1: float, b2: float, s1: float, s2: float) -> Any:
    """FreeU: at the two deepest decoder levels, amplify half of the backbone features (b1, b2) and damp
    the low frequencies of the skip connections (s1, s2), for more detail at no cost."""
    from nodes.sd.unet_patches import FreeU

    return model.patched(output_block_patch=FreeU(model_channels(model, "FreeU"), b1, b2, s1, s2))


@node("FreeU_V2", category=UNET, inputs={"model": "MODEL"}, params=_freeu_params(1.3, 1.4), outputs={"MODEL": "MODEL"})
def freeu_v2(model: Any, b1: float, b2: float, s1: float, s2: float) -> Any:
    """FreeU version 2: as FreeU, but the backbone factor is weighted per pixel by the features' own
    (normalised) mean, so flat regions are amplified less."""
    from nodes.sd.unet_patches import FreeU

    return model.patched(output_block_patch=FreeU(model_channels(model, "FreeU_V2"), b1, b2, s1, s2, version=2))


@node("HyperTile", category=UNET, inputs={"model": "MODEL"},
      params=[Int("tile_size", 256, min=1, max=2048, description="tile size in image pixels (at least 32)"),
              Int("swap_size", 2, min=1, max=128, description="how many tile layouts to choose among at random"),
              Int("max_depth", 0, min=0, max=10, description="how many lower U-Net levels are tiled too"),
              Boolean("scale_depth", False, description="grow the tiles with the depth")],
      outputs={"MODEL": "MODEL"})
def hypertile(model: Any, tile_size: int, swap_size: int, max_depth: int, scale_depth: bool) -> Any:
    """HyperTile: self-attention at high resolution runs on tiles of the latent, much faster for large
    images. The tile layout is drawn at random each step (seeded by the sampler's seed)."""
    from nodes.sd.unet_patches import HyperTile

    patch = HyperTile(tile_size, swap_size, max_depth, scale_depth)
    return model.patched(attn1_patch=patch.tile, attn1_output_patch=patch.untile)


@node("TomePatchModel", category=UNET, inputs={"model": "MODEL"},
      params=[Float("ratio", 0.3, min=0.0, max=1.0, step=0.01, description="share of the tokens merged away")],
      outputs={"MODEL": "MODEL"})
def tome_patch_model(model: Any, ratio: float) -> Any:
    """Token merging (ToMe): self-attention at full resolution merges the most similar tokens first,
    trading a little detail for speed. Which tokens may merge is drawn at random (seeded)."""
    from nodes.sd.tome import TokenMerging

    patch = TokenMerging(ratio)
    return model.patched(attn1_patch=patch.merge, attn1_output_patch=patch.unmerge)


@node("PatchModelAddDownscale", display_name="PatchModelAddDownscale (Kohya Deep Shrink)", category=UNET,
      inputs={"model": "MODEL"},
      params=[Int("block_number", 3, min=1, max=32, step=1, description="the input block whose output is shrunk"),
              Float("downscale_factor", 2.0, min=0.1, max=9.0, step=0.001, description="how much to shrink it"),
              Float("start_percent", 0.0, min=0.0, max=1.0, step=0.001, description="when shrinking starts"),
              Float("end_percent", 0.35, min=0.0, max=1.0, step=0.001, description="when shrinking ends"),
              Boolean("downscale_after_skip", True, description="shrink after the block's skip connection is "
                                                                "kept (else before)"),
              Combo("downscale_method", RESIZE_METHODS, description="how to shrink"),
              Combo("upscale_method", RESIZE_METHODS, description="how to grow back")],
      outputs={"MODEL": "MODEL"})
def patch_model_add_downscale(model: Any, block_number: int, downscale_factor: float, start_percent: float,
                              end_percent: float, downscale_after_skip: bool, downscale_method: str,
                              upscale_method: str) -> Any:
    """Kohya's Deep Shrink: in the early steps the U-Net works at a lower resolution inside, so images
    larger than the model's training size keep a coherent composition."""
    from nodes.sd.unet_patches import DeepShrink

    ms = model.model_sampling
    patch = DeepShrink(block_number, downscale_factor, ms.percent_to_sigma(start_percent),
                       ms.percent_to_sigma(end_percent), downscale_method, upscale_method)
    hook = "input_block_patch_after_skip" if downscale_after_skip else "input_block_patch"
    return model.patched(**{hook: patch.input_patch, "output_block_patch": patch.output_patch})


def _multiply_params() -> list:
    return [Float(name, 1.0, min=0.0, max=10.0, step=0.01, description=f"factor of the {what} projection")
            for name, what in (("q", "query"), ("k", "key"), ("v", "value"), ("out", "output"))]


def _unet_attention_multiply(model: Any, which: str, q: float, k: float, v: float, out: float) -> Any:
    from nodes.sd.attention_multiply import unet_attention_patches

    weights = unet_attention_patches(model.unet, which, {"q": q, "k": k, "v": v, "out": out})
    return model.patched(weights=weights)


@node("UNetSelfAttentionMultiply", category=ATTENTION, inputs={"model": "MODEL"}, params=_multiply_params(),
      outputs={"MODEL": "MODEL"})
def unet_self_attention_multiply(model: Any, q: float, k: float, v: float, out: float) -> Any:
    """Scale the U-Net's self-attention projections (query, key, value, output) by the given factors.
    The weights are scaled in place while sampling and restored afterwards."""
    return _unet_attention_multiply(model, "attn1", q, k, v, out)


@node("UNetCrossAttentionMultiply", category=ATTENTION, inputs={"model": "MODEL"}, params=_multiply_params(),
      outputs={"MODEL": "MODEL"})
def unet_cross_attention_multiply(model: Any, q: float, k: float, v: float, out: float) -> Any:
    """Scale the U-Net's cross-attention (prompt) projections (query, key, value, output) by the given
    factors. The weights are scaled in place while sampling and restored afterwards."""
    return _unet_attention_multiply(model, "attn2", q, k, v, out)


@node("CLIPAttentionMultiply", category=ATTENTION, inputs={"clip": "CLIP"}, params=_multiply_params(),
      outputs={"CLIP": "CLIP"})
def clip_attention_multiply(clip: Any, q: float, k: float, v: float, out: float) -> Any:
    """Scale the text encoder's self-attention projections (query, key, value, output) by the given
    factors, in every encoder of the CLIP. Applied while encoding, then restored."""
    from nodes.sd.attention_multiply import text_attention_patches

    if clip is None:
        raise NodeError("CLIPAttentionMultiply: the clip input is empty; connect a checkpoint's CLIP")
    return clip.with_weight_patches(text_attention_patches(clip.models, {"q": q, "k": k, "v": v, "out": out}))


@node("HypernetworkLoader", category="loaders", inputs=[InputSpec("model", "MODEL")],
      params=[model_param("hypernetwork_name", "hypernetworks", "A1111 hypernetwork (.pt or .safetensors)"),
              Float("strength", 1.0, min=-10.0, max=10.0, step=0.01, description="how strongly to apply it")],
      outputs={"MODEL": "MODEL"}, fingerprint=model_fingerprint("hypernetworks", "hypernetwork_name"))
def hypernetwork_loader(model: Any, hypernetwork_name: str, strength: float, ctx: RunContext) -> Any:
    """Apply an A1111 hypernetwork: small networks that transform the keys and values of every attention
    layer whose input width they were trained for. Files load with the weights-only unpickler (or as
    safetensors), from the "hypernetworks" models folder."""
    from nodes.sd.hypernetwork import HypernetworkPatch, read_hypernetwork

    net = load_model(ctx, model_file(ctx.options, "hypernetworks", hypernetwork_name), read_hypernetwork, "hypernetwork")
    patch = HypernetworkPatch(net, strength)
    return model.patched(attn1_patch=patch, attn2_patch=patch.cross)


@node("DifferentialDiffusion", display_name="Differential Diffusion", category="_for_testing",
      inputs={"model": "MODEL"},
      params=[Float("strength", 1.0, min=0.0, max=1.0, step=0.01,
                    description="below 1: blend the step's binary mask with the soft mask (1 and, as in "
                                "ComfyUI, 0: the binary mask alone)")],
      outputs={"MODEL": "MODEL"})
def differential_diffusion(model: Any, strength: float) -> Any:
    """Differential Diffusion: read a soft inpainting mask (a latent's noise mask, e.g. from
    SetLatentNoiseMask or a blurred mask) as how much each pixel may change. At each step only the
    pixels whose mask value is at least the share of the schedule still to go (counted in the
    model's timesteps) are repainted, so a pixel at 0.3 changes in about the last 30% of the schedule
    and one at 1 in all of it. Needs a latent
    with a noise mask; without one it changes nothing."""
    from nodes.sd.differential_diffusion import DifferentialDiffusion

    return model.patched(denoise_mask_function=DifferentialDiffusion(strength))


NODES = [model_sampling_discrete, model_sampling_continuous_edm, freeu, freeu_v2, hypertile, tome_patch_model,
         patch_model_add_downscale, unet_self_attention_multiply, unet_cross_attention_multiply,
         clip_attention_multiply, hypernetwork_loader, differential_diffusion]
