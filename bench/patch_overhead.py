"""How much does each model patch add to a guided sampling step, over the U-Net time of that step?

One guided step (CFG 7, cond + uncond batched, σ = 5 so that deep shrink is active) per patch node, on
a U-Net of SD1.5's layout (channel_mult 1,2,4,4, two ResBlocks per level, attention at the three upper
levels, 768-wide prompts) at model_channels 64 instead of 320, latent 16×16 (a short run on a shared CPU). Every hook of the patch is
timed with an exclusive-time profiler: a hook's time does not include the U-Net calls it makes (SAG's,
PAG's and Perp-Neg's extra prediction count as U-Net time: that is their design, not overhead) nor the
hooks nested in them. A weight patch's apply-and-restore happens once per sampling run: its time is
spread over a 20-step run.

    overhead % = (hook time + weight-patch time / 20 steps) / U-Net time of the step × 100

The narrower U-Net and the smaller latent make this an upper bound: the U-Net's work grows with
channels² (and attention with tokens²), a U-Net hook's with channels (FreeU, ToMe, HyperTile, deep
shrink), a guidance hook's not at all; a hypernetwork's cross-attention MLPs work on the 768-wide
prompt whatever the U-Net's width.
ToMe and HyperTile make attention cheaper; only their own cost is counted here, not what they save.

    python bench/patch_overhead.py          (or through bench/sampling.py, which adds its keys)
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import statistics
import sys
import time
from typing import Any, Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch import nn  # noqa: E402

import nodes.guidance_patches as G  # noqa: E402
import nodes.model_patches as M  # noqa: E402
from nodes.sd.diffusion_model import DiffusionModel  # noqa: E402
from nodes.sd.guidance import CFGGuider  # noqa: E402
from nodes.sd.hypernetwork import Hypernetwork, HypernetworkPatch  # noqa: E402
from nodes.sd.patches import ModelPatches  # noqa: E402
from nodes.sd.unet import UNetModel, full_config  # noqa: E402

ROUNDS = 3
RUN_STEPS = 20
LATENT = (1, 4, 16, 16)
SIGMA = 5.0


class Profile:
    """Exclusive time per kind ("unet", "hook") of nested timed regions."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {"unet": 0.0, "hook": 0.0}
        self._nested: list[float] = []

    def timed(self, kind: str, fn: Callable) -> Callable:
        def run(*args: Any, **kwargs: Any) -> Any:
            self._nested.append(0.0)
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                self.totals[kind] += elapsed - self._nested.pop()
                if self._nested:
                    self._nested[-1] += elapsed

        return run

    def reset(self) -> None:
        self.totals = {k: 0.0 for k in self.totals}


class TimedUNet(nn.Module):
    """The U-Net, its calls timed as "unet" (hooks inside them are timed as hooks, apart)."""

    accepts_hooks = True

    def __init__(self, inner: UNetModel, profile: Profile) -> None:
        super().__init__()
        self.inner, self.config, self.profile = inner, inner.config, profile

    def forward(self, x, timesteps, context=None, y=None, **kwargs):
        return self.profile.timed("unet", self.inner)(x, timesteps, context, y, **kwargs)


def timed_patches(patches: ModelPatches, profile: Profile) -> ModelPatches:
    """``patches`` with every hook wrapped in the profiler (weight patches as they are)."""
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(patches):
        value = getattr(patches, f.name)
        if f.name in ("weights", "disable_cfg1_optimization") or not value:
            continue
        if f.name.endswith("_replace"):
            changes[f.name] = tuple((key, profile.timed("hook", fn)) for key, fn in value)
        elif isinstance(value, tuple):
            changes[f.name] = tuple(profile.timed("hook", fn) for fn in value)
        else:
            changes[f.name] = profile.timed("hook", value)
    return dataclasses.replace(patches, **changes)


def hypernetwork(widths: tuple[int, ...]) -> Hypernetwork:
    """An A1111-style hypernetwork (layer structure 1, 2, 1, relu) for the given widths."""
    torch.manual_seed(0)

    def mlp(w: int) -> nn.Sequential:
        return nn.Sequential(nn.Linear(w, 2 * w), nn.ReLU(), nn.Linear(2 * w, w)).eval()

    return Hypernetwork({w: (mlp(w), mlp(w)) for w in widths}, "bench")


def patch_nodes(model: DiffusionModel, empty: list) -> dict[str, DiffusionModel]:
    """Every MODEL patch node applied to ``model`` with its default params."""
    channels = model.unet.config.model_channels
    net = hypernetwork(tuple(channels * m for m in (1, 2, 4)) + (768,))
    hyper = HypernetworkPatch(net, 1.0)
    return {
        "ModelSamplingDiscrete": M.model_sampling_discrete(model, "v_prediction", True),
        "FreeU": M.freeu(model, 1.1, 1.2, 0.9, 0.2),
        "FreeU_V2": M.freeu_v2(model, 1.3, 1.4, 0.9, 0.2),
        "HyperTile": M.hypertile(model, 64, 2, 0, False),  # tiles of 8 latent pixels: 2×2 of them
        "TomePatchModel": M.tome_patch_model(model, 0.3),
        "PatchModelAddDownscale": M.patch_model_add_downscale(model, 3, 2.0, 0.0, 0.35, True, "bicubic", "bicubic"),
        "UNetSelfAttentionMultiply": M.unet_self_attention_multiply(model, 1.1, 1.1, 1.1, 1.1),
        "UNetCrossAttentionMultiply": M.unet_cross_attention_multiply(model, 1.1, 1.1, 1.1, 1.1),
        "HypernetworkLoader": model.patched(attn1_patch=hyper, attn2_patch=hyper.cross),
        "RescaleCFG": G.rescale_cfg(model, 0.7),
        "SelfAttentionGuidance": G.self_attention_guidance(model, 0.5, 2.0),
        "PerturbedAttentionGuidance": G.perturbed_attention_guidance(model, 3.0),
        "PerpNeg": G.perp_neg(model, empty, 1.0),
        "APG": G.apg(model, 1.0, 5.0, 0.5),
        "TCFG": G.tcfg(model),
        "CFGZeroStar": G.cfg_zero_star(model),
        "CFGNorm": G.cfg_norm(model, 1.0),
    }


def measure() -> dict:
    profile = Profile()
    config = dataclasses.replace(full_config("sd1"), model_channels=64)
    base = DiffusionModel.for_family(TimedUNet(UNetModel(config).eval(), profile), "sd1")
    g = torch.Generator().manual_seed(0)
    pos, neg, empty = ([[torch.randn(1, 77, 768, generator=g), {}]] for _ in range(3))
    x = torch.randn(LATENT, generator=g) * SIGMA
    sigma = torch.tensor([SIGMA])
    patched = patch_nodes(base, empty)
    guiders = {}
    for name, model in patched.items():
        guider = CFGGuider(model.with_patches(timed_patches(model.patches, profile)), pos, neg, 7.0)
        guider.prepare(LATENT, torch.device("cpu"))
        guiders[name] = guider
    samples: dict[str, list[float]] = {name: [] for name in guiders}
    with torch.no_grad():
        for round_ in range(ROUNDS + 1):  # the first round warms up
            for name, guider in guiders.items():
                start = time.perf_counter()
                with guider.model.in_use():
                    weights_s = time.perf_counter() - start
                profile.reset()
                with guider.model.in_use():
                    guider(x, sigma, seed=round_)
                if round_:
                    hooks = profile.totals["hook"] + weights_s / RUN_STEPS
                    samples[name].append(hooks / profile.totals["unet"] * 100)
    per_patch = {name: round(statistics.median(v), 3) for name, v in samples.items()}
    worst = max(per_patch, key=per_patch.get)
    return {"worst_patch_overhead_pct": per_patch[worst], "worst_patch": worst, "per_patch_pct": per_patch,
            "patch_unet": f"SD1.5 layout at model_channels 64, latent {LATENT[2]}x{LATENT[3]}, batch 2"}


def main() -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    result = measure()
    for name, pct in result["per_patch_pct"].items():
        print(f"{name:28s} overhead {pct:8.3f}% of the step's U-Net time")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
