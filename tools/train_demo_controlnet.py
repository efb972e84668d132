"""Train the demo ControlNet: the shape's outline drawn where you want it → the demo model draws the shape there.

    python tools/train_demo_controlnet.py --fresh --threads 1   # the shipped run: see nodes/models/README.md
    python tools/train_demo_controlnet.py --smoke               # a smoke run: seconds, nothing shipped

Writes ``controlnet/demo-shapes-edges.safetensors`` under ``--out-dir`` (default: the package's
``nodes/models``; with ``--smoke``: ``<work dir>/models``), a ControlNet for the shipped demo
checkpoint (``--checkpoint``, default ``nodes/models/checkpoints/demo-shapes.safetensors``; train the
demo model first with ``tools/train_demo.py``). The file is in the original ControlNet layout
(lllyasviel's ``cldm.ControlNet``, keys under ``control_model.``), float16, as every SD1 ControlNet:
Load ControlNet Model reads it, and so does diffusers' single-file converter.

The world is ``tools/demo_data.py``'s: one coloured shape on a background of another colour, 64×64.
The hint is the shape's outline (``demo_data.edges``: white lines on black, 1–2.5 pixels wide, as an
edge detector or a pen would draw them) at the image's size; the prompt still says the colours.

How it trains (ControlNet's recipe, on a model this small):

1. **Data** — ``images`` training scenes (the demo model's training combinations) encoded once by
   the checkpoint's VAE (scaled latents), and every caption of every combination encoded once by its
   text encoder. The demo model itself stays frozen.
2. **ControlNet** — a copy of the U-Net's encoder (its weights to start from), the hint encoder
   (``input_hint_block``) and 1×1 "zero convolutions" (and ``middle_block_out``) initialised to
   zero: at step 0 the ControlNet adds nothing and the model draws as before. The hint encoder
   starts He-initialised with its output scaled to the spread of the features it is added to
   (``init_hint_encoder``); the original recipe's (PyTorch's default init, its last convolution
   zeroed) leaves the hint unheard for most of a run of this length.
3. **Training** — each step: scenes, a timestep t of SD's discrete schedule, the latent noised to
   √ᾱ_t·x₀ + √(1−ᾱ_t)·ε, the ControlNet's residuals added to the frozen U-Net's skip connections
   and middle block, and the squared error of the predicted ε; only the ControlNet's weights learn.
   Where the shape goes is decided at high noise, where an ε error says little (ε ≈ the noisy
   latent there): so t is drawn with a density rising linearly to the noisiest step, and each
   error is weighted by 1/SNR(t) = (1−ᾱ_t)/ᾱ_t, capped at ``max_weight`` (the error of the
   predicted x₀, the image). The caption is replaced by the empty prompt ``caption_dropout`` of
   the time (so the hint alone also places the shape, and the unconditional half of
   classifier-free guidance, which gets the hint too, agrees).

Seeds are fixed and every step draws its batch from a generator seeded by its step number
(``demo_training.step_rng``), so a resumed run (training state is saved to ``--work-dir`` every
minute; ``--fresh`` starts over) sees the same data as an uninterrupted one. ``--precision auto``
(default) times a step in float32 and under bf16 autocast and trains in the faster one.
``tests/demo/test_controlnet_quality.py`` measures where the shapes land (``python
tests/demo/test_controlnet_quality.py`` prints the figures).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from tqdm import tqdm

from demo_training import ROOT, demo_data, make_optimizer, save_safetensors, step_rng, train_loop
from nodes.sd.control.cldm import ControlNetConfig, ControlNetModel
from nodes.sd.model_sampling import ModelSamplingDiscrete

CHECKPOINT = ROOT / "nodes" / "models" / "checkpoints" / "demo-shapes.safetensors"
CONTROLNET_NAME = "demo-shapes-edges.safetensors"


@dataclass
class Plan:
    seed: int = 2025
    images: int = 2048
    steps: int = 600
    batch: int = 32
    lr: float = 2e-3
    caption_dropout: float = 0.3
    max_weight: float = 25.0  # the loss weight 1/SNR(t), capped
    hint_std: float = 0.5  # the hint features' spread at the start (the first input block's output: ≈ 0.6)
    min_width: float = 1.0  # outline width range, in 64×64 pixels
    max_width: float = 2.5


SMOKE = Plan(images=16, steps=4, batch=4)


# ------------------------------------------------------------------------------------------ data


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@torch.inference_mode()
def encode_scenes(plan: Plan, demo) -> tuple[list[demo_data.Scene], torch.Tensor]:
    """``plan.images`` training scenes and their latents as the sampler sees them (× the latent scale)."""
    scenes = list(demo_data.scenes(plan.seed, plan.images))
    latents = []
    for i in tqdm(range(0, len(scenes), 128), desc="latents", dynamic_ncols=True, mininterval=2.0):
        images = torch.from_numpy(np.stack([demo_data.render(s) for s in scenes[i:i + 128]])).float() / 255.0
        latents.append(demo.model.process_in(demo.vae.encode(images)))
    return scenes, torch.cat(latents)


@torch.inference_mode()
def caption_contexts(demo) -> tuple[dict[tuple[str, str, str], int], torch.Tensor, torch.Tensor]:
    """Index of each training combination, its contexts ``[combos, phrasings, 77, width]``, and the
    empty prompt's ``[77, width]``."""
    combos = demo_data.training_combinations()
    encode = demo.text_encoder.encode
    table = torch.stack([torch.cat([encode(demo_data.caption(*c, phrasing=p))[0]
                                    for p in range(len(demo_data.PHRASINGS))]) for c in combos])
    return {c: i for i, c in enumerate(combos)}, table, encode("")[0][0]


def high_noise_timesteps(n: int, count: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` timesteps of ``count`` with density rising linearly with t: where the shape's place is
    decided (at low noise the latent already shows it, and the hint has nothing to add)."""
    return (torch.rand(n, generator=gen).sqrt() * count).long().clamp(max=count - 1)


def hint_batch(scenes: list[demo_data.Scene], widths: list[float]) -> torch.Tensor:
    """Outline hints ``[B, 3, 64, 64]`` in 0..1 (the ControlNet's input at 8× the 8×8 latent)."""
    hints = np.stack([demo_data.edges(s, 64, w) for s, w in zip(scenes, widths)])
    return torch.from_numpy(hints).permute(0, 3, 1, 2).float() / 255.0


# ------------------------------------------------------------------------------------------ model


def init_controlnet(unet, hints: torch.Tensor, hint_std: float) -> ControlNetModel:
    """A ControlNet for ``unet``: the encoder copied, every zero conv zero (the ControlNet's first
    residuals are zero), and the hint encoder initialised so that the hint is heard (see
    ``init_hint_encoder``)."""
    net = ControlNetModel(ControlNetConfig(unet.config, hint_channels=3))
    encoder = {k: v for k, v in unet.state_dict().items() if k in net.state_dict()}
    missing, _ = net.load_state_dict(encoder, strict=False)
    own = ("input_hint_block.", "zero_convs.", "middle_block_out.")
    if any(not k.startswith(own) for k in missing):
        raise ValueError(f"the U-Net lacks encoder weights the ControlNet copies: {missing[:3]}")
    for name, module in net.named_modules():
        if name.startswith(("zero_convs.", "middle_block_out.")):
            for p in module.parameters(recurse=False):
                torch.nn.init.zeros_(p)
    init_hint_encoder(net.input_hint_block, hints, hint_std)
    return net


@torch.no_grad()
def init_hint_encoder(block: torch.nn.Sequential, hints: torch.Tensor, std: float) -> None:
    """He-normal convolutions with zero biases, the last one scaled so that the features of
    ``hints`` have standard deviation ``std`` (beside the first input block's output they are added
    to). PyTorch's default init (and the original recipe's zeroed last convolution) leaves a thin
    outline's features at ~2% of that: the ControlNet hears the hint only after many steps."""
    convs = [m for m in block if isinstance(m, torch.nn.Conv2d)]
    for conv in convs:
        torch.nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
        torch.nn.init.zeros_(conv.bias)
    convs[-1].weight.mul_(std / float(block(hints).std()))


def train(plan: Plan, demo, work: Path, precision: str) -> tuple[ControlNetModel, float]:
    unet = demo.unet.eval().requires_grad_(False)
    scenes, latents = encode_scenes(plan, demo)
    index, contexts, empty = caption_contexts(demo)
    labels = torch.tensor([index[(s.colour, s.shape, s.background)] for s in scenes])
    alphas = ModelSamplingDiscrete().alphas_cumprod
    torch.manual_seed(plan.seed)
    probe = hint_batch(scenes[:64], [(plan.min_width + plan.max_width) / 2] * min(64, len(scenes)))
    net = init_controlnet(unet, probe, plan.hint_std).float().train()
    params = list(net.parameters())
    opt = make_optimizer(params, plan.lr)

    def loss_fn(i: int, bf16: bool) -> tuple[torch.Tensor, dict[str, float]]:
        rng, gen = step_rng(plan.seed, 1, i)
        idx = torch.randint(0, len(latents), (plan.batch,), generator=gen)
        x0 = latents[idx]
        phrasing = torch.randint(0, contexts.shape[1], (plan.batch,), generator=gen)
        context = contexts[labels[idx], phrasing].clone()
        context[torch.rand(plan.batch, generator=gen) < plan.caption_dropout] = empty
        t = high_noise_timesteps(plan.batch, len(alphas), gen)
        eps = torch.randn(x0.shape, generator=gen)
        a = alphas[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
        hint = hint_batch([scenes[j] for j in idx.tolist()],
                          [rng.uniform(plan.min_width, plan.max_width) for _ in range(plan.batch)])
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            control = net(xt, hint, t.float(), context)
            pred = unet(xt, t.float(), context, control=control)
        weight = ((1 - a) / a).clamp(max=plan.max_weight)  # 1/SNR: the x₀ error, where the layout shows
        loss = (weight * (pred.float() - eps) ** 2).mean()
        return loss, {"loss": loss.item()}

    seconds = train_loop("controlnet", work / "controlnet_state.pt", plan.steps, {"controlnet": net}, opt, loss_fn,
                         params, precision=precision)
    return net.eval().requires_grad_(False), seconds


def export(net: ControlNetModel, path: Path, info: dict) -> Path:
    """The original ControlNet layout (``control_model.`` keys), float16, written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {"control_model." + k: v.detach().to(torch.float16).contiguous() for k, v in net.state_dict().items()}
    meta = {
        "modelspec.title": "NodeGraph demo: shapes ControlNet (edges)",
        "modelspec.architecture": "stable-diffusion-v1/controlnet",
        "modelspec.resolution": "64x64",
        "modelspec.license": "MIT (same as NodeGraph)",
        "modelspec.description": "A ControlNet for NodeGraph's demo-shapes checkpoint, trained by "
                                 "tools/train_demo_controlnet.py: the hint is the outline of one shape "
                                 "(white lines on black); the model draws the shape there.",
        "nodegraph.training": json.dumps(info, sort_keys=True),
    }
    save_safetensors(tensors, path, meta)
    return path


# ------------------------------------------------------------------------------------------ main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=CHECKPOINT, help="the demo checkpoint to control")
    parser.add_argument("--work-dir", type=Path, default=Path.home() / ".cache" / "nodegraph-train-controlnet",
                        help="training state (resumable; default ~/.cache/nodegraph-train-controlnet)")
    parser.add_argument("--out-dir", type=Path, default=None,
                        help="models root to write controlnet/ into (default: nodes/models; --smoke: <work dir>/models)")
    parser.add_argument("--fresh", action="store_true", help="delete the work dir's state first")
    parser.add_argument("--smoke", action="store_true", help="a few steps on a few images (tests the script)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the plan's)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="train under bf16 autocast, in float32, or whichever a timed step finds faster")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    plan = SMOKE if args.smoke else Plan()
    if args.steps:
        plan = replace(plan, steps=args.steps)
    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    plan_file = work / "controlnet_plan.json"
    state = work / "controlnet_state.pt"
    if args.fresh and state.exists():
        state.unlink()
    base = sha256(args.checkpoint)
    key = {"plan": asdict(plan), "checkpoint_sha256": base}
    if state.exists() and plan_file.exists() and json.loads(plan_file.read_text()) != key:
        raise SystemExit(f"{work} holds the state of a run with another plan or checkpoint ({plan_file}); "
                         "use --fresh or another --work-dir")
    plan_file.write_text(json.dumps(key, indent=1))
    print(f"plan: {asdict(plan)}; checkpoint {args.checkpoint} (sha256 {base[:16]}…); "
          f"torch threads {torch.get_num_threads()}", flush=True)
    from nodes.sd.checkpoint import load_checkpoint

    wall0 = time.perf_counter()
    demo = load_checkpoint(args.checkpoint, dtype=torch.float32)
    # the fused CPU attention kernels are slow to differentiate at these tiny head widths (train_demo.py)
    with sdpa_kernel(SDPBackend.MATH):
        net, seconds = train(plan, demo, work, args.precision)
    out_dir = args.out_dir or (work / "models" if args.smoke else ROOT / "nodes" / "models")
    info = {"plan": asdict(plan), "minutes": round(seconds / 60, 2), "checkpoint_sha256": base,
            "hint": "edges: the shape's outline, white on black (tools/demo_data.py edges)"}
    path = export(net, out_dir / "controlnet" / CONTROLNET_NAME, info)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB); {seconds / 60:.1f} min of training, "
          f"{(time.perf_counter() - wall0) / 60:.1f} min wall", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
