"""U-Net speed: ours vs diffusers' UNet2DConditionModel on the same weights, and ours in bf16.

Full SD1.5 config, CPU, batch 2, 32x32 latent, 77-token context. Called by bench/models.py;
runnable alone: ``flock /tmp/ng-heavy.lock .venv/bin/python bench/_unet_bench.py``.
"""
from __future__ import annotations

import copy
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from nodes.sd.unet import UNetModel, full_config, ldm_yaml_config  # noqa: E402


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _interleaved_medians(fns: dict, runs: int, warmup: int) -> dict:
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            times[name].append(_seconds(fn))
    return {name: statistics.median(ts) for name, ts in times.items()}


def matmul_flops_per_second(n: int = 4096, runs: int = 5) -> float:
    """FLOP/s of one plain ``n x n`` fp32 matmul (the machine's practical peak)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    return 2 * n**3 / statistics.median(_seconds(lambda: a @ b) for _ in range(runs))


def _diffusers_twin(model: UNetModel):
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, create_unet_diffusers_config_from_ldm

    checkpoint = {"model.diffusion_model." + k: v for k, v in model.state_dict().items()}
    config = create_unet_diffusers_config_from_ldm(ldm_yaml_config(model.config), checkpoint)
    ref = UNet2DConditionModel(**config)
    ref.load_state_dict(convert_ldm_unet_checkpoint(checkpoint, config), strict=True)
    return ref.eval()


def bench_unet(runs: int = 5, warmup: int = 1) -> dict:
    """Print and return ``unet_ratio`` (ours/diffusers time, fp32), ``unet_fraction_of_matmul_peak``
    (our forward's FLOPs / its time / fp32 matmul FLOP/s) and ``unet_bf16_speedup`` (our fp32 / our bf16)."""
    torch.manual_seed(0)
    ours = UNetModel(full_config("sd1")).eval()
    ref = _diffusers_twin(ours)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 32, 32, generator=g)
    t = torch.tensor([999.0, 500.0])
    context = torch.randn(2, 77, 768, generator=g)

    with torch.inference_mode():
        err = ((ours(x, t, context) - ref(x, t, encoder_hidden_states=context).sample).norm()
               / ref(x, t, encoder_hidden_states=context).sample.norm()).item()
        fp32 = _interleaved_medians(
            {"ours": lambda: ours(x, t, context), "diffusers": lambda: ref(x, t, encoder_hidden_states=context)},
            runs, warmup,
        )
        del ref
        peak = matmul_flops_per_second()
        with FlopCounterMode(display=False) as counter:
            ours(x, t, context)
        flops = counter.get_total_flops()

        ours_bf16 = copy.deepcopy(ours).to(torch.bfloat16)
        xb, cb = x.bfloat16(), context.bfloat16()
        bf16 = _interleaved_medians(
            {"fp32": lambda: ours(x, t, context), "bf16": lambda: ours_bf16(xb, t, cb)}, runs, warmup
        )

    figures = {
        "unet_ratio": round(fp32["ours"] / fp32["diffusers"], 4),
        "unet_fraction_of_matmul_peak": round(flops / fp32["ours"] / peak, 4),
        "unet_bf16_speedup": round(bf16["fp32"] / bf16["bf16"], 3),
    }
    print(
        f"unet sd1.5 fp32 b2 32x32: ours {fp32['ours']:.3f}s diffusers {fp32['diffusers']:.3f}s "
        f"(rel err {err:.1e}); {flops / 1e9:.1f} GFLOP, matmul peak {peak / 1e9:.0f} GFLOP/s; "
        f"ours fp32 {bf16['fp32']:.3f}s bf16 {bf16['bf16']:.3f}s"
    )
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    bench_unet()
