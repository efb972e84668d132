"""Training machinery of ``tools/train_demo.py``: reproducible batches, the resumable loop, precision.

Nothing here knows the demo model; ``train_demo.py`` has the stages.
"""
from __future__ import annotations

import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

import demo_data  # noqa: E402
from nodes.sd.memory import cpu_bf16_units  # noqa: E402

# A stage's loss: (step, use bf16 autocast) → (loss to minimise, figures for the progress bar).
LossFn = Callable[[int, bool], tuple[torch.Tensor, dict[str, float]]]


def step_rng(seed: int, stage: int, step: int) -> tuple[random.Random, torch.Generator]:
    """The generators of one training step: the same batch whatever run or resume computes it."""
    key = (seed * 1_000_003 + stage) * 10_000_019 + step
    return random.Random(key), torch.Generator().manual_seed(key % (2**63))


def images_to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    """uint8 ``[H, W, 3]`` arrays → float ``[B, 3, H, W]`` in -1..1 (the VAE's input range)."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def render_batch(rng: random.Random, n: int, size: int = 64, combos: list | None = None
                 ) -> tuple[list[demo_data.Scene], torch.Tensor]:
    combos = demo_data.training_combinations() if combos is None else combos
    scenes = [demo_data.random_scene(rng, combos) for _ in range(n)]
    return scenes, images_to_tensor([demo_data.render(s, size) for s in scenes])


def lr_at(step: int, total: int, peak: float, warmup: int = 100) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    warmup = min(warmup, max(1, total // 8))  # short (smoke) stages warm up over an eighth
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def save_atomic(obj, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_safetensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """A shipped model file, written whole or not at all (a temporary name, then a rename), with the
    mode any new file gets (safetensors alone leaves it private: 0600)."""
    from nodegraph.fileio import usual_mode
    from nodes.sd.saving import write_safetensors

    tmp = path.with_name(path.name + ".tmp")
    write_safetensors(tmp, tensors, metadata)
    os.chmod(tmp, usual_mode())
    os.replace(tmp, path)


def make_optimizer(params, lr: float, weight_decay: float = 0.0) -> torch.optim.AdamW:
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=(0.9, 0.99))
    for group in opt.param_groups:
        group["initial_lr"] = lr
    return opt


def autocast(bf16: bool):
    """bf16 autocast on the CPU when ``bf16``; weights, gradients and optimiser state stay float32."""
    return torch.autocast("cpu", torch.bfloat16, enabled=bf16)


def choose_bf16(name: str, loss_fn: LossFn, params: list[nn.Parameter], precision: str) -> bool:
    """Whether the stage trains under bf16 autocast. ``precision`` "bf16"/"fp32" decides; "auto"
    times one training step (forward and backward, no update) each way, twice, and takes bf16 when it
    is at least 10% faster. Needed because the answer differs by CPU and model: on an AVX512-BF16
    CPU without AMX bf16 halves the U-Net's step time but doubles the VAE's (its convolutions);
    with AMX both are faster in bf16."""
    if precision != "auto":
        return precision == "bf16"
    if not cpu_bf16_units():
        print(f"{name}: float32 (the CPU has no bf16 units)", flush=True)
        return False
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(2):
        for bf16 in (False, True):
            start = time.perf_counter()
            loss, _ = loss_fn(0, bf16)
            loss.backward()
            times[bf16].append(time.perf_counter() - start)
            for p in params:
                p.grad = None
    fp32, bf16 = min(times[False]), min(times[True])
    use = bf16 < 0.9 * fp32
    print(f"{name}: {'bf16 autocast' if use else 'float32'} (one step: float32 {fp32:.2f} s, bf16 {bf16:.2f} s)",
          flush=True)
    return use


def train_loop(name: str, path: Path, steps: int, modules: dict[str, nn.Module], optimizer: torch.optim.Optimizer,
               loss_fn: LossFn, params: list[nn.Parameter], *, precision: str = "auto", clip: float | None = 1.0,
               after_step: Callable[[int], None] | None = None, extra: dict | None = None,
               save_every: float = 60.0) -> float:
    """Minimise ``loss_fn`` for the steps not yet done, saving state to ``path`` every ``save_every``
    seconds and at the end (resumable); returns the seconds spent on this stage over all runs."""
    start, spent = 0, 0.0
    if path.exists():
        state = torch.load(path, weights_only=False)
        for key, module in modules.items():
            module.load_state_dict(state["modules"][key])
        optimizer.load_state_dict(state["optimizer"])
        if extra is not None:
            extra.update(state.get("extra", {}))
        start, spent = state["step"], state["seconds"]
        print(f"{name}: resuming at step {start}/{steps}", flush=True)

    def save(step: int, seconds: float) -> None:
        save_atomic({"modules": {k: m.state_dict() for k, m in modules.items()}, "optimizer": optimizer.state_dict(),
                     "extra": extra or {}, "step": step, "seconds": seconds}, path)

    last_save = t0 = time.perf_counter()
    bf16 = choose_bf16(name, loss_fn, params, precision) if start < steps else False
    bar = tqdm(range(start, steps), desc=name, initial=start, total=steps, dynamic_ncols=True, mininterval=2.0)
    smoothed: dict[str, float] = {}
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, steps, group["initial_lr"])
        loss, figures = loss_fn(step, bf16)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(params, clip)
        optimizer.step()
        if after_step is not None:
            after_step(step)
        smoothed = {k: v if k not in smoothed else 0.98 * smoothed[k] + 0.02 * v for k, v in figures.items()}
        bar.set_postfix({k: f"{v:.4g}" for k, v in smoothed.items()}, refresh=False)
        now = time.perf_counter()
        if now - last_save > save_every:
            save(step + 1, spent + now - t0)
            last_save = now
    spent += time.perf_counter() - t0
    save(steps, spent)
    print(f"{name}: {steps} steps, {spent / 60:.1f} min of training; last losses "
          + ", ".join(f"{k} {v:.4g}" for k, v in smoothed.items()), flush=True)
    return spent
