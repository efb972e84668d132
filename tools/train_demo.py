"""Train NodeGraph's demo model from nothing: a tiny SD1-layout text-to-image checkpoint and a 2× upscaler.

    python tools/train_demo.py --fresh --threads 1 --parallel   # the shipped run: see nodes/models/README.md
    python tools/train_demo.py --smoke                           # a smoke run: under a minute, nothing shipped

Writes ``demo-shapes.safetensors`` (checkpoints) and ``demo-shapes-2x.safetensors`` (upscale_models)
under ``--out-dir`` (default: the package's ``nodes/models``; with ``--smoke``: ``<work dir>/models``).
The world it learns is ``tools/demo_data.py``: one coloured shape on a background of another colour, 64×64.

How long: the shipped run took 113 minutes of wall time on the shared 2-core development machine
(``--threads 1 --parallel``, under a varying load from other work); ``nodes/models/README.md`` has
the run and its stage times. On such a machine ``--threads 1`` is the faster choice: two threads
per process stall on each other when more processes run than there are cores (measured: a VAE
training step 5.2 s with two threads vs 0.9 s with one). ``--parallel`` runs stages 4–5 in a second
process beside stage 3, so both cores work.

``--smoke`` trains every stage for a few steps on a few images (``SMOKE``), from scratch, and writes
to ``<work dir>/models``: about 14 s of CPU time with Python's and torch's start (measured: 42 s of
wall time at ``nice -n 10`` on the 2-core development machine while six other processes kept both
cores busy). The files it writes have the shipped layout and sizes, load with NodeGraph's loaders
and run the demo graph, but draw nothing meaningful. The test suite runs it
(``tests/demo/test_train_smoke.py``). ``--scale`` multiplies the step counts and image sets but keeps
the batch sizes: it is for trying a change at a smaller size, not a smoke test (before ``--smoke``
existed, ``--scale 0.01`` took over 300 s).

Stages, each resumable (training state is saved to ``--work-dir`` every minute and at the end of a
stage; re-running the command continues where it stopped; ``--fresh`` starts over):

1. **VAE** — an AutoencoderKL (8× down-sampling, 4 latent channels, 64 channels at full resolution)
   trained on rendered images with an L1 + L2 reconstruction loss and a small KL term. Afterwards
   each latent channel's mean and spread over a reference set is folded into ``quant_conv`` /
   ``post_quant_conv``, so that raw latents × 0.18215 (SD1's scale factor) have zero mean and unit
   variance per channel.
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

The VAE's width: SD's layout fixes its group norms at 32 groups. At 32 channels every group norm is
a per-channel instance norm, which removes each channel's spatial mean: a flat background's colour
cannot pass through it, and a VAE of that width learnt to carry colour in a pattern at the image's
border — strongest at the bottom right, where LDM's down-sampling pads — and drew it back as a mark
there (nodes/models/README.md has the measurements). At 64 channels (two per group) colour passes.

The held-out (shape colour, background colour) pairs of ``demo_data`` never reach the text encoder
or the U-Net, as captions or as latents; only the caption-free decoder fine-tuning draws them.
Seeds are fixed and every step draws its batch from a generator seeded by (stage, step), so a
resumed run sees the same data as an uninterrupted one. ``--precision auto`` (default) times a
step of each stage in float32 and under bf16 autocast and trains in the faster one; weights and
optimiser state stay float32.
"""
from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from tqdm import tqdm

from demo_training import (ROOT, autocast, demo_data, images_to_tensor, make_optimizer, render_batch,
                           save_atomic, save_safetensors, step_rng, train_loop)
from nodes.sd import text_encoders, unet as unet_module, vae as vae_module
from nodes.sd.model_sampling import ModelSamplingDiscrete
from nodes.sd.tokenizer import END_TOKEN, get_tokenizer

SD1_SCALE = 0.18215
CHECKPOINT_NAME = "demo-shapes.safetensors"
UPSCALER_NAME = "demo-shapes-2x.safetensors"

# ------------------------------------------------------------------------------------------ configs

TEXT_CONFIG = text_encoders.TextEncoderConfig("clip", width=64, layers=2, heads=1, mlp_width=256)
UNET_CONFIG = unet_module.UNetConfig(
    model_channels=64, channel_mult=(1, 2), num_res_blocks=1, transformer_depth=(0, 1),
    transformer_depth_middle=1, context_dim=TEXT_CONFIG.width, use_linear_in_transformer=False, num_heads=8,
)
UPSCALER_FEATURES, UPSCALER_CONVS = 32, 6


@dataclass
class Plan:
    """Steps and sizes of each stage; ``--scale`` multiplies the step counts and the image sets."""

    seed: int = 2024
    vae_ch: int = 64
    vae_steps: int = 1200
    vae_batch: int = 8
    vae_lr: float = 2e-3
    vae_kl: float = 1e-5
    vae_small: float = 0.7
    norm_images: int = 1024
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
        for name in ("vae_steps", "decoder_steps", "unet_steps", "up_steps", "latents", "up_pool", "norm_images"):
            setattr(p, name, max(8, int(getattr(p, name) * factor)))
        return p


# Every stage for a few steps on a few small batches: checks the whole pipeline, draws nothing.
SMOKE = replace(Plan(), vae_steps=6, vae_batch=2, norm_images=32, decoder_steps=3, decoder_batch=2, latents=64,
                unet_steps=6, unet_batch=16, up_steps=6, up_batch=4, up_pool=16)


VAE_MULT = (1, 1, 1, 1)  # every level plan.vae_ch wide: two channels per group norm group everywhere


def vae_config(plan: Plan) -> vae_module.VAEConfig:
    return vae_module.VAEConfig(ch=plan.vae_ch, ch_mult=VAE_MULT, num_res_blocks=1)


def reconstruction(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return (out - x).abs().mean() + (out - x).pow(2).mean()


# ------------------------------------------------------------------------------------------ stage 1: VAE


def kl_loss(moments: torch.Tensor) -> torch.Tensor:
    mean, logvar = moments.float().chunk(2, dim=1)
    logvar = logvar.clamp(-30.0, 20.0)
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()


def train_vae(plan: Plan, work: Path, precision: str) -> tuple[vae_module.AutoencoderKL, float]:
    """Reconstruction (L1 + L2) of sampled latents plus a small KL term. The first ``vae_small``
    share of the steps trains on 32×32 renders (4× cheaper; the network is convolutional), the rest
    on 64×64. The posterior starts nearly deterministic (σ ≈ 0.05) so that the decoder sees the
    encoder's signal from the first step."""
    torch.manual_seed(plan.seed)
    config = vae_config(plan)
    model = vae_module.AutoencoderKL(config)
    n = config.embed_dim
    with torch.no_grad():
        model.quant_conv.weight[n:].zero_()
        model.quant_conv.bias[n:].fill_(-6.0)
    params = list(model.parameters())
    opt = make_optimizer(params, plan.vae_lr)
    small_steps = int(plan.vae_steps * plan.vae_small)

    def loss_fn(i: int, bf16: bool) -> tuple[torch.Tensor, dict[str, float]]:
        rng, gen = step_rng(plan.seed, 1, i)
        small = i < small_steps
        _, x = render_batch(rng, plan.vae_batch * 4 if small else plan.vae_batch, 32 if small else 64)
        with autocast(bf16):
            moments = model.moments(x)
            z = vae_module.moments_to_latent(moments.float(), generator=gen, sample=True)
            out = model.decode(z).float()
        rec, kl = reconstruction(out, x), kl_loss(moments)
        return rec + plan.vae_kl * kl, {"rec": rec.item(), "kl": kl.item()}

    seconds = train_loop("vae", work / "vae_state.pt", plan.vae_steps, {"vae": model}, opt, loss_fn, params,
                         precision=precision)
    model.eval().requires_grad_(False)
    return model, seconds


@torch.no_grad()
def normalise_latents(model: vae_module.AutoencoderKL, plan: Plan) -> dict[str, list[float]]:
    """Fold per-channel affine maps into quant_conv / post_quant_conv so that latent means × 0.18215
    have zero mean and unit variance per channel over ``plan.norm_images`` reference images. The
    decoder's output for the same image is unchanged (up to float rounding: the fold is computed in
    float64)."""
    _, x = render_batch(random.Random(plan.seed + 7), plan.norm_images)
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


def finetune_decoder(plan: Plan, work: Path, model: vae_module.AutoencoderKL, precision: str) -> float:
    """More reconstruction training for the decoder side only (``post_quant_conv`` and ``decoder``),
    at 64×64, on the encoder's latent means, with images of *every* colour pair.

    The encoder stays frozen, so the latents the U-Net learnt on keep their meaning. The decoder is
    a caption-free image codec: trained on the held-out pairs' images too, it can draw whatever
    combination the U-Net composes. (Trained on the training pairs only, it renders an unseen pair
    such as blue on black with drifting hues: 68% of held-out round trips analysed right vs 98%
    for seen pairs.) The text encoder and U-Net never see a held-out pair, image or caption."""
    params = list(model.post_quant_conv.parameters()) + list(model.decoder.parameters())
    model.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    model.decoder.train()
    opt = make_optimizer(params, plan.decoder_lr)

    def loss_fn(i: int, bf16: bool) -> tuple[torch.Tensor, dict[str, float]]:
        rng, _ = step_rng(plan.seed, 5, i)
        _, x = render_batch(rng, plan.decoder_batch, combos=demo_data.all_combinations())
        with autocast(bf16):
            with torch.no_grad():
                z = model.encode(x).float()
            out = model.decode(z).float()
        rec = reconstruction(out, x)
        return rec, {"rec": rec.item()}

    seconds = train_loop("decoder", work / "decoder_state.pt", plan.decoder_steps, {"vae": model}, opt, loss_fn,
                         params, precision=precision)
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
    """``plan.latents`` training images as scaled latents (× 0.18215) with their combination index,
    encoded in float32."""
    combos = demo_data.training_combinations()
    index = {c: i for i, c in enumerate(combos)}
    rng = random.Random(plan.seed + 2)
    latents, labels = [], []
    for start in tqdm(range(0, plan.latents, 256), desc="latents", dynamic_ncols=True, mininterval=2.0):
        scenes, x = render_batch(rng, min(256, plan.latents - start))
        latents.append((model.encode(x) * SD1_SCALE).half())
        labels += [index[(s.colour, s.shape, s.background)] for s in scenes]
    return {"latents": torch.cat(latents), "labels": torch.tensor(labels)}


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


def train_unet(plan: Plan, work: Path, data: dict[str, torch.Tensor], precision: str
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

    def loss_fn(i: int, bf16: bool) -> tuple[torch.Tensor, dict[str, float]]:
        _, gen = step_rng(plan.seed, 3, i)
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
        with autocast(bf16):
            context, _ = text(tokens)
            pred = unet(xt, t, context.float())
        loss = F.mse_loss(pred.float(), eps)
        return loss, {"loss": loss.item()}

    def after_step(i: int) -> None:
        decay = min(plan.ema, (1 + i) / (10 + i))
        ema_update(ema_unet, unet, decay)
        ema_update(ema_text, text, decay)

    modules = {"unet": unet, "text": text, "ema_unet": ema_unet, "ema_text": ema_text}
    seconds = train_loop("unet", work / "unet_state.pt", plan.unet_steps, modules, opt, loss_fn, params,
                         precision=precision, after_step=after_step)
    return ema_unet.eval().requires_grad_(False), ema_text.eval().requires_grad_(False), seconds


# ------------------------------------------------------------------------------------------ stage 5: upscaler


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
    for start in tqdm(range(0, plan.up_pool, 128), desc="upscaler data", dynamic_ncols=True, mininterval=2.0):
        scenes = [demo_data.random_scene(rng, combos) for _ in range(min(128, plan.up_pool - start))]
        big = [demo_data.render(s, 128) for s in scenes]
        small = images_to_tensor([demo_data.render(s, 64) for s in scenes])
        rt = vae.decode(vae.encode(small))
        clean.append((small + 1) / 2)
        trip.append(((rt + 1) / 2).clamp(0, 1))
        target.append((images_to_tensor(big) + 1) / 2)
    return torch.cat(clean), torch.cat(trip), torch.cat(target)


def stage_done(path: Path, steps: int) -> bool:
    return path.exists() and torch.load(path, weights_only=False)["step"] >= steps


def train_upscaler(plan: Plan, work: Path, vae: vae_module.AutoencoderKL, precision: str) -> tuple[Compact, float]:
    state = work / "upscaler_state.pt"
    if stage_done(state, plan.up_steps):  # resuming a finished stage: no need for its data
        clean = trip = target = torch.zeros(1, 3, 64, 64)
    else:
        clean, trip, target = upscaler_pool(plan, vae)
    torch.manual_seed(plan.seed + 5)
    model = Compact(UPSCALER_FEATURES, UPSCALER_CONVS)
    params = list(model.parameters())
    opt = make_optimizer(params, plan.up_lr)
    crop = 32

    def loss_fn(i: int, bf16: bool) -> tuple[torch.Tensor, dict[str, float]]:
        _, gen = step_rng(plan.seed, 4, i)
        idx = torch.randint(0, len(clean), (plan.up_batch,), generator=gen)
        use_trip = (torch.rand(plan.up_batch, generator=gen) < 0.5).view(-1, 1, 1, 1)
        x = torch.where(use_trip, trip[idx], clean[idx])
        y0, x0 = (int(v) for v in torch.randint(0, 64 - crop + 1, (2,), generator=gen))
        x = x[:, :, y0:y0 + crop, x0:x0 + crop]
        y = target[idx][:, :, 2 * y0:2 * (y0 + crop), 2 * x0:2 * (x0 + crop)]
        with autocast(bf16):
            loss = (model(x).float() - y).abs().mean()
        return loss, {"l1": loss.item()}

    seconds = train_loop("upscaler", state, plan.up_steps, {"up": model}, opt, loss_fn, params,
                         precision=precision, clip=None)
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
    save_safetensors(checkpoint_tensors(unet, vae, text), ckpt, meta)
    up = out_dir / "upscale_models" / UPSCALER_NAME
    save_safetensors({k: v.detach().half().contiguous() for k, v in upscaler.state_dict().items()}, up,
                     {"modelspec.title": "NodeGraph demo: shapes 2x (SRVGGNetCompact)",
                      "modelspec.license": "MIT (same as NodeGraph)"})
    return ckpt, up


# ------------------------------------------------------------------------------------------ main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="training state and caches (resumable; default ~/.cache/nodegraph-train, "
                             "with --smoke ~/.cache/nodegraph-train-smoke)")
    parser.add_argument("--out-dir", type=Path, default=None,
                        help="models root to write checkpoints/ and upscale_models/ into "
                             "(default: nodes/models; with --smoke: <work dir>/models)")
    parser.add_argument("--smoke", action="store_true",
                        help="a smoke run: every stage for a few steps, from scratch, under a minute")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply step counts and image sets")
    parser.add_argument("--fresh", action="store_true", help="delete the work dir's state first")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads per process (default: torch's choice; 1 is faster on a busy machine)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default=None,
                        help="training arithmetic (default auto: per stage, whichever a timed step finds faster; "
                             "fp32 with --smoke)")
    parser.add_argument("--parallel", action="store_true",
                        help="run stages 4-5 (decoder, upscaler) in a second process beside stage 3 (U-Net)")
    parser.add_argument("--only-decoder-and-upscaler", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke and args.scale != 1.0:
        parser.error("--smoke has its own plan; leave out --scale")
    default_work = Path.home() / ".cache" / ("nodegraph-train-smoke" if args.smoke else "nodegraph-train")
    args.work_dir = args.work_dir or default_work
    args.out_dir = args.out_dir or (args.work_dir / "models" if args.smoke else ROOT / "nodes" / "models")
    args.precision = args.precision or ("fp32" if args.smoke else "auto")
    args.fresh = args.fresh or args.smoke
    args.plan = SMOKE if args.smoke else Plan().scaled(args.scale) if args.scale != 1.0 else Plan()
    args.error = parser.error
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    plan, work = args.plan, args.work_dir
    if args.fresh and work.exists() and not args.only_decoder_and_upscaler:
        for f in work.glob("*.pt"):
            f.unlink()
    work.mkdir(parents=True, exist_ok=True)
    plan_file = work / "plan.json"
    if plan_file.exists() and json.loads(plan_file.read_text()) != asdict(plan) and not args.fresh:
        args.error(f"{work} holds state of a run with another plan ({plan_file}); use --fresh or another --work-dir")
    plan_file.write_text(json.dumps(asdict(plan), indent=1))
    print(f"plan: {asdict(plan)}; torch threads {torch.get_num_threads()}; work dir {work}", flush=True)
    # The fused CPU attention kernels are slow to differentiate at these tiny head widths; the
    # reference (math) kernel computes the same thing with plain matmuls.
    with sdpa_kernel(SDPBackend.MATH):
        if args.only_decoder_and_upscaler:
            vae, _, _ = load_vae(work)
            finetune_decoder(plan, work, vae, args.precision)
            train_upscaler(plan, work, vae, args.precision)
            return 0
        return run(args, plan, work)


def load_vae(work: Path) -> tuple[vae_module.AutoencoderKL, dict, float]:
    saved = torch.load(work / "vae_final.pt", weights_only=False)
    vae = vae_module.AutoencoderKL(vae_module.VAEConfig(**{**saved["config"], "ch_mult": tuple(saved["config"]["ch_mult"])}))
    vae.load_state_dict(saved["vae"])
    return vae.eval().requires_grad_(False), saved["stats"], saved["seconds"]


def vae_and_latents(plan: Plan, work: Path, precision: str, times: dict[str, float]
                    ) -> tuple[vae_module.AutoencoderKL, dict, dict[str, torch.Tensor]]:
    """Stages 1 and 2, or their saved results."""
    if not (work / "vae_final.pt").exists():
        vae, seconds = train_vae(plan, work, precision)
        stats = normalise_latents(vae, plan)
        save_atomic({"vae": vae.state_dict(), "config": asdict(vae.config), "stats": stats, "seconds": seconds},
                    work / "vae_final.pt")
    vae, stats, times["vae"] = load_vae(work)
    latent_file = work / "latents.pt"
    if not latent_file.exists():
        t0 = time.perf_counter()
        data = encode_latents(plan, vae)
        data["seconds"] = torch.tensor(time.perf_counter() - t0)
        save_atomic(data, latent_file)
    data = torch.load(latent_file)
    times["latents"] = float(data["seconds"])
    print(f"latents: {tuple(data['latents'].shape)}, mean {data['latents'].float().mean():.3f}, "
          f"std {data['latents'].float().std():.3f}", flush=True)
    return vae, stats, data


def start_second_process(args: argparse.Namespace) -> subprocess.Popen:
    """This script again, for stages 4–5 only, on the same work dir (its output goes to ours)."""
    command = [sys.executable, str(Path(__file__).resolve()), "--only-decoder-and-upscaler",
               "--work-dir", str(args.work_dir), "--precision", args.precision, "--threads", str(args.threads)]
    command += ["--smoke"] if args.smoke else ["--scale", str(args.scale)]
    return subprocess.Popen(command)


def run(args: argparse.Namespace, plan: Plan, work: Path) -> int:
    wall0 = time.perf_counter()
    times: dict[str, float] = {}
    vae, stats, data = vae_and_latents(plan, work, args.precision, times)
    second = start_second_process(args) if args.parallel else None
    unet, text, times["unet"] = train_unet(plan, work, data, args.precision)
    if second is not None and second.wait() != 0:
        print(f"stages 4-5 failed in the second process (exit code {second.returncode}); "
              "run the command again to resume", file=sys.stderr)
        return 1
    times["decoder"] = finetune_decoder(plan, work, vae, args.precision)  # resumes a finished stage at once
    upscaler, times["upscaler"] = train_upscaler(plan, work, vae, args.precision)

    info = {"plan": asdict(plan), "minutes": {k: round(v / 60, 2) for k, v in times.items()},
            "vae_latent_stats": stats, "unet": asdict(UNET_CONFIG), "text": asdict(TEXT_CONFIG),
            "vae": asdict(vae.config), "upscaler": {"num_feat": UPSCALER_FEATURES, "num_conv": UPSCALER_CONVS},
            "held_out": demo_data.held_out_pairs(), "parallel": args.parallel, "threads": torch.get_num_threads()}
    ckpt, up = export(args.out_dir, unet, vae, text, upscaler, info)
    print(f"wrote {ckpt} ({ckpt.stat().st_size / 1e6:.2f} MB) and {up} ({up.stat().st_size / 1e6:.2f} MB)")
    print("training minutes per stage (over all resumed runs): " + json.dumps(info["minutes"])
          + f"; this invocation's wall time {(time.perf_counter() - wall0) / 60:.2f} min", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
