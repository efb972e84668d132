"""Train NodeGraph's demo model from nothing: a tiny SD1-layout text-to-image checkpoint and a 2× upscaler.

    python tools/train_demo.py                       # everything, ≈ 1 hour on a 2-core CPU
    python tools/train_demo.py --scale 0.05 --work-dir /tmp/quick --out-dir /tmp/quick/out   # a smoke run

Writes ``demo-shapes.safetensors`` (checkpoints) and ``demo-shapes-2x.safetensors`` (upscale_models)
under ``--out-dir`` (default: the package's ``nodes/models``). The world it learns is
``tools/demo_data.py``: one coloured shape on a background of another colour, 64×64.

Stages, each resumable (training state is saved to ``--work-dir`` every minute and at the end of a
stage; re-running the command continues where it stopped; ``--fresh`` starts over):

1. **VAE** — an AutoencoderKL (8× down-sampling, 4 latent channels) trained on rendered images with
   an L1 + L2 reconstruction loss and a small KL term. Afterwards each latent channel's mean and
   spread over a reference set is folded into ``quant_conv``/``post_quant_conv``, so that raw
   latents × 0.18215 (SD1's scale factor) have zero mean and unit variance per channel.
2. **Latents** — the VAE encodes a fixed set of training images once (the distribution's mean).
3. **U-Net + text encoder** — an LDM U-Net with cross-attention over a narrow CLIP text encoder
   (real CLIP tokenizer, 77 tokens), trained together from scratch as in latent diffusion: pick a
   timestep t of SD's discrete schedule, noise the latent to √ᾱ_t·x₀ + √(1−ᾱ_t)·ε, predict ε (MSE).
   Captions are dropped (replaced by the empty prompt) 10% of the time so that classifier-free
   guidance works. An exponential moving average of the weights is what ships.
4. **Decoder** — the VAE decoder alone trains further on images of every colour pair (the encoder,
   and so the U-Net's latent space, stay as they are); see ``finetune_decoder``.
5. **Upscaler** — an SRVGGNetCompact (spandrel's "Compact") learning 64→128 from pairs whose input
   is the 64×64 image after a VAE round trip (half of them) or the plain 64×64 render.

The held-out (shape colour, background colour) pairs of ``demo_data`` never reach the text encoder
or the U-Net, as captions or as latents; only the caption-free decoder fine-tuning draws them.
Seeds are fixed and every step draws its batch from a generator seeded by (stage, step), so a
resumed run sees the same data as an uninterrupted one. Uses every CPU core torch sees; the U-Net
and VAE train under bf16 autocast (fast on CPUs with AMX), weights and optimiser stay float32.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

import demo_data  # noqa: E402
from nodes.sd import text_encoders, unet as unet_module, vae as vae_module  # noqa: E402
from nodes.sd.model_sampling import ModelSamplingDiscrete  # noqa: E402
from nodes.sd.tokenizer import END_TOKEN, get_tokenizer  # noqa: E402

SD1_SCALE = 0.18215
CHECKPOINT_NAME = "demo-shapes.safetensors"
UPSCALER_NAME = "demo-shapes-2x.safetensors"

# ------------------------------------------------------------------------------------------ configs

VAE_CONFIG = vae_module.VAEConfig(ch=32, ch_mult=(1, 1, 2, 2), num_res_blocks=1)
TEXT_CONFIG = text_encoders.TextEncoderConfig("clip", width=64, layers=2, heads=1, mlp_width=256)
UNET_CONFIG = unet_module.UNetConfig(
    model_channels=64, channel_mult=(1, 2), num_res_blocks=1, transformer_depth=(0, 1),
    transformer_depth_middle=1, context_dim=TEXT_CONFIG.width, use_linear_in_transformer=False, num_heads=8,
)
UPSCALER_FEATURES, UPSCALER_CONVS = 32, 6


@dataclass
class Plan:
    """Steps and sizes of each stage; ``--scale`` multiplies the step counts and the latent set."""

    seed: int = 2024
    vae_steps: int = 1200
    vae_batch: int = 8
    vae_lr: float = 2e-3
    vae_kl: float = 1e-5
    vae_small: float = 0.7
    decoder_steps: int = 800
    decoder_batch: int = 8
    decoder_lr: float = 5e-4
    latents: int = 16384
    unet_steps: int = 2400
    unet_batch: int = 128
    unet_lr: float = 1e-3
    caption_dropout: float = 0.1
    ema: float = 0.998
    up_steps: int = 1000
    up_batch: int = 16
    up_lr: float = 1e-3
    up_pool: int = 1024

    def scaled(self, factor: float) -> "Plan":
        p = Plan(**asdict(self))
        for name in ("vae_steps", "decoder_steps", "unet_steps", "up_steps", "latents", "up_pool"):
            setattr(p, name, max(8, int(getattr(p, name) * factor)))
        return p


# ------------------------------------------------------------------------------------------ helpers


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
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def save_atomic(obj, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def train_loop(name: str, path: Path, steps: int, modules: dict[str, nn.Module], optimizer: torch.optim.Optimizer,
               step_fn: Callable[[int], dict[str, float]], extra: dict | None = None, save_every: float = 60.0) -> float:
    """Run ``step_fn(step)`` for steps not yet done, saving state to ``path`` (resumable); returns seconds spent."""
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
    bar = tqdm(range(start, steps), desc=name, initial=start, total=steps, dynamic_ncols=True, mininterval=2.0)
    smoothed: dict[str, float] = {}
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, steps, group["initial_lr"])
        figures = step_fn(step)
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


def make_optimizer(params, lr: float, weight_decay: float = 0.0) -> torch.optim.AdamW:
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=(0.9, 0.99))
    for group in opt.param_groups:
        group["initial_lr"] = lr
    return opt


# ------------------------------------------------------------------------------------------ stage 1: VAE


def kl_loss(moments: torch.Tensor) -> torch.Tensor:
    mean, logvar = moments.float().chunk(2, dim=1)
    logvar = logvar.clamp(-30.0, 20.0)
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()


def train_vae(plan: Plan, work: Path) -> tuple[vae_module.AutoencoderKL, float]:
    """Reconstruction (L1 + L2) of sampled latents plus a small KL term. The first ``vae_small``
    share of the steps trains on 32×32 renders (4× cheaper; the network is convolutional), the rest
    on 64×64. The posterior starts nearly deterministic (σ ≈ 0.05) so that the decoder sees the
    encoder's signal from the first step."""
    torch.manual_seed(plan.seed)
    model = vae_module.AutoencoderKL(VAE_CONFIG)
    n = VAE_CONFIG.embed_dim
    with torch.no_grad():
        model.quant_conv.weight[n:].zero_()
        model.quant_conv.bias[n:].fill_(-6.0)
    opt = make_optimizer(model.parameters(), plan.vae_lr)
    small_steps = int(plan.vae_steps * plan.vae_small)

    def step(i: int) -> dict[str, float]:
        rng, gen = step_rng(plan.seed, 1, i)
        small = i < small_steps
        _, x = render_batch(rng, plan.vae_batch * 4 if small else plan.vae_batch, 32 if small else 64)
        with torch.autocast("cpu", torch.bfloat16):
            moments = model.moments(x)
            z = vae_module.moments_to_latent(moments.float(), generator=gen, sample=True)
            out = model.decode(z).float()
        rec = (out - x).abs().mean() + (out - x).pow(2).mean()
        kl = kl_loss(moments)
        loss = rec + plan.vae_kl * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return {"rec": rec.item(), "kl": kl.item()}

    seconds = train_loop("vae", work / "vae_state.pt", plan.vae_steps, {"vae": model}, opt, step)
    model.eval().requires_grad_(False)
    return model, seconds


@torch.no_grad()
def normalise_latents(model: vae_module.AutoencoderKL, plan: Plan) -> dict[str, list[float]]:
    """Fold per-channel affine maps into quant_conv / post_quant_conv so that latent means × 0.18215
    have zero mean and unit variance per channel over 1024 reference images. The decoder's
    output for the same image is unchanged."""
    _, x = render_batch(random.Random(plan.seed + 7), 1024)
    mean = torch.cat([model.encode(chunk) for chunk in x.split(128)])
    mu = mean.mean(dim=(0, 2, 3)).double()
    sd = mean.std(dim=(0, 2, 3)).double()
    a = 1.0 / (SD1_SCALE * sd)  # new = a·(old − mu)
    c = -a * mu
    n = model.config.embed_dim
    q_w, q_b = model.quant_conv.weight.double(), model.quant_conv.bias.double()
    q_w[:n] *= a[:, None, None, None]
    q_b[:n] = a * q_b[:n] + c
    q_b[n:] += 2.0 * torch.log(a)  # log-variance follows the scale
    model.quant_conv.weight.copy_(q_w)
    model.quant_conv.bias.copy_(q_b)
    p_w, p_b = model.post_quant_conv.weight.double(), model.post_quant_conv.bias.double()
    p_w = p_w / a[None, :, None, None]
    p_b = p_b - (p_w[:, :, 0, 0] * c[None, :]).sum(dim=1)
    model.post_quant_conv.weight.copy_(p_w)
    model.post_quant_conv.bias.copy_(p_b)
    return {"channel_mean_before": mu.tolist(), "channel_std_before": sd.tolist()}


def finetune_decoder(plan: Plan, work: Path, model: vae_module.AutoencoderKL) -> float:
    """More reconstruction training for the decoder side only (``post_quant_conv`` and ``decoder``),
    at 64×64, on the encoder's latent means, with images of *every* colour pair.

    The encoder stays frozen, so the latents the U-Net learnt on keep their meaning. The decoder is
    a caption-free image codec: trained on the held-out pairs' images too, it can draw whatever
    combination the U-Net composes. (Trained on the training pairs only, it renders an unseen pair
    such as blue on black with drifting hues: 68% of held-out round trips analysed right vs 98%
    for seen pairs.) The text encoder and U-Net never see a held-out pair, image or caption."""
    decoder_params = list(model.post_quant_conv.parameters()) + list(model.decoder.parameters())
    model.requires_grad_(False)
    for p in decoder_params:
        p.requires_grad_(True)
    model.decoder.train()
    opt = make_optimizer(decoder_params, plan.decoder_lr)

    def step(i: int) -> dict[str, float]:
        rng, gen = step_rng(plan.seed, 5, i)
        _, x = render_batch(rng, plan.decoder_batch, combos=demo_data.all_combinations())
        with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
            z = model.encode(x).float()
        with torch.autocast("cpu", torch.bfloat16):
            out = model.decode(z).float()
        rec = (out - x).abs().mean() + (out - x).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        rec.backward()
        torch.nn.utils.clip_grad_norm_(decoder_params, 1.0)
        opt.step()
        return {"rec": rec.item()}

    seconds = train_loop("decoder", work / "decoder_state.pt", plan.decoder_steps, {"vae": model}, opt, step)
    model.eval().requires_grad_(False)
    return seconds


# ------------------------------------------------------------------------------------------ stage 2: latents


def caption_table() -> tuple[list[tuple[str, str, str]], torch.Tensor, torch.Tensor]:
    """Training combinations, token ids ``[combos, phrasings, 77]`` and the empty prompt's ids ``[77]``."""
    tokenizer = get_tokenizer()

    def ids(text: str) -> list[int]:
        windows = tokenizer.tokenize_weighted(text, END_TOKEN)
        return [t for t, _ in windows[0]]

    combos = demo_data.training_combinations()
    table = torch.tensor([[ids(demo_data.caption(*c, phrasing=p)) for p in range(len(demo_data.PHRASINGS))]
                          for c in combos])
    return combos, table, torch.tensor(ids(""))


@torch.no_grad()
def encode_latents(plan: Plan, model: vae_module.AutoencoderKL) -> dict[str, torch.Tensor]:
    """``plan.latents`` training images as scaled latents (× 0.18215) with their combination index."""
    combos = demo_data.training_combinations()
    index = {c: i for i, c in enumerate(combos)}
    rng = random.Random(plan.seed + 2)
    latents, labels = [], []
    for _ in tqdm(range(0, plan.latents, 256), desc="latents", dynamic_ncols=True, mininterval=2.0):
        scenes, x = render_batch(rng, 256)
        with torch.autocast("cpu", torch.bfloat16):
            latents.append((model.encode(x).float() * SD1_SCALE).half())
        labels += [index[(s.colour, s.shape, s.background)] for s in scenes]
    return {"latents": torch.cat(latents)[: plan.latents], "labels": torch.tensor(labels[: plan.latents])}


# ------------------------------------------------------------------------------------------ stage 3: U-Net


def init_unet(seed: int) -> unet_module.UNetModel:
    """Default init with LDM's zero-initialised output layers (each block starts as an identity)."""
    torch.manual_seed(seed)
    model = unet_module.UNetModel(UNET_CONFIG)
    for module in model.modules():
        if isinstance(module, unet_module.ResBlock):
            nn.init.zeros_(module.out_layers[3].weight)
            nn.init.zeros_(module.out_layers[3].bias)
        if isinstance(module, unet_module.SpatialTransformer):
            nn.init.zeros_(module.proj_out.weight)
            nn.init.zeros_(module.proj_out.bias)
    nn.init.zeros_(model.out[2].weight)
    nn.init.zeros_(model.out[2].bias)
    return model


def init_text_encoder(seed: int) -> text_encoders.ClipTextModel:
    model = text_encoders.ClipTextModel(TEXT_CONFIG)
    model.load_state_dict(text_encoders.random_state_dict(TEXT_CONFIG, seed=seed))
    for layer in model.encoder.layers:  # start from plain LayerNorms
        for norm in (layer.layer_norm1, layer.layer_norm2):
            nn.init.ones_(norm.weight)
            nn.init.zeros_(norm.bias)
    nn.init.ones_(model.final_layer_norm.weight)
    nn.init.zeros_(model.final_layer_norm.bias)
    return model


def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters()):
            e.lerp_(p, 1.0 - decay)


def train_unet(plan: Plan, work: Path, data: dict[str, torch.Tensor]
               ) -> tuple[unet_module.UNetModel, text_encoders.ClipTextModel, float]:
    unet = init_unet(plan.seed)
    text = init_text_encoder(plan.seed + 1)
    ema_unet, ema_text = init_unet(plan.seed), init_text_encoder(plan.seed + 1)
    ema_unet.load_state_dict(unet.state_dict())
    ema_text.load_state_dict(text.state_dict())
    _, table, empty = caption_table()
    latents, labels = data["latents"].float(), data["labels"]
    alphas = ModelSamplingDiscrete().alphas_cumprod
    decay_params = [p for n, p in unet.named_parameters() if p.ndim > 1]
    other = [p for n, p in unet.named_parameters() if p.ndim <= 1] + list(text.parameters())
    opt = torch.optim.AdamW([{"params": decay_params, "weight_decay": 0.01}, {"params": other, "weight_decay": 0.0}],
                            lr=plan.unet_lr, betas=(0.9, 0.99))
    for group in opt.param_groups:
        group["initial_lr"] = plan.unet_lr
    params = list(unet.parameters()) + list(text.parameters())

    def step(i: int) -> dict[str, float]:
        rng, gen = step_rng(plan.seed, 3, i)
        idx = torch.randint(0, len(latents), (plan.unet_batch,), generator=gen)
        x0 = latents[idx]
        phrasing = torch.randint(0, table.shape[1], (plan.unet_batch,), generator=gen)
        tokens = table[labels[idx], phrasing]
        drop = torch.rand(plan.unet_batch, generator=gen) < plan.caption_dropout
        tokens[drop] = empty
        t = torch.randint(0, len(alphas), (plan.unet_batch,), generator=gen)
        eps = torch.randn(x0.shape, generator=gen)
        a = alphas[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
        with torch.autocast("cpu", torch.bfloat16):
            context, _ = text(tokens)
            pred = unet(xt, t, context.float())
        loss = F.mse_loss(pred.float(), eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        decay = min(plan.ema, (1 + i) / (10 + i))
        ema_update(ema_unet, unet, decay)
        ema_update(ema_text, text, decay)
        return {"loss": loss.item()}

    modules = {"unet": unet, "text": text, "ema_unet": ema_unet, "ema_text": ema_text}
    seconds = train_loop("unet", work / "unet_state.pt", plan.unet_steps, modules, opt, step)
    return ema_unet.eval().requires_grad_(False), ema_text.eval().requires_grad_(False), seconds


# ------------------------------------------------------------------------------------------ stage 4: upscaler


class Compact(nn.Module):
    """SRVGGNetCompact (Real-ESRGAN's compact net) with the key layout spandrel recognises: ``body.N``
    = conv, PReLU, (conv, PReLU)×convs, conv to 3·scale² channels; pixel shuffle; plus the
    nearest-neighbour enlarged input."""

    def __init__(self, features: int, convs: int, scale: int = 2):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, features, 3, padding=1), nn.PReLU(features)]
        for _ in range(convs):
            layers += [nn.Conv2d(features, features, 3, padding=1), nn.PReLU(features)]
        layers.append(nn.Conv2d(features, 3 * scale * scale, 3, padding=1))
        self.body = nn.ModuleList(layers)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for layer in self.body:
            h = layer(h)
        return F.pixel_shuffle(h, self.scale) + F.interpolate(x, scale_factor=self.scale, mode="nearest")


@torch.no_grad()
def upscaler_pool(plan: Plan, vae: vae_module.AutoencoderKL) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(clean 64² inputs, VAE-round-trip 64² inputs, 128² targets), all in 0..1."""
    rng = random.Random(plan.seed + 4)
    combos = demo_data.training_combinations()
    clean, trip, target = [], [], []
    for _ in tqdm(range(0, plan.up_pool, 128), desc="upscaler data", dynamic_ncols=True, mininterval=2.0):
        scenes = [demo_data.random_scene(rng, combos) for _ in range(128)]
        big = [demo_data.render(s, 128) for s in scenes]
        small = images_to_tensor([demo_data.render(s, 64) for s in scenes])
        with torch.autocast("cpu", torch.bfloat16):
            rt = vae.decode(vae.encode(small)).float()
        clean.append((small + 1) / 2)
        trip.append(((rt + 1) / 2).clamp(0, 1))
        target.append((images_to_tensor(big) + 1) / 2)
    return torch.cat(clean), torch.cat(trip), torch.cat(target)


def stage_done(path: Path, steps: int) -> bool:
    return path.exists() and torch.load(path, weights_only=False)["step"] >= steps


def train_upscaler(plan: Plan, work: Path, vae: vae_module.AutoencoderKL) -> tuple[Compact, float]:
    state = work / "upscaler_state.pt"
    if stage_done(state, plan.up_steps):  # resuming a finished stage: no need for its data
        clean = trip = target = torch.zeros(1, 3, 64, 64)
    else:
        clean, trip, target = upscaler_pool(plan, vae)
    torch.manual_seed(plan.seed + 5)
    model = Compact(UPSCALER_FEATURES, UPSCALER_CONVS)
    opt = make_optimizer(model.parameters(), plan.up_lr)
    crop = 32

    def step(i: int) -> dict[str, float]:
        _, gen = step_rng(plan.seed, 4, i)
        idx = torch.randint(0, len(clean), (plan.up_batch,), generator=gen)
        use_trip = (torch.rand(plan.up_batch, generator=gen) < 0.5).view(-1, 1, 1, 1)
        x = torch.where(use_trip, trip[idx], clean[idx])
        y0, x0 = (int(v) for v in torch.randint(0, 64 - crop + 1, (2,), generator=gen))
        x = x[:, :, y0:y0 + crop, x0:x0 + crop]
        y = target[idx][:, :, 2 * y0:2 * (y0 + crop), 2 * x0:2 * (x0 + crop)]
        loss = (model(x) - y).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"l1": loss.item()}

    seconds = train_loop("upscaler", state, plan.up_steps, {"up": model}, opt, step)
    return model.eval().requires_grad_(False), seconds


# ------------------------------------------------------------------------------------------ export


def checkpoint_tensors(unet: nn.Module, vae: nn.Module, text: nn.Module) -> dict[str, torch.Tensor]:
    """The SD1 single-file layout, float16."""
    out: dict[str, torch.Tensor] = {}
    for prefix, module in (("model.diffusion_model.", unet), ("first_stage_model.", vae),
                           ("cond_stage_model.transformer.text_model.", text)):
        for key, value in module.state_dict().items():
            out[prefix + key] = value.detach().to(torch.float16).contiguous()
    return out


def export(out_dir: Path, unet, vae, text, upscaler, info: dict) -> tuple[Path, Path]:
    from safetensors.torch import save_file

    (out_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    (out_dir / "upscale_models").mkdir(parents=True, exist_ok=True)
    ckpt = out_dir / "checkpoints" / CHECKPOINT_NAME
    meta = {
        "modelspec.title": "NodeGraph demo: shapes",
        "modelspec.architecture": "stable-diffusion-v1",
        "modelspec.prediction_type": "epsilon",
        "modelspec.resolution": "64x64",
        "modelspec.license": "MIT (same as NodeGraph)",
        "modelspec.description": "A tiny SD1-layout model trained by tools/train_demo.py on one coloured "
                                 "shape on a coloured background, e.g. 'a red circle on a blue background'.",
        "nodegraph.training": json.dumps(info, sort_keys=True),
    }
    save_file(checkpoint_tensors(unet, vae, text), str(ckpt), metadata=meta)
    up = out_dir / "upscale_models" / UPSCALER_NAME
    save_file({k: v.detach().half().contiguous() for k, v in upscaler.state_dict().items()}, str(up),
              metadata={"modelspec.title": "NodeGraph demo: shapes 2x (SRVGGNetCompact)",
                        "modelspec.license": "MIT (same as NodeGraph)"})
    return ckpt, up


# ------------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, default=Path.home() / ".cache" / "nodegraph-train",
                        help="training state and caches (resumable; default ~/.cache/nodegraph-train)")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "nodes" / "models",
                        help="models root to write checkpoints/ and upscale_models/ into (default: nodes/models)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply step counts (e.g. 0.05 for a smoke run)")
    parser.add_argument("--fresh", action="store_true", help="delete the work dir's state first")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    plan = Plan().scaled(args.scale) if args.scale != 1.0 else Plan()
    work = args.work_dir
    if args.fresh and work.exists():
        for f in work.glob("*.pt"):
            f.unlink()
    work.mkdir(parents=True, exist_ok=True)
    plan_file = work / "plan.json"
    if not args.fresh and plan_file.exists() and json.loads(plan_file.read_text()) != asdict(plan):
        parser.error(f"{work} holds state of a run with another plan ({plan_file}); use --fresh or another --work-dir")
    plan_file.write_text(json.dumps(asdict(plan), indent=1))
    print(f"plan: {asdict(plan)}; torch threads {torch.get_num_threads()}; work dir {work}", flush=True)
    times: dict[str, float] = {}
    wall0 = time.perf_counter()
    # The fused CPU attention kernels are slow to differentiate at these tiny head widths; the
    # reference (math) kernel computes the same thing with plain matmuls.
    with sdpa_kernel(SDPBackend.MATH):
        return _run(args, plan, work, times, wall0)


def _run(args, plan: Plan, work: Path, times: dict[str, float], wall0: float) -> int:

    vae_file = work / "vae_final.pt"
    if vae_file.exists():
        saved = torch.load(vae_file, weights_only=False)
        vae = vae_module.AutoencoderKL(VAE_CONFIG)
        vae.load_state_dict(saved["vae"])
        vae.eval().requires_grad_(False)
        stats, times["vae"] = saved["stats"], saved["seconds"]
    else:
        vae, times["vae"] = train_vae(plan, work)
        stats = normalise_latents(vae, plan)
        save_atomic({"vae": vae.state_dict(), "stats": stats, "seconds": times["vae"]}, vae_file)

    latent_file = work / "latents.pt"
    if latent_file.exists():
        data = torch.load(latent_file)
    else:
        t0 = time.perf_counter()
        data = encode_latents(plan, vae)
        data["seconds"] = torch.tensor(time.perf_counter() - t0)
        save_atomic(data, latent_file)
    times["latents"] = float(data["seconds"])
    print(f"latents: {tuple(data['latents'].shape)}, mean {data['latents'].float().mean():.3f}, "
          f"std {data['latents'].float().std():.3f}", flush=True)

    unet, text, times["unet"] = train_unet(plan, work, data)
    times["decoder"] = finetune_decoder(plan, work, vae)
    upscaler, times["upscaler"] = train_upscaler(plan, work, vae)

    info = {"plan": asdict(plan), "minutes": {k: round(v / 60, 2) for k, v in times.items()},
            "vae_latent_stats": stats, "unet": asdict(UNET_CONFIG), "text": asdict(TEXT_CONFIG),
            "vae": asdict(VAE_CONFIG), "upscaler": {"num_feat": UPSCALER_FEATURES, "num_conv": UPSCALER_CONVS},
            "held_out": demo_data.held_out_pairs()}
    ckpt, up = export(args.out_dir, unet, vae, text, upscaler, info)
    print(f"wrote {ckpt} ({ckpt.stat().st_size / 1e6:.2f} MB) and {up} ({up.stat().st_size / 1e6:.2f} MB)")
    print("training minutes per stage (this run's share is in the state files): "
          + json.dumps(info["minutes"]) + f"; this invocation's wall time {(time.perf_counter() - wall0) / 60:.1f} min",
          flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
