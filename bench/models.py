"""Model speed and loading against references measured in the same run (issue 3).

Run: ``flock /tmp/ng-heavy.lock .venv/bin/python bench/models.py`` (a few minutes; writes a ~2 GB
random SD1.5 checkpoint to /tmp once and reuses it).

- U-Net (bench/_unet_bench.py): ours vs diffusers, fp32, full SD1.5, batch 2, 32×32 latent →
  ``unet_ratio``, ``unet_fraction_of_matmul_peak``; ours bf16 vs fp32 → ``unet_bf16_speedup``.
- Text encoder (bench/_text_bench.py): our CLIP-L vs transformers' → ``text_ratio``.
- VAE decoder: ours vs diffusers' AutoencoderKL on the same weights, full SD1.5 config, latent
  [2, 4, 32, 32] → 256², fp32 → ``vae_decode_ratio``. Both run with glibc's malloc tuned as the app
  tunes it (``nodes.sd.memory.tune_cpu_allocator``); untuned, which side pays for fresh pages on
  large activations depends on glibc's threshold heuristics, not on the model code.
- Loading a random full-size SD1.5 fp16 checkpoint: our ``load_checkpoint`` (weights kept in fp16)
  vs ``safetensors.torch.load_file`` alone, each in its own fresh subprocess, interleaved, until
  every weight is resident in RAM (both memory-map the file; our load returns with it read in,
  load_file's needs the touch that both get) → ``load_time_ratio`` with the file evicted from the
  page cache before each run (a first load from disk), ``load_time_ratio_warm`` with the file
  cached (``load_overhead_s``; warm, the read is ~0.15 s of mapping pages and our ~0.1 s module
  build runs beside it), and ``load_peak_rss_over_file`` (the child's whole-process peak RSS,
  torch import included, over the file size).
- bf16 quality: a txt2img run (prompt → 4 euler steps at cfg 7, 256×256 → VAE decode) with the
  same checkpoint in fp32 and in bf16 (U-Net, VAE and text encoder), PSNR of the images →
  ``bf16_psnr_db``. Random weights: the figure measures numerical drift, not image quality.

All timings: warm-up first, then interleaved runs, medians. The last line is the JSON summary.
"""
from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

BENCH_FILE = Path("/tmp/nodegraph-bench-sd15-random-fp16.safetensors")
BENCH_TAG = {"nodegraph.bench": "sd1 full fp16 seed 0 v1"}


def _median_interleaved(fns: dict, runs: int, warmup: int) -> dict[str, float]:
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    items = list(fns.items())
    for i in range(runs):
        for name, fn in items if i % 2 == 0 else items[::-1]:
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


# ----------------------------------------------------------------------------------------------
# VAE decoder


def bench_vae_decode(runs: int = 5, warmup: int = 1) -> dict[str, float]:
    from diffusers import AutoencoderKL as DiffusersAutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint, create_vae_diffusers_config_from_ldm

    from nodes.sd.testing import random_vae
    from nodes.sd.vae import full_config

    cfg = full_config("sd1")
    ours = random_vae(cfg, seed=0)
    checkpoint = {"first_stage_model." + k: v for k, v in ours.state_dict().items()}
    ddconfig = {"double_z": True, "z_channels": cfg.z_channels, "resolution": 256, "in_channels": 3, "out_ch": 3,
                "ch": cfg.ch, "ch_mult": list(cfg.ch_mult), "num_res_blocks": cfg.num_res_blocks,
                "attn_resolutions": [], "dropout": 0.0}
    yaml = {"model": {"params": {"first_stage_config": {"params": {"embed_dim": 4, "ddconfig": ddconfig}}}}}
    config = create_vae_diffusers_config_from_ldm(yaml, checkpoint)
    ref = DiffusersAutoencoderKL(**config)
    ref.load_state_dict(convert_ldm_vae_checkpoint(checkpoint, config), strict=True)
    ref.eval()
    z = torch.randn(2, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        a, b = ours.decode(z), ref.decode(z).sample
        rel = ((a - b).norm() / b.norm()).item()
        t = _median_interleaved({"ours": lambda: ours.decode(z), "diffusers": lambda: ref.decode(z).sample}, runs, warmup)
    print(f"vae decode sd1.5 fp32 [2,4,32,32]->256²: ours {t['ours']:.3f}s diffusers {t['diffusers']:.3f}s "
          f"(rel err {rel:.1e})", flush=True)
    return {"vae_decode_ratio": round(t["ours"] / t["diffusers"], 4)}


# ----------------------------------------------------------------------------------------------
# Loading


def ensure_bench_checkpoint() -> Path:
    """The random full-size SD1.5 fp16 checkpoint (written once, reused while its tag matches)."""
    from nodes.sd.checkpoint import CheckpointError, read_safetensors_header
    from nodes.sd.testing import write_random_checkpoint

    if BENCH_FILE.exists():
        try:
            _, metadata = read_safetensors_header(BENCH_FILE)
            if all(metadata.get(k) == v for k, v in BENCH_TAG.items()):
                return BENCH_FILE
        except CheckpointError:
            pass
    start = time.perf_counter()
    write_random_checkpoint(BENCH_FILE, "sd1", tiny=False, dtype=torch.float16, seed=0, metadata=BENCH_TAG)
    print(f"wrote {BENCH_FILE} ({BENCH_FILE.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - start:.0f}s", flush=True)
    return BENCH_FILE


def _status(field: str) -> int:
    """A byte count from /proc/self/status (VmRSS now, VmHWM peak of this process image)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _touch(tensors) -> float:
    """Read one element per 4 KiB page of every tensor, so that its bytes are really in RAM.

    Tensors are visited in memory order (= file order for memory-mapped ones) on both sides.
    """
    total = 0.0
    for t in sorted(tensors, key=lambda t: t.data_ptr()):
        flat = t.reshape(-1)
        if flat.numel():
            total += float(flat[:: max(1, 4096 // t.element_size())].float().sum())
    return total


def load_child(kind: str, path: str) -> None:
    """Runs in a fresh subprocess: load ``path`` one way, print seconds and RSS figures as JSON.

    Both ways memory-map the file; "ready" adds touching every page of every weight (the same for
    both), i.e. weights resident in RAM.
    """
    if kind == "ours":
        from nodes.sd.checkpoint import load_checkpoint

        def load():
            loaded = load_checkpoint(path)
            return loaded, [p for m in loaded.modules().values() for p in m.parameters()]
    else:
        from safetensors.torch import load_file

        def load():
            tensors = load_file(path)
            return tensors, list(tensors.values())
    before = _status("VmRSS")
    start = time.perf_counter()
    result, tensors = load()
    call = time.perf_counter() - start
    _touch(tensors)
    ready = time.perf_counter() - start
    if kind == "ours":
        assert {t.dtype for t in tensors} == {torch.float16}
    print(json.dumps({"seconds": ready, "call_seconds": call, "peak_rss": _status("VmHWM"), "rss_before": before}))


def _run_child(kind: str, path: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--load-child", kind, str(path)], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def _evict(path: Path) -> None:
    """Drop the file's pages from the OS page cache (no root needed), so the next read hits the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def bench_load(path: Path, rounds: int = 3) -> dict[str, float]:
    """Cold (file evicted from the page cache before each run: a first load from disk) and warm
    (file cached) runs, interleaved ours / load_file, medians."""
    size = path.stat().st_size
    med: dict[str, dict[str, dict[str, float]]] = {}
    for cache in ("cold", "warm"):
        if cache == "warm":
            _run_child("reference", path)  # fill the page cache
        runs: dict[str, list[dict]] = {"ours": [], "reference": []}
        for i in range(rounds):
            for kind in ("ours", "reference") if i % 2 == 0 else ("reference", "ours"):
                if cache == "cold":
                    _evict(path)
                runs[kind].append(_run_child(kind, path))
        fields = ("seconds", "call_seconds", "peak_rss", "rss_before")
        med[cache] = {k: {f: statistics.median(r[f] for r in v) for f in fields} for k, v in runs.items()}
        for name, m in (("ours", med[cache]["ours"]), ("load_file", med[cache]["reference"])):
            print(f"load sd1.5 fp16 ({size / 1e9:.2f} GB, {cache} cache) {name}: call {m['call_seconds']:.3f}s, "
                  f"weights resident {m['seconds']:.3f}s, peak RSS {m['peak_rss'] / 1e9:.2f} GB "
                  f"(before the call {m['rss_before'] / 1e9:.2f} GB)", flush=True)
    cold, warm = med["cold"], med["warm"]
    return {
        "load_time_ratio": round(cold["ours"]["seconds"] / cold["reference"]["seconds"], 3),
        "load_time_ratio_warm": round(warm["ours"]["seconds"] / warm["reference"]["seconds"], 3),
        "load_overhead_s": round(warm["ours"]["seconds"] - warm["reference"]["seconds"], 3),
        "load_peak_rss_over_file": round(cold["ours"]["peak_rss"] / size, 3),
        "load_reference_peak_rss_over_file": round(cold["reference"]["peak_rss"] / size, 3),
        "load_peak_rss_increase_over_file": round((cold["ours"]["peak_rss"] - cold["ours"]["rss_before"]) / size, 3),
    }


# ----------------------------------------------------------------------------------------------
# bf16 quality


def _txt2img(path: Path, dtype: torch.dtype, steps: int = 4) -> torch.Tensor:
    from nodes.sd.checkpoint import load_checkpoint
    from nodes.sd.ksampler import sample

    loaded = load_checkpoint(path, dtype=dtype)
    with torch.inference_mode():
        positive = [[*loaded.text_encoder.encode("a photograph of an astronaut riding a horse")]]
        negative = [[*loaded.text_encoder.encode("")]]
        positive = [[positive[0][0], {"pooled_output": positive[0][1]}]]
        negative = [[negative[0][0], {"pooled_output": negative[0][1]}]]
        latent = {"samples": torch.zeros(1, 4, 32, 32)}
        out = sample(loaded.model, latent, positive, negative, seed=42, steps=steps, cfg=7.0,
                     sampler_name="euler", scheduler="normal")
        return loaded.vae.decode(out["samples"])


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = torch.mean((a.double() - b.double()) ** 2).item()
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


def bench_bf16_psnr(path: Path) -> dict[str, float]:
    start = time.perf_counter()
    ref = _txt2img(path, torch.float32)
    mid = time.perf_counter()
    low = _txt2img(path, torch.bfloat16)
    end = time.perf_counter()
    value = psnr(low, ref)
    print(f"txt2img 256² 4 euler steps: fp32 {mid - start:.1f}s, bf16 {end - mid:.1f}s (incl. load); "
          f"PSNR bf16 vs fp32 {value:.2f} dB; image std {ref.std().item():.3f}", flush=True)
    return {"bf16_psnr_db": round(value, 2)}


# ----------------------------------------------------------------------------------------------


def main() -> dict:
    from nodes.sd.memory import tune_cpu_allocator

    torch.manual_seed(0)
    # The app tunes glibc's malloc on its first model load; both sides here run under it.
    print(f"malloc tuned as in the app: {tune_cpu_allocator()}", flush=True)
    figures: dict[str, float] = {}
    try:
        from bench._unet_bench import bench_unet
    except ImportError as exc:
        print(f"bench/_unet_bench.py unavailable: {exc}", flush=True)
    else:
        figures.update(bench_unet())
    try:
        from bench._text_bench import bench_text
    except ImportError as exc:
        print(f"bench/_text_bench.py unavailable: {exc}", flush=True)
    else:
        text = bench_text()
        print(f"text encoder: {text}", flush=True)
        figures["text_ratio"] = text["text_ratio"]
    figures.update(bench_vae_decode())
    path = ensure_bench_checkpoint()
    figures.update(bench_load(path))
    figures.update(bench_bf16_psnr(path))
    keys = ["unet_ratio", "vae_decode_ratio", "text_ratio", "unet_fraction_of_matmul_peak", "load_time_ratio",
            "load_peak_rss_over_file", "unet_bf16_speedup", "bf16_psnr_db"]
    summary = {k: figures.get(k) for k in keys}
    summary.update({k: v for k, v in figures.items() if k not in summary})
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--load-child":
        load_child(sys.argv[2], sys.argv[3])
    else:
        main()
