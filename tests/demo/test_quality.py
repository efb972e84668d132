"""The shipped demo model draws what the prompt asks for — through the normal loader and sampler.

Every prompt here names a (shape colour, background colour) pair that the training data never
showed together (``demo_data.held_out_pairs``), with each of the three shapes: 24 prompts, 8 seeds
each (the issue asks for at least 4; 8 halves the sampling noise of the cfg comparison), 20 euler
steps at 64×64. ``shape_analyser`` reads the images back. This checks the whole
chain at once: tokenizer → text encoder → cross-attention → CFG → sampler → VAE.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from shape_analyser import ROOT, Analysis, analyse, demo_data

# NODEGRAPH_DEMO_CHECKPOINT checks another file with the same test (e.g. a fresh tools/train_demo.py
# run written with --out-dir elsewhere); by default the shipped model.
CHECKPOINT = Path(os.environ.get("NODEGRAPH_DEMO_CHECKPOINT")
                  or ROOT / "nodes" / "models" / "checkpoints" / "demo-shapes.safetensors")
SEEDS = tuple(range(8))
STEPS = 20
CFG = 5.0


@dataclass(frozen=True)
class Scores:
    colour: float  # shape colour right
    background: float  # background colour right
    both_colours: float
    shape: float

    @staticmethod
    def of(pairs: list[tuple[tuple[str, str, str], Analysis]]) -> "Scores":
        n = len(pairs)
        return Scores(
            colour=sum(a.colour == c for (c, _, _), a in pairs) / n,
            background=sum(a.background == b for (_, _, b), a in pairs) / n,
            both_colours=sum(a.colour == c and a.background == b for (c, _, b), a in pairs) / n,
            shape=sum(a.shape == s for (_, s, _), a in pairs) / n,
        )


@pytest.fixture(scope="module")
def demo():
    from nodes.sd.checkpoint import load_checkpoint

    assert CHECKPOINT.is_file(), f"{CHECKPOINT} is missing: it ships with NodeGraph (train it with tools/train_demo.py)"
    return load_checkpoint(CHECKPOINT, dtype=torch.float32)


def generate(demo, prompt: str, cfg: float, negative: str = "") -> list[Analysis]:
    """One KSampler run of ``prompt`` with a latent batch of len(SEEDS), noise of each image from its own seed."""
    from nodes.sd.ksampler import sample
    from nodes.sd.noise import prepare_noise

    latent = {"samples": torch.zeros(len(SEEDS), 4, 8, 8)}
    noise = torch.cat([prepare_noise(latent["samples"][:1], seed) for seed in SEEDS])
    positive = [[demo.text_encoder.encode(prompt)[0], {}]]
    negative_cond = [[demo.text_encoder.encode(negative)[0], {}]]
    out = sample(demo.model, latent, positive, negative_cond, seed=SEEDS[0], steps=STEPS, cfg=cfg,
                 sampler_name="euler", scheduler="normal", noise=noise)
    images = demo.vae.decode(out["samples"])
    return [analyse(image.numpy()) for image in images]


@pytest.fixture(scope="module")
def results(demo):
    """Analyses at cfg 5 and at cfg 1 for every held-out prompt, and of the empty prompt."""
    with torch.inference_mode():
        combos = demo_data.held_out_combinations()
        guided, plain = [], []
        for combo in combos:
            prompt = demo_data.caption(*combo)
            guided += [(combo, a) for a in generate(demo, prompt, CFG)]
            plain += [(combo, a) for a in generate(demo, prompt, 1.0)]
        empty = generate(demo, "", 1.0)
    # the empty prompt's image for a seed, judged against every held-out target
    unprompted = [(combo, a) for combo in combos for a in empty]
    return {"cfg5": Scores.of(guided), "cfg1": Scores.of(plain), "empty": Scores.of(unprompted),
            "n": len(guided)}


def test_prompts_cover_at_least_12_unseen_combinations_with_at_least_4_seeds(results):
    assert len(demo_data.held_out_combinations()) >= 12
    assert len(SEEDS) >= 4
    assert results["n"] == len(SEEDS) * len(demo_data.held_out_combinations())


def test_shape_colour_is_right_in_at_least_80_percent(results):
    assert results["cfg5"].colour >= 0.80, results


def test_background_colour_is_right_in_at_least_90_percent(results):
    assert results["cfg5"].background >= 0.90, results


def test_shape_is_right_in_at_least_60_percent(results):
    assert results["cfg5"].shape >= 0.60, results


def test_guidance_raises_colour_accuracy_by_at_least_10_points(results):
    assert results["cfg5"].both_colours >= results["cfg1"].both_colours + 0.10, results


def test_an_empty_prompt_scores_near_chance(results):
    chance = 1 / len(demo_data.COLOURS)
    assert results["empty"].colour <= chance + 0.15, results
    assert results["empty"].both_colours <= chance, results
