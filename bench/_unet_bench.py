"""U-Net speed: ours vs diffusers' UNet2DConditionModel on the same weights, and ours in bf16.

Full SD1.5 config, CPU, batch 2, 32x32 latent, 77-token context. Called by bench/models.py;
runnable alone: ``flock /tmp/ng-heavy.lock .venv/bin/python bench/_unet_bench.py``.
"""
from __future__ import annotations

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


def _timed(fn) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def _interleaved_medians(fns: dict, runs: int, warmup: int) -> dict:
    """Median wall and CPU seconds per function; runs alternate in A B, B A order to cancel drift."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict = {name: [] for name in fns}
    names = list(fns)
    for i in range(runs):
        for name in names if i % 2 == 0 else reversed(names):
            times[name].append(_timed(fns[name]))
    return {
        name: (statistics.median(w for w, _ in ts), statistics.median(c for _, c in ts)) for name, ts in times.items()
    }


def _diffusers_twin(model: UNetModel):
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, create_unet_diffusers_config_from_ldm

    checkpoint = {"model.diffusion_model." + k: v for k, v in model.state_dict().items()}
    config = create_unet_diffusers_config_from_ldm(ldm_yaml_config(model.config), checkpoint)
    ref = UNet2DConditionModel(**config)
    ref.load_state_dict(convert_ldm_unet_checkpoint(checkpoint, config), strict=True)
    return ref.eval()


def bench_unet(runs: int = 7, warmup: int = 1) -> dict:
    """Print and return ``unet_ratio`` (ours/diffusers time, fp32), ``unet_fraction_of_matmul_peak``
    (our forward's FLOPs / its time / fp32 matmul FLOP/s) and ``unet_bf16_speedup`` (our fp32 / our bf16)."""
    torch.manual_seed(0)
    ours = UNetModel(full_config("sd1")).eval()
    ref = _diffusers_twin(ours)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 32, 32, generator=g)
    t = torch.tensor([999.0, 500.0])
    context = torch.randn(2, 77, 768, generator=g)

    n = 4096  # the machine's practical fp32 peak: one plain n x n matmul, timed among the U-Net runs
    a, b = torch.randn(n, n), torch.randn(n, n)

    with torch.inference_mode():
        expected = ref(x, t, encoder_hidden_states=context).sample
        err = ((ours(x, t, context) - expected).norm() / expected.norm()).item()
        fp32 = _interleaved_medians(
            {
                "ours": lambda: ours(x, t, context),
                "diffusers": lambda: ref(x, t, encoder_hidden_states=context),
                "matmul": lambda: a @ b,
            },
            runs,
            warmup,
        )
        del ref
        peak = 2 * n**3 / fp32["matmul"][0]
        with FlopCounterMode(display=False) as counter:
            ours(x, t, context)
        flops = counter.get_total_flops()

        with torch.device("meta"):
            ours_bf16 = UNetModel(ours.config).to(torch.bfloat16)
        ours_bf16 = ours_bf16.to_empty(device="cpu").eval()
        ours_bf16.load_state_dict(ours.state_dict())
        xb, cb = x.bfloat16(), context.bfloat16()
        bf16 = _interleaved_medians(
            {"fp32": lambda: ours(x, t, context), "bf16": lambda: ours_bf16(xb, t, cb)}, runs, warmup
        )

    figures = {
        "unet_ratio": round(fp32["ours"][0] / fp32["diffusers"][0], 4),
        "unet_fraction_of_matmul_peak": round(flops / fp32["ours"][0] / peak, 4),
        "unet_bf16_speedup": round(bf16["fp32"][0] / bf16["bf16"][0], 3),
    }
    print(
        f"unet sd1.5 fp32 b2 32x32, {torch.get_num_threads()} threads, medians of {runs} (wall / CPU s): "
        f"ours {fp32['ours'][0]:.3f} / {fp32['ours'][1]:.3f}, diffusers {fp32['diffusers'][0]:.3f} / "
        f"{fp32['diffusers'][1]:.3f} (CPU-time ratio {fp32['ours'][1] / fp32['diffusers'][1]:.3f}; rel err {err:.1e}); "
        f"{flops / 1e9:.1f} GFLOP, fp32 matmul {peak / 1e9:.0f} GFLOP/s; "
        f"ours fp32 {bf16['fp32'][0]:.3f} bf16 {bf16['bf16'][0]:.3f}"
    )
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    bench_unet()
