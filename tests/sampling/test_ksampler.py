"""ksampler.sample has KSampler/KSamplerAdvanced semantics; the split pipeline gives the same latents."""
from __future__ import annotations

import hashlib
import pathlib
import subprocess
import sys

import pytest
import torch

from nodes.sd import ksampler as K
from nodes.sd.diffusion_model import DiffusionModel
from nodes.sd.model_sampling import ModelSamplingDiscrete
from nodes.sd.noise import DisableNoise, RandomNoise
from nodes.sd.schedulers import calculate_sigmas

from conftest import ToyUNet

ROOT = pathlib.Path(__file__).resolve().parents[2]


def make_model():
    return DiffusionModel(ToyUNet(), ModelSamplingDiscrete(), "sd1", 0.18215)


def prompt(seed: int, tokens: int = 77):
    return [[torch.randn(1, tokens, 8, generator=torch.Generator().manual_seed(seed)), {}]]


POS, NEG = prompt(1), prompt(2)
EMPTY = {"samples": torch.zeros(2, 4, 8, 8)}
IMAGE = {"samples": torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(5))}


def run(model=None, latent=EMPTY, **kw):
    settings = dict(seed=42, steps=6, cfg=6.0, sampler_name="euler", scheduler="karras")
    settings.update(kw)
    return K.sample(model or make_model(), latent, POS, NEG, **settings)["samples"]


@pytest.mark.parametrize("sampler_name", ["euler", "dpmpp_2m", "euler_ancestral", "dpmpp_sde", "lcm", "heun"])
@pytest.mark.parametrize("latent,denoise", [(EMPTY, 1.0), (IMAGE, 0.6)], ids=["txt2img", "img2img"])
def test_split_pipeline_equals_ksampler(sampler_name, latent, denoise):
    """RandomNoise + CFGGuider + KSamplerSelect + BasicScheduler + SamplerCustomAdvanced ≡ KSampler."""
    model = make_model()
    whole = K.sample(model, latent, POS, NEG, seed=42, steps=6, cfg=6.0, sampler_name=sampler_name,
                     scheduler="karras", denoise=denoise)
    sigmas = K.basic_scheduler(model.model_sampling, "karras", 6, denoise)
    parts, _ = K.sample_custom(RandomNoise(42), K.CFGGuider(model, POS, NEG, 6.0), K.Sampler(sampler_name),
                               sigmas, latent)
    assert torch.equal(whole["samples"], parts["samples"])


def test_penultimate_sigma_is_dropped_for_dpm_2_and_uni_pc():
    ms = ModelSamplingDiscrete()
    longer = calculate_sigmas(ms, "normal", 7)
    for name in ["dpm_2", "dpm_2_ancestral", "uni_pc", "uni_pc_bh2"]:
        assert torch.equal(K.ksampler_sigmas(ms, "normal", 6, name), torch.cat([longer[:-2], longer[-1:]]))
    assert torch.equal(K.ksampler_sigmas(ms, "normal", 6, "euler"), calculate_sigmas(ms, "normal", 6))


def test_dpm_2_ksampler_equals_split_pipeline_given_ksampler_sigmas():
    model = make_model()
    whole = run(model, sampler_name="dpm_2")
    sigmas = K.ksampler_sigmas(model.model_sampling, "karras", 6, "dpm_2")
    parts, _ = K.sample_custom(RandomNoise(42), K.CFGGuider(model, POS, NEG, 6.0), K.Sampler("dpm_2"), sigmas, EMPTY)
    assert torch.equal(whole, parts["samples"])


def test_denoise_takes_the_last_steps_of_a_longer_schedule():
    ms = ModelSamplingDiscrete()
    assert torch.equal(K.ksampler_sigmas(ms, "normal", 10, denoise=0.4), calculate_sigmas(ms, "normal", 25)[-11:])
    assert K.ksampler_sigmas(ms, "normal", 10, denoise=0.0).numel() == 0


def test_zero_denoise_returns_the_latent_unchanged():
    assert torch.equal(run(latent=IMAGE, denoise=0.0), IMAGE["samples"])


def test_two_advanced_stages_equal_one_run():
    """KSamplerAdvanced 0→3 with leftover noise, then 3→6 without new noise = one 6-step run."""
    model = make_model()
    one = run(model)
    first = K.sample(model, EMPTY, POS, NEG, seed=42, steps=6, cfg=6.0, sampler_name="euler", scheduler="karras",
                     end_step=3, return_with_leftover_noise=True)
    second = K.sample(model, first, POS, NEG, seed=42, steps=6, cfg=6.0, sampler_name="euler", scheduler="karras",
                      start_step=3, add_noise=False)
    assert float((second["samples"] - one).norm() / one.norm()) < 1e-6


def test_end_step_without_leftover_noise_denoises_fully():
    """Steps 0-2 of a 6-step schedule, the last of them taken onto σ = 0: Euler lands on D(x; σ_2)."""
    model = make_model()
    infos = []
    out = run(model, end_step=3, callback=infos.append)
    full = calculate_sigmas(model.model_sampling, "karras", 6)
    assert [i.sigma for i in infos] == pytest.approx([float(s) for s in full[:3]])
    assert torch.allclose(out, model.process_out(infos[-1].denoised), rtol=1e-5, atol=1e-4)


def test_start_step_past_the_end_returns_the_input():
    assert torch.equal(run(latent=IMAGE, start_step=6), IMAGE["samples"])


def test_disabled_noise_starts_from_the_latent_as_is():
    """add_noise=False on an image latent: the first U-Net input is the scaled latent / √(σ₀² + 1)."""
    model = make_model()
    run(model, latent=IMAGE, add_noise=False, cfg=1.0, steps=1, sigmas=torch.tensor([1.0, 0.0]))
    first_input_timestep = model.unet.calls[0]["timesteps"]
    assert first_input_timestep.tolist() == [float(model.model_sampling.timestep(torch.tensor(1.0)))] * 2
    out = run(model, latent=IMAGE, add_noise=False, cfg=1.0, sigmas=torch.tensor([1.0, 0.0]))
    x = model.process_in(IMAGE["samples"])
    expected = model.process_out(model.apply_model(x, torch.tensor([1.0, 1.0]), POS[0][0].repeat(2, 1, 1)))
    assert torch.allclose(out, expected, atol=1e-5)


def test_callback_gets_every_step_with_a_preview():
    infos = []
    run(callback=infos.append)
    assert [i.step for i in infos] == list(range(6)) and {i.total for i in infos} == {6}
    preview = infos[-1].preview()
    assert preview.shape == (8, 8, 3) and preview.dtype.name == "uint8"


def test_raising_callback_interrupts_within_a_step():
    class Interrupted(Exception):
        pass

    model = make_model()

    def stop_at_step_2(info):
        if info.step == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        run(model, sampler_name="dpmpp_2m", callback=stop_at_step_2)
    assert len(model.unet.calls) == 3  # steps 0, 1, 2 (one batched cond+uncond call each), nothing after


def test_same_seed_gives_bit_identical_latents_in_process():
    assert torch.equal(run(sampler_name="euler_ancestral"), run(sampler_name="euler_ancestral"))
    assert not torch.equal(run(seed=1), run(seed=2))


def test_batch_index_reproduces_one_image_of_a_batch():
    batch = run(latent={"samples": torch.zeros(3, 4, 8, 8)})
    alone = run(latent={"samples": torch.zeros(1, 4, 8, 8), "batch_index": [2]})
    assert torch.allclose(alone, batch[2:3], atol=1e-5)


def test_inpainting_keeps_the_unmasked_region():
    mask = torch.zeros(1, 64, 64)
    mask[:, :, :32] = 1.0  # repaint the left half (image pixels)
    latent = dict(IMAGE, noise_mask=mask)
    out = run(latent=latent)
    assert torch.allclose(out[..., 4:], IMAGE["samples"][..., 4:], atol=1e-4)
    assert not torch.allclose(out[..., :4], IMAGE["samples"][..., :4], atol=1e-2)


def test_sample_custom_returns_the_last_denoised_estimate():
    model = make_model()
    out, denoised = K.sample_custom(RandomNoise(3), K.CFGGuider(model, POS, NEG, 6.0), K.Sampler("euler"),
                                    K.basic_scheduler(model.model_sampling, "karras", 4), EMPTY)
    # Euler's step onto σ = 0 lands exactly on the last denoised estimate
    assert torch.allclose(out["samples"], denoised["samples"], atol=1e-5)
    out, denoised = K.sample_custom(DisableNoise(), K.BasicGuider(model, POS), K.Sampler("euler"), torch.zeros(0), IMAGE)
    assert denoised is out and torch.equal(out["samples"], IMAGE["samples"])


def test_unknown_names_are_rejected_with_the_choices():
    with pytest.raises(ValueError, match="unknown sampler_name 'euler_b'"):
        run(sampler_name="euler_b")
    with pytest.raises(ValueError, match="unknown scheduler 'fast'"):
        run(scheduler="fast")


def test_malformed_latent_is_rejected():
    with pytest.raises(TypeError, match="LATENT dict"):
        K.sample(make_model(), torch.zeros(1, 4, 8, 8), POS, NEG, seed=1, steps=2, cfg=1.0,
                 sampler_name="euler", scheduler="normal")


_SCRIPT = """
import hashlib, sys, torch
sys.path[:0] = [{root!r}, {tests!r}]
from conftest import ToyUNet
from nodes.sd import ksampler as K
from nodes.sd.diffusion_model import DiffusionModel
from nodes.sd.model_sampling import ModelSamplingDiscrete
torch.set_num_threads(1)  # as the in-process run (see conftest)
model = DiffusionModel(ToyUNet(), ModelSamplingDiscrete(), "sd1", 0.18215)
pos = [[torch.randn(1, 77, 8, generator=torch.Generator().manual_seed(1)), {{}}]]
neg = [[torch.randn(1, 77, 8, generator=torch.Generator().manual_seed(2)), {{}}]]
out = K.sample(model, {{"samples": torch.zeros(2, 4, 8, 8)}}, pos, neg, seed=42, steps=6, cfg=6.0,
               sampler_name="dpmpp_2m_sde", scheduler="karras")["samples"]
print(hashlib.sha256(out.numpy().tobytes()).hexdigest())
"""


def test_same_seed_gives_bit_identical_latents_across_processes():
    script = _SCRIPT.format(root=str(ROOT), tests=str(pathlib.Path(__file__).parent))
    digests = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                              cwd=ROOT).stdout.strip() for _ in range(2)}
    in_process = K.sample(make_model(), {"samples": torch.zeros(2, 4, 8, 8)}, POS, NEG, seed=42, steps=6,
                          cfg=6.0, sampler_name="dpmpp_2m_sde", scheduler="karras")["samples"]
    assert len(digests) == 1
    assert digests == {hashlib.sha256(in_process.numpy().tobytes()).hexdigest()}
