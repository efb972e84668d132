"""Sampling with a noise mask, for every sampler: against ComfyUI's stated per-step blend (KSamplerX0Inpaint)
written out here on a toy denoiser, and its promises — outside the mask the result is the latent, an all-zero
mask changes nothing and never makes NaN, masks of another size are resized, and the extra input channels of
inpainting and InstructPix2Pix U-Nets are what ComfyUI feeds them.

ComfyUI's blend, for the latent L (in the model's space), noise n, mask m resized bilinearly to the latent:

    before each model call   x ← x·m + (L + σ·n)·(1 − m)      ("ddim": n drawn anew from seed + 1)
    after it                 D ← D·m + L·(1 − m)
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nodes.sd import ksampler as K
from nodes.sd.diffusion_model import DiffusionModel
from nodes.sd.guidance import CFGGuider
from nodes.sd.model_sampling import ModelSamplingDiscrete
from nodes.sd.samplers import SAMPLER_NAMES, Sampler

from conftest import ToyUNet

SCALE = 0.5  # a latent scale that is not 1, so scaling in and out is exercised


def make_model(unet=None):
    return DiffusionModel(unet or ToyUNet(), ModelSamplingDiscrete(), "sd1", SCALE)


def prompt(seed):
    return [[torch.randn(1, 77, 8, generator=torch.Generator().manual_seed(seed)), {}]]


POS, NEG = prompt(1), prompt(2)
LATENT = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(5))
NOISE = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(6))


def soft_mask():
    """A 64×64 image-space mask: 0 on the left third, 1 on the right third, a ramp between."""
    x = torch.linspace(-1.0, 2.0, 64).clamp(0, 1)
    return x.expand(1, 64, 64).clone()


def comfyui_blend(guider, mask, latent, noise, sampler, sigmas, seed):
    """ComfyUI's KSAMPLER.sample with KSamplerX0Inpaint, transcribed from its statement."""
    ms = guider.model.model_sampling
    m = F.interpolate(mask.reshape(-1, 1, 64, 64), size=(8, 8), mode="bilinear").expand(2, 4, 8, 8)
    lat = latent * SCALE
    if sampler.name == "ddim":
        noise_blend = torch.randn(noise.shape, generator=torch.manual_seed(seed + 1))
    else:
        noise_blend = noise

    def inpainting(x, sigma, **kwargs):
        s = sigma.view(-1, 1, 1, 1)
        x = x * m + (lat + s * noise_blend) * (1 - m)
        return guider(x, sigma, **kwargs) * m + lat * (1 - m)

    guider.prepare(latent.shape, torch.device("cpu"))
    x = lat + noise * sigmas[0]
    out = sampler(inpainting, x, sigmas, extra_args={"seed": seed, "model_sampling": ms})
    return out / SCALE


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_masked_sampling_is_comfyuis_per_step_blend(name):
    model = make_model()
    sigmas = K.ksampler_sigmas(model.model_sampling, "karras", 4, name, denoise=0.7)
    mask = soft_mask()
    ours = CFGGuider(model, POS, NEG, 3.0).sample(NOISE, LATENT, Sampler(name), sigmas, denoise_mask=mask, seed=11)
    ref = comfyui_blend(CFGGuider(model, POS, NEG, 3.0), mask, LATENT, NOISE, Sampler(name), sigmas, seed=11)
    outside = torch.zeros(8, dtype=torch.bool)
    outside[:3] = True  # latent columns 0-2 see only mask 0; there the result is the latent itself (see below)
    # The same float32 operations in the same order, up to where the mask's scaled-in latent is divided back:
    # one rounding per step, a few steps.
    torch.testing.assert_close(ours[..., ~outside], ref[..., ~outside], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(ours[..., 5:], LATENT[..., 5:], atol=1e-2)  # the masked part was repainted


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_outside_the_mask_the_result_is_the_latent_bit_for_bit(name):
    out = K.sample(make_model(), {"samples": LATENT, "noise_mask": soft_mask()}, POS, NEG, seed=3, steps=4,
                   cfg=3.0, sampler_name=name, scheduler="karras", denoise=0.8)["samples"]
    assert torch.equal(out[..., :3], LATENT[..., :3])


@pytest.mark.parametrize("name", SAMPLER_NAMES)
@pytest.mark.parametrize("denoise", [1.0, 0.6])
def test_an_all_zero_mask_changes_nothing_and_makes_no_nan(name, denoise):
    latent = {"samples": LATENT, "noise_mask": torch.zeros(1, 64, 64)}
    out = K.sample(make_model(), latent, POS, NEG, seed=3, steps=4, cfg=3.0, sampler_name=name,
                   scheduler="karras", denoise=denoise)["samples"]
    assert torch.equal(out, LATENT)


def test_the_blend_ends_near_the_latent_also_where_comfyui_leaves_the_last_noise_level():
    """dpm_fast stops at the last non-zero σ; ComfyUI's result keeps that noise outside the mask, ours not."""
    model = make_model()
    sigmas = K.ksampler_sigmas(model.model_sampling, "karras", 4, "dpm_fast", denoise=0.7)
    ref = comfyui_blend(CFGGuider(model, POS, NEG, 3.0), soft_mask(), LATENT, NOISE, Sampler("dpm_fast"), sigmas, 1)
    # ComfyUI's unmasked columns are L + σ_min·n: off by about σ_min/scale times the noise
    expected = (NOISE[..., :3] * sigmas[-2] / SCALE).abs().max()
    assert torch.isclose((ref[..., :3] - LATENT[..., :3]).abs().max(), expected, rtol=1e-3)


def test_a_mask_of_another_size_is_resized_bilinearly_to_the_latent():
    """A 16×16 mask and its 64×64 nearest-neighbour enlargement differ, but both become masks over 8×8
    latent pixels by bilinear resizing: sampling with the small one equals sampling with its own resize."""
    small = torch.zeros(1, 16, 16)
    small[:, 4:12, 8:] = 1.0
    resized = F.interpolate(small[None], size=(8, 8), mode="bilinear")[0]
    run = {}
    for key, mask in (("small", small), ("resized", resized)):
        run[key] = K.sample(make_model(), {"samples": LATENT, "noise_mask": mask}, POS, NEG, seed=3, steps=3,
                            cfg=3.0, sampler_name="euler", scheduler="karras", denoise=0.8)["samples"]
    assert torch.equal(run["small"], run["resized"])
    assert torch.equal(run["small"][..., :4], LATENT[..., :4])


def test_a_batch_of_masks_is_cut_or_repeated_to_the_latents_batch():
    three = torch.zeros(3, 64, 64)
    three[0, :, 32:] = 1.0
    three[1, :, :32] = 1.0
    out = K.sample(make_model(), {"samples": LATENT, "noise_mask": three}, POS, NEG, seed=3, steps=3, cfg=3.0,
                   sampler_name="euler", scheduler="karras", denoise=0.8)["samples"]
    assert torch.equal(out[0, ..., :4], LATENT[0, ..., :4]) and torch.equal(out[1, ..., 4:], LATENT[1, ..., 4:])


# -- inpainting and InstructPix2Pix U-Nets ----------------------------------------------------------
class ConcatToyUNet(ToyUNet):
    """A ToyUNet with an inpainting U-Net's 9 (or ip2p's 8) input channels: records what it is fed."""

    def __init__(self, in_channels):
        super().__init__()
        self.config = type("Config", (), {"in_channels": in_channels})()
        self.fed: list[torch.Tensor] = []

    def forward(self, x, timesteps, context=None, y=None):
        self.fed.append(x.clone())
        if x.shape[1] > 4:
            x = x[:, :4] + x[:, 4:].mean(1, keepdim=True)
        return super().forward(x, timesteps, context, y)


def run_concat(in_channels, latent, positive=POS, negative=NEG, steps=2, denoise=1.0):
    unet = ConcatToyUNet(in_channels)
    K.sample(make_model(unet), latent, positive, negative, seed=3, steps=steps, cfg=3.0, sampler_name="euler",
             scheduler="karras", denoise=denoise)
    return unet


def test_an_inpainting_unet_without_a_mask_gets_comfyuis_defaults():
    """Mask of ones and ComfyUI's blank-image latent (0.8223, −0.6876, 0.6364, 0.1380)."""
    unet = run_concat(9, {"samples": torch.zeros(2, 4, 8, 8)})
    blank = torch.tensor([0.8223, -0.6876, 0.6364, 0.1380]).view(1, 4, 1, 1).expand(4, 4, 8, 8)
    for fed in unet.fed:
        assert fed.shape == (4, 9, 8, 8)  # cond and uncond of two latents in one call
        assert torch.equal(fed[:, 4], torch.ones(4, 8, 8)) and torch.equal(fed[:, 5:], blank)


def test_an_inpainting_unet_gets_the_rounded_noise_mask_and_the_scaled_in_latent():
    unet = run_concat(9, {"samples": LATENT, "noise_mask": soft_mask()}, denoise=0.7)
    mask = F.interpolate(soft_mask()[None], size=(8, 8), mode="bilinear")[0].round()
    for fed in unet.fed:
        assert torch.equal(fed[:, 4], mask.expand(4, 8, 8))
        assert torch.equal(fed[:, 5:], torch.cat([LATENT, LATENT]) * SCALE)


def test_inpaint_model_conditioning_options_take_precedence_and_follow_areas():
    """concat_mask and concat_latent_image (pixel-size mask, raw latent) from the conditioning; an entry with an
    area sees the same crop of them as of the latent."""
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 32:, :] = 1.0
    image = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(8))
    options = {"concat_mask": mask, "concat_latent_image": image}
    positive = [[POS[0][0], dict(options)], [POS[0][0], {**options, "area": (4, 4, 2, 2)}]]
    negative = [[NEG[0][0], dict(options)]]  # (the node gives both the same options)
    unet = run_concat(9, {"samples": torch.zeros(1, 4, 8, 8)}, positive=positive, negative=negative, steps=1)
    whole = torch.cat([f for f in unet.fed if f.shape[-1] == 8])
    area = torch.cat([f for f in unet.fed if f.shape[-1] == 4])
    assert len(whole) == 2 and len(area) == 2  # each area entry gets a counterpart of the same area
    for fed in whole:
        assert torch.equal(fed[4], mask[0, 0, ::8, ::8]) and torch.equal(fed[5:], image[0] * SCALE)
    for fed in area:
        assert torch.equal(fed[4:], whole[0, 4:, 2:6, 2:6])


def test_an_ip2p_unet_gets_the_image_latent_as_it_is_or_zeros():
    image = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(8))
    with_image = run_concat(8, {"samples": torch.zeros(1, 4, 8, 8)},
                            positive=[[POS[0][0], {"concat_latent_image": image}]], steps=1)
    without = run_concat(8, {"samples": torch.zeros(1, 4, 8, 8)}, steps=1)
    rows = with_image.fed[0][:, 4:]  # the positive (with the image) and the negative (without: zeros)
    assert sorted(bool(torch.equal(r, image[0])) for r in rows) == [False, True]
    assert sorted(bool(torch.equal(r, torch.zeros(4, 8, 8))) for r in rows) == [False, True]
    assert torch.equal(without.fed[0][:, 4:], torch.zeros(2, 4, 8, 8))


def test_a_plain_unet_ignores_the_inpainting_options():
    options = {"concat_mask": torch.ones(1, 1, 64, 64), "concat_latent_image": torch.ones(1, 4, 8, 8)}
    plain = K.sample(make_model(), {"samples": LATENT}, [[POS[0][0], options]], NEG, seed=3, steps=2, cfg=3.0,
                     sampler_name="euler", scheduler="karras", denoise=0.7)["samples"]
    bare = K.sample(make_model(), {"samples": LATENT}, POS, NEG, seed=3, steps=2, cfg=3.0,
                    sampler_name="euler", scheduler="karras", denoise=0.7)["samples"]
    assert torch.equal(plain, bare)


def test_a_latent_that_does_not_fit_the_unet_is_an_error_naming_the_checkpoint():
    from nodegraph.errors import NodeError

    model = make_model(ConcatToyUNet(9))
    model.source = "sd15-inpainting.safetensors"
    with pytest.raises(NodeError, match=r"checkpoint sd15-inpainting\.safetensors is an inpainting U-Net.*"
                                        r"latent has 9 channels"):
        K.sample(model, {"samples": torch.zeros(1, 9, 8, 8)}, POS, NEG, seed=3, steps=2, cfg=3.0,
                 sampler_name="euler", scheduler="karras")
    plain = make_model(ConcatToyUNet(4))
    plain.source = "sd15.safetensors"
    with pytest.raises(NodeError, match=r"checkpoint sd15\.safetensors is a U-Net with 4 input channels.*"
                                        r"latent has 9 channels"):
        K.sample(plain, {"samples": torch.zeros(1, 9, 8, 8)}, POS, NEG, seed=3, steps=2, cfg=3.0,
                 sampler_name="euler", scheduler="karras")
