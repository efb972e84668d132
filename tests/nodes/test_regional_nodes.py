"""Regional prompts through the sampler's guidance, on fixed inputs against hand-computed values.

A toy U-Net whose noise prediction is one number per prompt (the first value of its context) makes the
guided prediction a weighted mean of those numbers: at x = 0 and σ = 1, D = −Σ wₑ·kₑ / Σ wₑ per latent
pixel, where wₑ is what the node asked for (area with its feathered edges, strength, mask). So the values
below are worked out by hand from the node's documented meaning.
"""
from __future__ import annotations

import pytest
import torch

from nodes.regions import (conditioning_average, conditioning_concat, conditioning_set_area,
                           conditioning_set_area_percentage, conditioning_set_area_strength, conditioning_set_mask,
                           conditioning_set_timestep_range)
from nodes.sd.diffusion_model import DiffusionModel
from nodes.sd.guidance import CFGGuider
from nodes.sd.model_sampling import ModelSamplingDiscrete

LATENT = (1, 4, 16, 16)  # a 128×128 image


class PromptValue(torch.nn.Module):
    """ε = the prompt's value k (its context's first number) at every pixel; records the crops it sees."""

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # gives the model a device and dtype
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x, timesteps, context=None, y=None):
        self.shapes.append(tuple(x.shape))
        return context[:, 0, 0].view(-1, 1, 1, 1).expand_as(x) + self.anchor


def prompt(k: float) -> list:
    return [[torch.full((1, 77, 8), float(k)), {}]]


def guided(positive, sigma=1.0, model=None):
    """The guided prediction at x = 0 (cfg 1: the negative prompt does not take part), channel 0."""
    model = model or DiffusionModel(PromptValue(), ModelSamplingDiscrete(), "sd1", 0.18215)
    guider = CFGGuider(model, positive, prompt(0), cfg=1.0)
    x = torch.zeros(LATENT)
    guider.prepare(x.shape, x.device)
    return guider(x, torch.tensor([sigma]))[0, 0]


def blend(values_and_weights) -> torch.Tensor:
    total = sum(w for _, w in values_and_weights)
    return -sum(k * w for k, w in values_and_weights) / total


def area_weight(strength: float) -> torch.Tensor:
    """The 8×8 area at latent x 8..15, y 0..7 of a 16×16 latent: edges inside the image (left, bottom)
    ramp over min(8, 8 // 4) = 2 pixels as 1/2, 1 — the top and right edges lie on the border."""
    cols = torch.tensor([0.5, 1, 1, 1, 1, 1, 1, 1])
    rows = torch.tensor([1, 1, 1, 1, 1, 1, 1, 0.5])
    return strength * rows[:, None] * cols[None, :]


def expected_area_blend(strength: float) -> torch.Tensor:
    expected = torch.full((16, 16), -1.0)
    w = area_weight(strength)
    expected[0:8, 8:16] = blend([(1.0, 1.0), (5.0, w)])
    return expected


def test_set_area_blends_the_prompt_into_its_rectangle_with_feathered_inner_edges():
    area = conditioning_set_area(prompt(5), width=64, height=64, x=64, y=0, strength=2.0)
    assert area[0][1]["area"] == (8, 8, 0, 8)
    torch.testing.assert_close(guided(prompt(1) + area), expected_area_blend(2.0))


def test_set_area_percentage_resolves_against_the_latent_size():
    area = conditioning_set_area_percentage(prompt(5), width=0.5, height=0.5, x=0.5, y=0.0, strength=2.0)
    torch.testing.assert_close(guided(prompt(1) + area), expected_area_blend(2.0))


def test_set_area_rounds_pixels_down_to_latent_pixels():
    area = conditioning_set_area(prompt(5), width=71, height=64, x=70, y=7, strength=1.0)
    assert area[0][1]["area"] == (8, 8, 0, 8)


def test_an_area_outside_the_image_changes_nothing():
    area = conditioning_set_area(prompt(5), width=64, height=64, x=0, y=200, strength=1.0)
    torch.testing.assert_close(guided(prompt(1) + area), torch.full((16, 16), -1.0))


def test_set_area_strength_weighs_a_prompt_against_the_others():
    strong = conditioning_set_area_strength(prompt(3), strength=3.0)
    torch.testing.assert_close(guided(prompt(1) + strong), torch.full((16, 16), -(1 + 3 * 3) / 4))


def block_mask(value_left: float, value_right: float) -> torch.Tensor:
    """A 128×128 mask constant on the left and right halves: bilinear resizing to 16×16 (samples at
    8i + 3.5) keeps each half's value exactly."""
    mask = torch.full((1, 128, 128), value_right)
    mask[..., :64] = value_left
    return mask


@pytest.mark.parametrize("left,strength", [(1.0, 2.0), (0.25, 1.0), (0.5, 4.0)])
def test_set_mask_weighs_the_prompt_per_pixel_by_mask_times_strength(left, strength):
    masked = conditioning_set_mask(prompt(5), mask=block_mask(left, 0.0), strength=strength,
                                   set_cond_area="default")
    expected = torch.full((16, 16), -1.0)
    expected[:, :8] = blend([(1.0, 1.0), (5.0, left * strength)])
    torch.testing.assert_close(guided(prompt(1) + masked), expected)


def test_set_mask_of_a_two_dimensional_mask_is_stored_as_a_batch_of_one():
    masked = conditioning_set_mask(prompt(5), mask=torch.ones(32, 32), strength=1.0, set_cond_area="default")
    assert masked[0][1]["mask"].shape == (1, 32, 32) and masked[0][1]["mask_strength"] == 1.0


def test_set_mask_with_mask_bounds_runs_the_prompt_on_the_masks_rectangle():
    """Mask on image rows 16..47 and columns 64..127 → latent rows 2..5, columns 8..15; the area is its
    bounding box, at least 8 latent pixels high: (8, 8, y 2, x 8)."""
    mask = torch.zeros(1, 128, 128)
    mask[:, 16:48, 64:128] = 1.0
    masked = conditioning_set_mask(prompt(5), mask=mask, strength=1.0, set_cond_area="mask bounds")
    model = DiffusionModel(PromptValue(), ModelSamplingDiscrete(), "sd1", 0.18215)
    guider = CFGGuider(model, prompt(1) + masked, prompt(0), cfg=1.0)
    guider.prepare(LATENT, torch.device("cpu"))
    assert guider.conds["positive"][1].area == (8, 8, 2, 8)
    out = guider(torch.zeros(LATENT), torch.tensor([1.0]))[0, 0]
    assert (1, 4, 8, 8) in model.unet.shapes
    expected = torch.full((16, 16), -1.0)
    expected[2:6, 8:16] = -3.0  # mask 1 there: (1 + 5) / 2
    torch.testing.assert_close(out, expected)


def test_timestep_range_keeps_a_prompt_to_its_share_of_the_schedule():
    """Active while σ is between the σ reached after 50% and after 100% of the schedule."""
    late = conditioning_set_timestep_range(prompt(5), start=0.5, end=1.0)
    assert late[0][1]["start_percent"] == 0.5 and late[0][1]["end_percent"] == 1.0
    sigma_half = ModelSamplingDiscrete().percent_to_sigma(0.5)
    high, low = sigma_half * 1.5, sigma_half * 0.5
    torch.testing.assert_close(guided(prompt(1) + late, sigma=high), torch.full((16, 16), -1.0 * high))
    torch.testing.assert_close(guided(prompt(1) + late, sigma=low), torch.full((16, 16), -3.0 * low))


def test_timestep_range_over_the_whole_schedule_is_always_active():
    always = conditioning_set_timestep_range(prompt(5), start=0.0, end=1.0)
    for sigma in (14.0, 0.03):
        torch.testing.assert_close(guided(prompt(1) + always, sigma=sigma), torch.full((16, 16), -3.0 * sigma))


def test_setting_options_leaves_the_input_conditioning_unchanged():
    base = prompt(1)
    conditioning_set_area(base, width=64, height=64, x=0, y=0, strength=2.0)
    assert base[0][1] == {}


# -- average and concat --------------------------------------------------------------------------------------
def test_conditioning_average_mixes_tokens_and_pooled_outputs():
    to = [[torch.full((1, 4, 3), 2.0), {"pooled_output": torch.full((1, 2), 10.0), "strength": 2.0}]]
    frm = [[torch.full((1, 4, 3), 6.0), {"pooled_output": torch.full((1, 2), 20.0)}]]
    (context, options), = conditioning_average(to, frm, 0.25)
    torch.testing.assert_close(context, torch.full((1, 4, 3), 2 * 0.25 + 6 * 0.75))
    torch.testing.assert_close(options["pooled_output"], torch.full((1, 2), 10 * 0.25 + 20 * 0.75))
    assert options["strength"] == 2.0


def test_conditioning_average_cuts_a_longer_from_and_pads_a_shorter_one_with_zeros():
    to = [[torch.ones(1, 3, 2), {}]]
    longer = conditioning_average(to, [[torch.full((1, 5, 2), 3.0), {}]], 0.5)[0][0]
    shorter = conditioning_average(to, [[torch.full((1, 2, 2), 3.0), {}]], 0.5)[0][0]
    torch.testing.assert_close(longer, torch.full((1, 3, 2), 2.0))
    torch.testing.assert_close(shorter[0, :, 0], torch.tensor([2.0, 2.0, 0.5]))


def test_conditioning_average_gives_pooled_from_to_an_entry_without_one():
    frm = [[torch.ones(1, 1, 2), {"pooled_output": torch.ones(1, 2)}]]
    out = conditioning_average([[torch.ones(1, 1, 2), {}]], frm, 0.3)
    torch.testing.assert_close(out[0][1]["pooled_output"], torch.ones(1, 2))


def test_conditioning_concat_appends_the_first_from_entrys_tokens():
    to = [[torch.zeros(1, 2, 3), {"area": (8, 8, 0, 0)}], [torch.ones(1, 4, 3), {}]]
    frm = [[torch.full((1, 1, 3), 7.0), {}], [torch.full((1, 1, 3), 9.0), {}]]
    out = conditioning_concat(to, frm)
    assert [c.shape[1] for c, _ in out] == [3, 5] and out[0][1] == {"area": (8, 8, 0, 0)}
    assert out[1][0][0, -1, 0] == 7.0


def test_mixing_encodings_of_different_text_encoders_is_refused():
    with pytest.raises(ValueError, match=r"\(1, 2, 3\) and conditioning_from \(1, 2, 5\) come from different text "
                                         "encoders"):
        conditioning_concat([[torch.zeros(1, 2, 3), {}]], [[torch.zeros(1, 2, 5), {}]])
