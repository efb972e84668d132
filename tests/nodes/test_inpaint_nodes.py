"""The inpainting nodes on fixed inputs against values worked out by hand: VAEEncodeForInpaint's grey fill,
grown noise mask, crop and mask resizing; SetLatentNoiseMask; InpaintModelConditioning's and
InstructPixToPixConditioning's conditioning and latents; ImagePadForOutpaint feeding VAEEncodeForInpaint.

The VAE is a real (tiny, random) one that records the pixels it is asked to encode."""
from __future__ import annotations

import pytest
import torch
from nodekit import FakeContext, options_for

from nodegraph.errors import NodeError
from nodes.image_ops import image_pad_for_outpaint
from nodes.inpaint import (inpaint_model_conditioning, instruct_pix_to_pix_conditioning, set_latent_noise_mask,
                           vae_encode_for_inpaint)
from nodes.sd.testing import random_vae
from nodes.sd.vae import VAE


class RecordingVAE(VAE):
    """A real VAE that keeps every batch of pixels it encodes."""

    def __init__(self):
        super().__init__(random_vae(seed=3))
        self.seen: list[torch.Tensor] = []

    def encode(self, images, generator=None, sample=False):
        self.seen.append(images.clone())
        return super().encode(images, generator, sample)


@pytest.fixture
def ctx(tmp_path):
    return FakeContext(options_for(tmp_path))


@pytest.fixture
def vae():
    return RecordingVAE()


def ramp_image(h, w, batch=1):
    """Pixel (y, x) of channel c is (y·w + x + c) / (3·h·w): every pixel distinct, all in 0..1."""
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    base = (y * w + x).float()
    return torch.stack([(base + c) / (3 * h * w) for c in range(3)], -1).expand(batch, h, w, 3).clone()


# -- VAEEncodeForInpaint ------------------------------------------------------------------------------
def test_masked_pixels_become_mid_grey_and_the_rest_is_encoded_unchanged(vae, ctx):
    image = ramp_image(16, 16)
    mask = torch.zeros(1, 16, 16)
    mask[0, 4:8, 2:10] = 1.0
    mask[0, 12, 12] = 0.6  # rounds to 1: grey
    mask[0, 13, 13] = 0.4  # rounds to 0: kept
    out = vae_encode_for_inpaint(image, vae, mask, 0, ctx)
    expected = image.clone()
    expected[0, 4:8, 2:10] = 0.5
    expected[0, 12, 12] = 0.5
    assert torch.equal(vae.seen[0], expected)
    torch.testing.assert_close(out["samples"], VAE.encode(vae, expected))


def test_grow_mask_by_zero_gives_the_rounded_mask(vae, ctx):
    mask = torch.zeros(1, 16, 16)
    mask[0, 3, 5] = 0.7
    mask[0, 9, 9] = 0.3
    noise_mask = vae_encode_for_inpaint(ramp_image(16, 16), vae, mask, 0, ctx)["noise_mask"]
    expected = torch.zeros(1, 1, 16, 16)
    expected[0, 0, 3, 5] = 1.0
    assert torch.equal(noise_mask, expected)


def test_an_even_grow_box_reaches_two_pixels_up_and_left_and_three_down_and_right(vae, ctx):
    """grow_mask_by 6 sums a 6×6 box with padding 3: output pixel i takes input pixels i−3 … i+2, so the
    one masked pixel at (5, 5) marks rows and columns 5−2 … 5+3."""
    mask = torch.zeros(1, 16, 16)
    mask[0, 5, 5] = 1.0
    noise_mask = vae_encode_for_inpaint(ramp_image(16, 16), vae, mask, 6, ctx)["noise_mask"]
    expected = torch.zeros(1, 1, 16, 16)
    expected[0, 0, 3:9, 3:9] = 1.0
    assert torch.equal(noise_mask, expected)
    # only the pixel itself was filled grey: growing acts on the noise mask, not on the pixels
    assert int((vae.seen[0] == 0.5).all(-1).sum()) == 1


def test_an_odd_grow_box_is_centred_and_clipped_at_the_border(vae, ctx):
    mask = torch.zeros(1, 16, 16)
    mask[0, 0, 10] = 1.0
    noise_mask = vae_encode_for_inpaint(ramp_image(16, 16), vae, mask, 3, ctx)["noise_mask"]
    expected = torch.zeros(1, 1, 16, 16)
    expected[0, 0, 0:2, 9:12] = 1.0
    assert torch.equal(noise_mask, expected)


def test_sides_that_are_not_multiples_of_8_are_cut_keeping_the_middle(vae, ctx):
    image = ramp_image(20, 27)  # → 16×24, offsets (20 % 8) // 2 = 2 rows and (27 % 8) // 2 = 1 column
    mask = torch.zeros(1, 20, 27)
    mask[0, 2, 1] = 1.0  # the first pixel kept
    out = vae_encode_for_inpaint(image, vae, mask, 0, ctx)
    expected = image[:, 2:18, 1:25].clone()
    expected[0, 0, 0] = 0.5
    assert torch.equal(vae.seen[0], expected)
    assert out["noise_mask"].shape == (1, 1, 16, 24) and out["noise_mask"][0, 0, 0, 0] == 1
    assert out["samples"].shape == (1, 4, 2, 3)


def test_a_mask_of_another_size_is_resized_bilinearly_to_the_image(vae, ctx):
    """8×8 mask, left half 1, to 16×16: column x samples source (x + ½)/2 − ½, so column 7 is ¾ (→ 1)
    and column 8 is ¼ (→ 0): the grey fill covers columns 0 … 7."""
    mask = torch.zeros(1, 8, 8)
    mask[0, :, :4] = 1.0
    out = vae_encode_for_inpaint(ramp_image(16, 16), vae, mask, 0, ctx)
    expected = torch.zeros(1, 1, 16, 16)
    expected[..., :8] = 1.0
    assert torch.equal(out["noise_mask"], expected)
    assert bool((vae.seen[0][0, :, :8] == 0.5).all()) and not bool((vae.seen[0][0, :, 8:] == 0.5).any())


def test_one_mask_applies_to_every_image_of_a_batch(vae, ctx):
    image = ramp_image(8, 8, batch=3)
    mask = torch.zeros(8, 8)
    mask[2:4, 2:4] = 1
    out = vae_encode_for_inpaint(image, vae, mask, 0, ctx)
    assert bool((vae.seen[0][:, 2:4, 2:4] == 0.5).all())
    assert out["samples"].shape[0] == 3 and out["noise_mask"].shape == (1, 1, 8, 8)


def test_a_mask_batch_that_fits_neither_way_is_refused_naming_both_shapes(vae, ctx):
    with pytest.raises(NodeError, match=r"pixels \(2, 8, 8, 3\) and mask \(3, 8, 8\)"):
        vae_encode_for_inpaint(ramp_image(8, 8, batch=2), vae, torch.zeros(3, 8, 8), 6, ctx)


def test_an_all_zero_mask_encodes_the_image_unchanged_and_masks_nothing(vae, ctx):
    image = ramp_image(16, 16)
    out = vae_encode_for_inpaint(image, vae, torch.zeros(1, 16, 16), 6, ctx)
    assert torch.equal(vae.seen[0], image)
    assert not out["noise_mask"].any()


def test_outpaint_padding_then_inpaint_encoding_fills_the_new_border_grey(vae, ctx):
    """ImagePadForOutpaint's mask is 1 on the new border and (with feathering) fades inside the image;
    VAEEncodeForInpaint greys every pixel whose mask rounds to 1."""
    image = ramp_image(16, 12)  # feathering 4 applies: 2·4 is below both sides
    canvas, mask = image_pad_for_outpaint(image, 4, 0, 0, 0, 4)  # inner columns: ((4 − d)/4)² = 1, .5625, .25, .0625
    vae_encode_for_inpaint(canvas, vae, mask, 0, ctx)
    seen = vae.seen[0][0]
    assert seen.shape == (16, 16, 3)
    assert bool((seen[:, :6] == 0.5).all())  # the 4 new columns, and d = 0, 1 of the image (1, 0.5625)
    torch.testing.assert_close(seen[:, 6:], image[0, :, 2:], rtol=0, atol=0)


# -- SetLatentNoiseMask -----------------------------------------------------------------------------------
def test_set_latent_noise_mask_adds_the_mask_as_b_1_h_w_and_keeps_the_rest():
    latent = {"samples": torch.ones(2, 4, 4, 4), "batch_index": [3, 4]}
    mask = torch.zeros(32, 32)
    mask[:16] = 1.0
    out = set_latent_noise_mask(latent, mask)
    assert out["noise_mask"].shape == (1, 1, 32, 32) and torch.equal(out["noise_mask"][0, 0], mask)
    assert out["samples"] is latent["samples"] and out["batch_index"] == [3, 4]
    assert "noise_mask" not in latent


def test_set_latent_noise_mask_keeps_a_batch_of_masks():
    out = set_latent_noise_mask({"samples": torch.zeros(3, 4, 2, 2)}, torch.rand(3, 16, 16))
    assert out["noise_mask"].shape == (3, 1, 16, 16)


# -- InpaintModelConditioning, InstructPixToPixConditioning ------------------------------------------------
def prompts():
    a = [[torch.ones(1, 3, 8), {"strength": 0.5}]]
    b = [[torch.zeros(1, 3, 8), {}], [torch.ones(1, 5, 8), {"area": (1, 1, 0, 0)}]]
    return a, b


@pytest.mark.parametrize("noise_mask", [True, False])
def test_inpaint_model_conditioning_adds_the_grey_filled_latent_and_the_mask(vae, ctx, noise_mask):
    image = ramp_image(16, 16)
    mask = torch.zeros(1, 16, 16)
    mask[0, 8:, 4:12] = 1.0
    positive, negative = prompts()
    pos, neg, latent = inpaint_model_conditioning(positive, negative, vae, image, mask, noise_mask, ctx)
    filled = image.clone()
    filled[0, 8:, 4:12] = 0.5
    assert torch.equal(vae.seen[0], filled)  # the concat latent's pixels
    assert torch.equal(vae.seen[1], image)  # the latent is the whole image
    concat_latent = VAE.encode(vae, filled)
    for out, original in ((pos, positive), (neg, negative)):
        assert len(out) == len(original)
        for (context, options), (context0, options0) in zip(out, original):
            assert context is context0 and {k: options[k] for k in options0} == options0
            torch.testing.assert_close(options["concat_latent_image"], concat_latent)
            assert torch.equal(options["concat_mask"], mask.view(1, 1, 16, 16))
    torch.testing.assert_close(latent["samples"], VAE.encode(vae, image))
    assert ("noise_mask" in latent) == noise_mask
    if noise_mask:
        assert torch.equal(latent["noise_mask"], mask.view(1, 1, 16, 16))


def test_instruct_pix_to_pix_conditioning_adds_the_image_latent_and_gives_an_empty_latent(vae, ctx):
    image = ramp_image(20, 16)  # cut to 16×16, 2 rows off the top
    positive, negative = prompts()
    pos, neg, latent = instruct_pix_to_pix_conditioning(positive, negative, vae, image, ctx)
    expected = VAE.encode(vae, image[:, 2:18])
    for out in (pos, neg):
        for _, options in out:
            torch.testing.assert_close(options["concat_latent_image"], expected)
            assert "concat_mask" not in options
    assert torch.equal(latent["samples"], torch.zeros(1, 4, 2, 2))
    assert set(latent) == {"samples"}


def test_inpaint_model_conditioning_refuses_mismatched_batches(vae, ctx):
    positive, negative = prompts()
    with pytest.raises(NodeError, match=r"pixels \(1, 8, 8, 3\) and mask \(2, 8, 8\)"):
        inpaint_model_conditioning(positive, negative, vae, ramp_image(8, 8), torch.zeros(2, 8, 8), True, ctx)

