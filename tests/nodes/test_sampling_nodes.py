"""Sampling nodes: KSampler and KSamplerAdvanced against nodes.sd.ksampler.sample, the split nodes against
KSampler, schedules, progress reports with previews, and interrupts within one step."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from nodekit import ROOT, FakeContext, options_for
from numerics import U32, path_rtol, rel_err

from nodegraph import Interrupted
from nodes import sampling as nodes_sampling
from nodes.conditioning import clip_text_encode
from nodes.latent import empty_latent_image, latent_from_batch
from nodes.sampling import (basic_guider, basic_scheduler_node, cfg_guider, disable_noise, ksampler,
                            ksampler_advanced, ksampler_select, random_noise, sampler_custom_advanced,
                            split_sigmas)
from nodes.sd import ksampler as sd_ksampler


@pytest.fixture
def ctx(models_dir):
    return FakeContext(options_for(models_dir))


def prompts(load, ctx, family="sd1"):
    _, clip, _ = load(family)
    return (clip_text_encode(clip=clip, text="a red fox", ctx=ctx),
            clip_text_encode(clip=clip, text="blurry", ctx=ctx))


def latent(width=64, height=64, batch=1, seed=None):
    out = empty_latent_image(width=width, height=height, batch_size=batch)
    if seed is not None:
        out["samples"] = torch.randn(out["samples"].shape, generator=torch.Generator().manual_seed(seed))
    return out


SETTINGS = dict(seed=123, steps=3, cfg=6.5, sampler_name="euler", scheduler="normal")


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_ksampler_equals_a_direct_sample_call(load, ctx, family):
    model, _, _ = load(family)
    pos, neg = prompts(load, ctx, family)
    ours = ksampler(model=model, positive=pos, negative=neg, latent_image=latent(), denoise=1.0, ctx=ctx,
                    **SETTINGS)
    direct = sd_ksampler.sample(model, latent(), pos, neg, denoise=1.0, **SETTINGS)
    torch.testing.assert_close(ours["samples"], direct["samples"], rtol=0, atol=0)
    assert ours["samples"].shape == (1, 4, 8, 8)


def test_ksampler_with_denoise_starts_from_the_input_latent(load, ctx):
    model, _, _ = load("sd1")
    pos, neg = prompts(load, ctx)
    start = latent(seed=5)
    settings = dict(SETTINGS, sampler_name="dpmpp_2m", scheduler="karras")
    ours = ksampler(model=model, positive=pos, negative=neg, latent_image=start, denoise=0.5, ctx=ctx, **settings)
    direct = sd_ksampler.sample(model, start, pos, neg, denoise=0.5, **settings)
    full = ksampler(model=model, positive=pos, negative=neg, latent_image=start, denoise=1.0, ctx=ctx, **settings)
    torch.testing.assert_close(ours["samples"], direct["samples"], rtol=0, atol=0)
    assert not torch.allclose(ours["samples"], full["samples"], atol=1e-3)


def test_ksampler_advanced_equals_a_direct_sample_call_with_its_step_range(load, ctx):
    model, _, _ = load("sd1")
    pos, neg = prompts(load, ctx)
    kw = dict(steps=4, cfg=5.0, sampler_name="euler_ancestral", scheduler="karras")
    ours = ksampler_advanced(model=model, positive=pos, negative=neg, latent_image=latent(), add_noise="enable",
                             noise_seed=7, start_at_step=1, end_at_step=3, return_with_leftover_noise="enable",
                             ctx=ctx, **kw)
    direct = sd_ksampler.sample(model, latent(), pos, neg, seed=7, denoise=1.0, start_step=1, end_step=3,
                                return_with_leftover_noise=True, **kw)
    torch.testing.assert_close(ours["samples"], direct["samples"], rtol=0, atol=0)


def test_ksampler_advanced_in_two_passes_equals_one_ksampler(load, ctx):
    model, _, _ = load("sd1")
    pos, neg = prompts(load, ctx)
    kw = dict(steps=4, cfg=5.0, sampler_name="euler", scheduler="normal")
    first = ksampler_advanced(model=model, positive=pos, negative=neg, latent_image=latent(), add_noise="enable",
                              noise_seed=9, start_at_step=0, end_at_step=2, return_with_leftover_noise="enable",
                              ctx=ctx, **kw)
    second = ksampler_advanced(model=model, positive=pos, negative=neg, latent_image=first, add_noise="disable",
                               noise_seed=9, start_at_step=2, end_at_step=10000,
                               return_with_leftover_noise="disable", ctx=ctx, **kw)
    whole = ksampler(model=model, positive=pos, negative=neg, latent_image=latent(), seed=9, denoise=1.0, ctx=ctx,
                     **kw)
    # The same U-Net calls in the same batch shapes; only the hand-over rounds: the latent leaves the first
    # pass unscaled (÷ latent scale) and enters the second scaled again (×), 2 roundings (2u). Each of the
    # 2 remaining euler steps may amplify a perturbation of x by up to 1 + 2·cfg through the guided U-Net.
    bound = 2 * U32 * (1 + 2 * kw["cfg"]) ** 2
    assert rel_err(second["samples"], whole["samples"]) <= bound


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_split_nodes_give_the_same_latent_as_ksampler(load, ctx, family):
    model, _, _ = load(family)
    pos, neg = prompts(load, ctx, family)
    whole = ksampler(model=model, positive=pos, negative=neg, latent_image=latent(), denoise=1.0, ctx=ctx,
                     **SETTINGS)
    output, denoised = sampler_custom_advanced(
        noise=random_noise(noise_seed=SETTINGS["seed"]),
        guider=cfg_guider(model=model, positive=pos, negative=neg, cfg=SETTINGS["cfg"]),
        sampler=ksampler_select(sampler_name="euler"),
        sigmas=basic_scheduler_node(model=model, scheduler="normal", steps=3, denoise=1.0),
        latent_image=latent(), ctx=ctx)
    torch.testing.assert_close(output["samples"], whole["samples"], rtol=0, atol=0)
    # The last euler step to σ = 0 computes x + (0 − σ)/σ·(x − D): D up to a few roundings of x and D.
    assert rel_err(denoised["samples"], output["samples"]) <= 8 * U32


def test_denoised_output_is_the_last_estimate_when_the_schedule_stops_early(load, ctx):
    model, _, _ = load("sd1")
    pos, _ = prompts(load, ctx)
    sigmas = basic_scheduler_node(model=model, scheduler="normal", steps=4, denoise=1.0)
    high, _ = split_sigmas(sigmas=sigmas, step=2)
    output, denoised = sampler_custom_advanced(
        noise=random_noise(noise_seed=1), guider=basic_guider(model=model, conditioning=pos),
        sampler=ksampler_select(sampler_name="euler"), sigmas=high, latent_image=latent(), ctx=ctx)
    assert output["samples"].shape == denoised["samples"].shape
    assert not torch.allclose(output["samples"], denoised["samples"], atol=1e-2)  # noise is left in the output


def test_basic_scheduler_gives_the_schedulers_sigmas(load):
    model, _, _ = load("sd1")
    sigmas = basic_scheduler_node(model=model, scheduler="karras", steps=5, denoise=0.5)
    expected = sd_ksampler.basic_scheduler(model.model_sampling, "karras", 5, 0.5)
    torch.testing.assert_close(sigmas, expected, rtol=0, atol=0)
    assert len(sigmas) == 6 and sigmas[-1] == 0


def test_split_sigmas_share_the_sigma_at_the_split():
    sigmas = torch.tensor([14.6, 7.0, 3.0, 1.0, 0.0])
    high, low = split_sigmas(sigmas=sigmas, step=2)
    assert high.tolist() == pytest.approx([14.6, 7.0, 3.0])
    assert low.tolist() == pytest.approx([3.0, 1.0, 0.0])


def test_disable_noise_gives_zeros_and_random_noise_the_seeded_noise():
    target = latent(batch=2)
    assert torch.count_nonzero(disable_noise().generate_noise(target)) == 0
    noise = random_noise(noise_seed=42).generate_noise(target)
    expected = torch.randn((2, 4, 8, 8), generator=torch.Generator().manual_seed(42))
    torch.testing.assert_close(noise, expected, rtol=0, atol=0)


def test_ksampler_select_names_the_sampler():
    assert ksampler_select(sampler_name="dpmpp_2m").name == "dpmpp_2m"


def test_a_latent_taken_from_a_batch_samples_to_its_image_of_the_whole_batch(load, ctx):
    model, _, _ = load("sd1")
    pos, neg = prompts(load, ctx)
    whole = ksampler(model=model, positive=pos, negative=neg, latent_image=latent(batch=3), denoise=1.0, ctx=ctx,
                     **SETTINGS)
    third = latent_from_batch(samples=latent(batch=3), batch_index=2, length=1)
    alone = ksampler(model=model, positive=pos, negative=neg, latent_image=third, denoise=1.0, ctx=ctx, **SETTINGS)
    # The same noise and the same mathematics, but U-Net calls of batch 2 (cond + uncond of one latent)
    # against batch 6: matmuls sum in another order (another CPU, another batch shape). Each denoised
    # prediction may differ by path_rtol; CFG scales the difference of two by cfg (1 + 2·cfg in all) and
    # the sampler adds the steps' errors. A wrong noise would be off by a relative error near 1.
    bound = path_rtol(model.unet) * (1 + 2 * SETTINGS["cfg"]) * SETTINGS["steps"]
    assert bound < 0.05
    assert rel_err(alone["samples"][0], whole["samples"][2]) <= bound


def test_sampling_reports_every_step_with_a_latent_preview(load, models_dir):
    model, _, _ = load("sd1")
    ctx = FakeContext(options_for(models_dir))
    pos, neg = prompts(load, ctx)
    ksampler(model=model, positive=pos, negative=neg, latent_image=latent(width=64, height=96), denoise=1.0,
             ctx=ctx, **SETTINGS)
    assert [(s, t) for s, t, _ in ctx.progress_calls] == [(1, 3), (2, 3), (3, 3)]
    preview = ctx.progress_calls[-1][2]
    assert isinstance(preview, np.ndarray) and preview.dtype == np.uint8 and preview.shape == (12, 8, 3)


@pytest.mark.parametrize("which", ["ksampler", "custom"])
def test_a_stop_request_takes_effect_after_the_current_step(load, models_dir, which):
    model, _, _ = load("sd1")
    ctx = FakeContext(options_for(models_dir), stop_after=2)
    pos, neg = prompts(load, FakeContext(options_for(models_dir)))
    with pytest.raises(Interrupted):
        if which == "ksampler":
            ksampler(model=model, positive=pos, negative=neg, latent_image=latent(), seed=1, steps=10, cfg=7.0,
                     sampler_name="euler", scheduler="normal", denoise=1.0, ctx=ctx)
        else:
            sampler_custom_advanced(
                noise=random_noise(noise_seed=1), guider=cfg_guider(model=model, positive=pos, negative=neg, cfg=7),
                sampler=ksampler_select(sampler_name="euler"),
                sigmas=basic_scheduler_node(model=model, scheduler="normal", steps=10, denoise=1.0),
                latent_image=latent(), ctx=ctx)
    assert [s for s, _, _ in ctx.progress_calls] == [1, 2]


def test_the_sampler_and_scheduler_lists_match_the_sampling_code():
    from nodes.sd.samplers import SAMPLER_NAMES
    from nodes.sd.schedulers import SCHEDULER_NAMES

    assert list(nodes_sampling.SAMPLER_NAMES) == list(SAMPLER_NAMES)
    assert list(nodes_sampling.SCHEDULER_NAMES) == list(SCHEDULER_NAMES)


def test_seed_params_are_randomized_after_each_run_by_default(registry):
    assert registry["KSampler"].param("seed").control_after_run == "randomize"
    assert registry["RandomNoise"].param("noise_seed").control_after_run == "randomize"
    assert registry["KSampler"].param("seed").max == 2**64 - 1


def test_sdxl_prompts_without_sizes_are_conditioned_on_the_sampled_image_size(load, ctx):
    model, _, _ = load("sdxl")
    pos, neg = prompts(load, ctx, "sdxl")

    def with_size(cond, size):
        return [[c, dict(o, width=size, height=size, crop_w=0, crop_h=0, target_width=size, target_height=size)]
                for c, o in cond]

    plain = ksampler(model=model, positive=pos, negative=neg, latent_image=latent(), denoise=1.0, ctx=ctx, **SETTINGS)
    at_64 = ksampler(model=model, positive=with_size(pos, 64), negative=with_size(neg, 64), latent_image=latent(),
                     denoise=1.0, ctx=ctx, **SETTINGS)
    at_1024 = ksampler(model=model, positive=with_size(pos, 1024), negative=with_size(neg, 1024),
                       latent_image=latent(), denoise=1.0, ctx=ctx, **SETTINGS)
    torch.testing.assert_close(plain["samples"], at_64["samples"], rtol=0, atol=0)
    assert not torch.allclose(plain["samples"], at_1024["samples"], atol=1e-4)


def test_interrupting_a_run_stops_the_sampler_after_the_current_step(session):
    from nodegraph.events import Progress

    graph = session.load(ROOT / "examples" / "txt2img.json")
    for assignment in ("4.ckpt_name=sd1.safetensors", "5.width=64", "5.height=64", "3.steps=10"):
        session.set(graph, assignment)
    steps = []

    def on_event(event):
        if isinstance(event, Progress):
            steps.append(event.step)
            session.interrupt()

    with pytest.raises(Interrupted):
        session.run(graph, on_event=on_event)
    assert steps == [1]
    assert not session.options.output_dir.exists()
