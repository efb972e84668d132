"""Pictures from the demo models the way the demo graph makes them, many at once.

The demo graph (``examples/demo.json``) runs CLIPTextEncode → KSampler (64×64 latent, cfg 5, empty
negative) → VAEDecode → ImageUpscaleWithModel (the 2× upscaler) → SaveImage. ``generate`` runs the
same functions those nodes call, for a whole list of ``Case``s that share a sampler in one batch: each
image gets its own prompt (a conditioning batch, as ComfyUI allows) and its own seed's initial noise.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch

from shape_analyser import ROOT, demo_data

MODELS = ROOT / "nodes" / "models"
UPSCALER = MODELS / "upscale_models" / "demo-shapes-2x.safetensors"


@dataclass(frozen=True)
class Sampling:
    sampler: str
    scheduler: str
    steps: int


# The demo graph's settings first. The others converge in fewer steps (second-order or multistep),
# so 10–12 steps draw what 20 would; the ancestral one adds fresh noise every step.
SAMPLINGS = (
    Sampling("euler", "normal", 20),
    Sampling("euler_ancestral", "normal", 20),
    Sampling("dpmpp_2m", "karras", 10),
    Sampling("dpmpp_2m_sde", "karras", 12),
)


@dataclass(frozen=True)
class Case:
    colour: str
    shape: str
    background: str
    phrasing: int
    seed: int
    sampling: Sampling

    @property
    def prompt(self) -> str:
        return demo_data.caption(self.colour, self.shape, self.background, self.phrasing)


def stray_mark_cases(per_sampling: int = 36, seed: int = 21) -> list[Case]:
    """``per_sampling`` images for each of ``SAMPLINGS``: every image a different seed, the phrasings
    in turn, the (colour, shape, background) combinations — held-out and trained ones alike — drawn
    without repeats from a fixed shuffle."""
    combos = demo_data.all_combinations()
    random.Random(seed).shuffle(combos)
    cases = []
    for k, sampling in enumerate(SAMPLINGS):
        for i in range(per_sampling):
            n = k * per_sampling + i
            colour, shape, background = combos[n % len(combos)]
            cases.append(Case(colour, shape, background, n % len(demo_data.PHRASINGS), 1000 + n, sampling))
    return cases


def load_demo(checkpoint: Path, upscaler: Path = UPSCALER):
    from nodes.sd.checkpoint import load_checkpoint
    from nodes.sd.upscale import load_upscale_model

    return load_checkpoint(checkpoint, dtype=torch.float32), load_upscale_model(upscaler)


@torch.inference_mode()
def sample_latents(demo, prompts: list[str], seeds: list[int], sampling: Sampling, cfg: float = 5.0,
                   negative: str = "") -> torch.Tensor:
    """KSampler over a batch: image i from ``prompts[i]`` and the initial noise of ``seeds[i]``."""
    from nodes.sd.ksampler import sample
    from nodes.sd.noise import prepare_noise

    latent = {"samples": torch.zeros(len(prompts), 4, 8, 8)}
    noise = torch.cat([prepare_noise(latent["samples"][:1], seed) for seed in seeds])
    encode = demo.text_encoder.encode
    contexts = {p: encode(p)[0] for p in set(prompts)}
    positive = [[torch.cat([contexts[p] for p in prompts]), {}]]
    negative_cond = [[encode(negative)[0], {}]]
    out = sample(demo.model, latent, positive, negative_cond, seed=seeds[0], steps=sampling.steps, cfg=cfg,
                 sampler_name=sampling.sampler, scheduler=sampling.scheduler, noise=noise)
    return out["samples"]


@torch.inference_mode()
def generate(demo, upscaler, cases: list[Case], cfg: float = 5.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(64×64 decoded images, 128×128 upscaled images)`` for ``cases``, as IMAGE tensors in 0..1
    in the order of ``cases`` (one sampler batch per sampling setting)."""
    from nodes.sd.upscale import upscale_image

    small = [None] * len(cases)
    for sampling in dict.fromkeys(c.sampling for c in cases):
        index = [i for i, c in enumerate(cases) if c.sampling == sampling]
        latents = sample_latents(demo, [cases[i].prompt for i in index], [cases[i].seed for i in index],
                                 sampling, cfg)
        for i, image in zip(index, demo.vae.decode(latents)):
            small[i] = image
    small = torch.stack(small)
    return small, upscale_image(upscaler, small)
