"""How much of a sampling step is spent outside the U-Net?

Runs the whole KSampler loop (seeded noise, CFG with cond + uncond batched, model sampling, the
sampler's update rule, its noise) for every sampler of KSampler's list with a zero-cost U-Net stand-in, and compares
that time with a full-size SD1.5 U-Net call (fp32, batch 2 = cond + uncond, 32×32 latent, 77 tokens)
measured in the same run, interleaved, medians after warm-up.

    flock /tmp/ng-heavy.lock .venv/bin/python bench/sampling.py

Per sampler: loop time / number of U-Net calls, as a percentage of one U-Net call (= how much the
non-model work slows a real run down). The last line is JSON; `overhead_pct` is the maximum.

Then every model patch node on one guided step (bench/patch_overhead.py): `worst_patch_overhead_pct` is
the largest share of the step's U-Net time its hooks take, `worst_patch` names that patch.
`--part samplers` or `--part patches` runs one part alone.
"""
from __future__ import annotations

import json
import os
import pathlib
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from nodes.sd import ksampler as K  # noqa: E402
from nodes.sd.diffusion_model import DiffusionModel  # noqa: E402

STEPS = 20
ROUNDS = 5
LATENT = (1, 4, 32, 32)
# Every KSampler sampler except the *_gpu names (the same rules as their CPU names here).
SAMPLERS = [name for name in K.SAMPLER_NAMES if not name.endswith("_gpu")]


class ZeroCostUNet(torch.nn.Module):
    """Stands in for the U-Net: returns its input (no computation), counts calls."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # gives the model a device and dtype
        self.calls = 0

    def forward(self, x, timesteps, context=None, y=None):
        self.calls += 1
        return x


def build_sd15_unet():
    """(module, description): the project's U-Net at SD1.5 size if present, else diffusers' at the SD1.5 config."""
    try:
        from nodes.sd.unet import UNetModel, full_config
        return UNetModel(full_config("sd1")).eval(), "nodes.sd.unet.UNetModel(full_config('sd1'))"
    except ImportError:
        from diffusers import UNet2DConditionModel
        unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8,
                                    block_out_channels=(320, 640, 1280, 1280)).eval()
        return unet, "diffusers.UNet2DConditionModel (SD1.5 config)"


def time_unet(unet, x, t, context) -> float:
    start = time.perf_counter()
    with torch.no_grad():
        unet(x, t, context)
    return time.perf_counter() - start


def time_loop(model, name, pos, neg) -> tuple[float, int]:
    model.unet.calls = 0
    start = time.perf_counter()
    K.sample(model, {"samples": torch.zeros(LATENT)}, pos, neg, seed=1, steps=STEPS, cfg=7.0,
             sampler_name=name, scheduler="karras")
    return time.perf_counter() - start, model.unet.calls


def main() -> None:
    part = sys.argv[sys.argv.index("--part") + 1] if "--part" in sys.argv else "all"
    figures: dict = {}
    if part in ("all", "samplers"):
        figures.update(sampler_overhead())
    if part in ("all", "patches"):
        import patch_overhead

        patches = patch_overhead.measure()
        for name, pct in patches["per_patch_pct"].items():
            print(f"{name:32s} patch overhead {pct:8.3f}% of the step's U-Net time")
        figures.update(patches)
    print(json.dumps(figures))


def sampler_overhead() -> dict:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, latent {LATENT}, {STEPS} steps, CFG 7")
    unet, what = build_sd15_unet()
    print(f"reference U-Net: {what}, fp32, batch 2, 77-token context")
    g = torch.Generator().manual_seed(0)
    x = torch.randn((2,) + LATENT[1:], generator=g)
    t = torch.tensor([500.0, 500.0])
    ctx = torch.randn(2, 77, 768, generator=g)
    pos = [[torch.randn(1, 77, 768, generator=g), {}]]
    neg = [[torch.randn(1, 77, 768, generator=g), {}]]
    model = DiffusionModel.for_family(ZeroCostUNet(), "sd1")

    for _ in range(2):  # warm-up
        time_unet(unet, x, t, ctx)
    for name in SAMPLERS:
        time_loop(model, name, pos, neg)

    unet_times: list[float] = []
    loop_times: dict[str, list[float]] = {name: [] for name in SAMPLERS}
    calls: dict[str, int] = {}
    for _ in range(ROUNDS):  # interleaved
        unet_times.append(time_unet(unet, x, t, ctx))
        for name in SAMPLERS:
            seconds, calls[name] = time_loop(model, name, pos, neg)
            loop_times[name].append(seconds)

    unet_s = statistics.median(unet_times)
    print(f"U-Net call: median {unet_s * 1000:.0f} ms over {ROUNDS} runs")
    per_sampler = {}
    for name in SAMPLERS:
        loop_s = statistics.median(loop_times[name])
        per_call_ms = loop_s / calls[name] * 1000
        pct = loop_s / (calls[name] * unet_s) * 100
        per_sampler[name] = round(pct, 4)
        print(f"{name:32s} {calls[name]:3d} U-Net calls  loop {loop_s * 1000:7.2f} ms  "
              f"{per_call_ms:6.3f} ms/call  {loop_s / STEPS * 1000:6.3f} ms/step  overhead {pct:.3f}%")
    worst = max(per_sampler, key=per_sampler.get)
    return {"overhead_pct": per_sampler[worst], "worst_sampler": worst, "unet_ms": round(unet_s * 1000, 1),
            "unet": what, "per_sampler_pct": per_sampler}


if __name__ == "__main__":
    main()
