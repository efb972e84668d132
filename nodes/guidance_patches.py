"""Guidance patch nodes (ComfyUI's names, params and outputs): RescaleCFG, SelfAttentionGuidance,
PerturbedAttentionGuidance, PerpNeg, PerpNegGuider, APG, TCFG, CFGZeroStar, CFGNorm.

Each model patch returns a clone of its MODEL that shares the loaded weights and carries one more
guidance hook (nodes/sd/patches.py); the formulas are in nodes/sd/guidance_patches.py,
attention_guidance.py and perp_neg.py.
"""
from __future__ import annotations

from typing import Any

from nodegraph import Float, node
from nodegraph.registry import InputSpec

from .sampling import cfg_param

GUIDANCE = "advanced/guidance"
TESTING = "_for_testing"
PATCHED = {"patched_model": "MODEL"}


@node("RescaleCFG", category="advanced/model", inputs={"model": "MODEL"},
      params=[Float("multiplier", 0.7, min=0.0, max=1.0, step=0.01,
                    description="how much of the rescaled result to use (0: plain CFG)")],
      outputs={"MODEL": "MODEL"})
def rescale_cfg(model: Any, multiplier: float) -> Any:
    """Rescale classifier-free guidance: bring the guided prediction's spread back to the positive
    prediction's (in v-space), which stops high cfg from over-exposing; meant for v-prediction and
    zero-terminal-SNR models."""
    from nodes.sd.guidance_patches import RescaleCFG

    return model.patched(cfg_function=RescaleCFG(multiplier))


@node("SelfAttentionGuidance", display_name="Self-Attention Guidance", category=TESTING, inputs={"model": "MODEL"},
      params=[Float("scale", 0.5, min=-2.0, max=5.0, step=0.01, description="guidance strength"),
              Float("blur_sigma", 2.0, min=0.0, max=10.0, step=0.1,
                    description="blur of the regions the model attends to")],
      outputs={"MODEL": "MODEL"})
def self_attention_guidance(model: Any, scale: float, blur_sigma: float) -> Any:
    """Self-Attention Guidance: blur the parts of the image the model's middle-block self-attention
    focuses on, predict again, and steer away from that blurred prediction. One more model call per
    step (the negative prompt also runs at cfg 1)."""
    from nodes.sd.attention_guidance import SelfAttentionGuidance

    return model.with_patches(SelfAttentionGuidance(scale, blur_sigma).patches(model.patches))


@node("PerturbedAttentionGuidance", category="model_patches/unet", inputs={"model": "MODEL"},
      params=[Float("scale", 3.0, min=0.0, max=100.0, step=0.01, description="guidance strength")],
      outputs={"MODEL": "MODEL"})
def perturbed_attention_guidance(model: Any, scale: float) -> Any:
    """Perturbed-Attention Guidance: predict the positive prompt again with the middle block's
    self-attention turned into the identity, and steer away from that degraded prediction. One more
    model call per step."""
    from nodes.sd.attention_guidance import PerturbedAttentionGuidance

    return model.patched(post_cfg=PerturbedAttentionGuidance(scale))


@node("PerpNeg", display_name="Perp-Neg (DEPRECATED by PerpNegGuider)", category=TESTING,
      inputs=[InputSpec("model", "MODEL"), InputSpec("empty_conditioning", "CONDITIONING")],
      params=[Float("neg_scale", 1.0, min=0.0, max=100.0, step=0.01,
                    description="strength of the negative prompt's perpendicular part")],
      outputs={"MODEL": "MODEL"})
def perp_neg(model: Any, empty_conditioning: Any, neg_scale: float) -> Any:
    """Perp-Neg as a model patch: guidance measured from an empty prompt's prediction, with only the
    part of the negative prompt perpendicular to the positive one subtracted (one more model call per
    step). PerpNegGuider does the same in one batch."""
    from nodes.sd.perp_neg import PerpNeg

    return model.patched(cfg_function=PerpNeg(empty_conditioning, neg_scale))


@node("PerpNegGuider", category=TESTING,
      inputs=[InputSpec("model", "MODEL"), InputSpec("positive", "CONDITIONING"),
              InputSpec("negative", "CONDITIONING"), InputSpec("empty_conditioning", "CONDITIONING")],
      params=[cfg_param(), Float("neg_scale", 1.0, min=0.0, max=100.0, step=0.01,
                                 description="strength of the negative prompt's perpendicular part")],
      outputs={"GUIDER": "GUIDER"})
def perp_neg_guider(model: Any, positive: Any, negative: Any, empty_conditioning: Any, cfg: float,
                    neg_scale: float) -> Any:
    """A guider with Perp-Neg guidance: the positive, negative and empty prompts run in one batch; the
    negative prompt only removes what is perpendicular to the positive one (good for negatives that
    overlap the subject, e.g. "a view from the back")."""
    from nodes.sd.perp_neg import PerpNegGuider

    return PerpNegGuider(model, positive, negative, empty_conditioning, cfg, neg_scale)


@node("APG", display_name="Adaptive Projected Guidance", category="sampling/custom_sampling",
      inputs={"model": "MODEL"},
      params=[Float("eta", 1.0, min=-10.0, max=10.0, step=0.01,
                    description="scale of the guidance's part parallel to the prediction (1: as CFG)"),
              Float("norm_threshold", 5.0, min=0.0, max=50.0, step=0.1,
                    description="cap on the guidance's norm (0: no cap)"),
              Float("momentum", 0.0, min=-5.0, max=1.0, step=0.01,
                    description="running average of the guidance over the steps (0: off)")],
      outputs={"MODEL": "MODEL"})
def apg(model: Any, eta: float, norm_threshold: float, momentum: float) -> Any:
    """Adaptive Projected Guidance: high cfg without over-saturation, by capping the guidance's norm and
    damping its part parallel to the prediction."""
    from nodes.sd.guidance_patches import APG

    return model.patched(pre_cfg=APG(eta, norm_threshold, momentum))


@node("TCFG", display_name="Tangential Damping CFG", category=GUIDANCE, inputs={"model": "MODEL"},
      outputs=PATCHED)
def tcfg(model: Any) -> Any:
    """TCFG (Tangential Damping CFG, arXiv 2503.18137): refine the negative prediction to align with the
    positive one, dropping its tangential noise component, for better quality."""
    from nodes.sd.guidance_patches import tcfg as tcfg_hook

    return model.patched(pre_cfg=tcfg_hook)


@node("CFGZeroStar", category=GUIDANCE, inputs={"model": "MODEL"}, outputs=PATCHED)
def cfg_zero_star(model: Any) -> Any:
    """CFG-Zero*: rescale the negative prediction by its optimal projection on the positive one before
    guiding, which corrects early-step errors of classifier-free guidance."""
    from nodes.sd.guidance_patches import cfg_zero_star as hook

    return model.patched(post_cfg=hook)


@node("CFGNorm", category=GUIDANCE, inputs={"model": "MODEL"},
      params=[Float("strength", 1.0, min=0.0, max=100.0, step=0.01, description="factor of the result")],
      outputs=PATCHED)
def cfg_norm(model: Any, strength: float) -> Any:
    """Cap the guided prediction's per-pixel norm at the positive prediction's, then scale it by
    strength."""
    from nodes.sd.guidance_patches import CFGNorm

    return model.patched(post_cfg=CFGNorm(strength))


NODES = [rescale_cfg, self_attention_guidance, perturbed_attention_guidance, perp_neg, perp_neg_guider, apg,
         tcfg, cfg_zero_star, cfg_norm]
