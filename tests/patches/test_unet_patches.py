"""U-Net patches against their stated formulas on a tiny U-Net: FreeU (per block, Fourier filter incl.),
FreeU_V2, Kohya's deep shrink window, HyperTile's tiling of attention, ToMe's bipartite merge, and the
attention-multiply weight patches (U-Net and text encoders)."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from patchkit import latent, prompt, tiny_unet

from nodes.sd.attention import attention
from nodes.sd.patches import NO_PATCHES, UNetHooks, weights_applied
from nodes.sd.tome import TokenMerging, bipartite_merge, destination_mask
from nodes.sd.unet_patches import DeepShrink, FreeU, HyperTile, fourier_filter, random_divisor

TIMESTEPS = torch.tensor([500.0, 500.0])


def run_unet(unet, patches, sigma=2.0, x=None):
    x = latent(3) if x is None else x
    context = torch.cat([prompt(1)[0][0], prompt(2)[0][0]])[: x.shape[0]]
    hooks = UNetHooks(patches, torch.full((x.shape[0],), sigma), [0, 1][: x.shape[0]])
    with torch.no_grad():
        return unet(x, TIMESTEPS[: x.shape[0]], context, hooks=hooks)


def spy(store):
    def hook(h, skip, hooks):
        store.append((hooks.block[1], h.clone(), skip.clone()))
        return h, skip
    return hook


# -- FreeU ------------------------------------------------------------------------------------------------
def numpy_fourier_filter(x: np.ndarray, threshold: int, scale: float) -> np.ndarray:
    """FreeU's skip filter written out: centred 2-D spectrum × scale inside the (2t)² centre square."""
    spectrum = np.fft.fftshift(np.fft.fft2(x.astype(np.float64)), axes=(-2, -1))
    h, w = x.shape[-2:]
    spectrum[..., h // 2 - threshold:h // 2 + threshold, w // 2 - threshold:w // 2 + threshold] *= scale
    return np.fft.ifft2(np.fft.ifftshift(spectrum, axes=(-2, -1))).real


@pytest.mark.parametrize("size", [(8, 8), (7, 10)])
def test_fourier_filter_scales_the_centred_low_frequencies(size):
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(0))
    out = fourier_filter(x, 1, 0.2)
    # float32 FFT round trip of values of order 1: errors ~1e-6
    np.testing.assert_allclose(out.numpy(), numpy_fourier_filter(x.numpy(), 1, 0.2), rtol=0, atol=1e-5)
    # scale 0.2 on the 4 central frequencies (incl. the mean, DC): the mean drops to 0.2 of itself
    np.testing.assert_allclose(out.mean(dim=(-2, -1)).numpy(), 0.2 * x.mean(dim=(-2, -1)).numpy(), atol=1e-5)


@pytest.mark.parametrize("version", [1, 2])
def test_freeu_changes_exactly_the_two_deep_levels_output_blocks(version):
    """Spies before and after FreeU at every output block: b on the first half of h at 4× (b1) and 2× (b2)
    the base channels, FFT-filtered skip with s1/s2 there, untouched everywhere else."""
    unet = tiny_unet()
    b1, b2, s1, s2 = 1.5, 1.25, 0.5, 0.25
    before, after = [], []
    patches = NO_PATCHES.add(output_block_patch=spy(before))
    patches = patches.add(output_block_patch=FreeU(32, b1, b2, s1, s2, version)).add(output_block_patch=spy(after))
    run_unet(unet, patches)
    scales = {128: (b1, s1), 64: (b2, s2)}
    changed = {}
    for (index, h, skip), (_, h_after, skip_after) in zip(before, after):
        if h.shape[1] not in scales:
            assert torch.equal(h_after, h) and torch.equal(skip_after, skip)
            continue
        changed[index] = h.shape[1]
        b, s = scales[h.shape[1]]
        half = h.shape[1] // 2
        if version == 1:
            factor = b
        else:
            mean = h.mean(1, keepdim=True).numpy()
            low = mean.reshape(2, -1).min(1).reshape(2, 1, 1, 1)
            high = mean.reshape(2, -1).max(1).reshape(2, 1, 1, 1)
            factor = torch.from_numpy((b - 1) * (mean - low) / (high - low) + 1)
        torch.testing.assert_close(h_after[:, :half], h[:, :half] * factor, rtol=1e-6, atol=1e-6)
        assert torch.equal(h_after[:, half:], h[:, half:])
        np.testing.assert_allclose(skip_after.numpy(), numpy_fourier_filter(skip.numpy(), 1, s), atol=1e-4)
    # two output blocks per level; a level's first block gets the level below's channels (upsampled)
    assert changed == {0: 128, 1: 128, 2: 128, 3: 64, 4: 64}


# -- deep shrink -------------------------------------------------------------------------------------------
def shapes_after(unet, patch, sigma, after_skip=True):
    seen = {}

    def record(h, hooks):
        seen[hooks.block[1]] = tuple(h.shape[-2:])
        return h

    def record_skip(h, skip, hooks):
        seen[("skip", hooks.block[1])] = tuple(skip.shape[-2:])
        return h, skip

    hook = "input_block_patch_after_skip" if after_skip else "input_block_patch"
    patches = NO_PATCHES.add(**{hook: patch.input_patch}).add(input_block_patch_after_skip=record)
    patches = patches.add(output_block_patch=patch.output_patch).add(output_block_patch=record_skip)
    return run_unet(unet, patches, sigma), seen


def test_deep_shrink_downscales_the_chosen_block_inside_its_sigma_window_only():
    unet = tiny_unet()
    patch = DeepShrink(3, 2.0, sigma_start=5.0, sigma_end=1.0, downscale_method="bicubic", upscale_method="bicubic")
    out, seen = shapes_after(unet, patch, sigma=3.0)
    assert seen[2] == (8, 8) and seen[3] == (4, 4) and seen[5] == (2, 2)  # level 1 and below at half size
    assert seen[("skip", 2)] == (8, 8)  # block 3's own skip (output block 2) was kept full size
    assert out.shape == (2, 4, 16, 16) and torch.isfinite(out).all()
    for sigma in (5.5, 0.9):  # outside [sigma_end, sigma_start]: the plain U-Net
        untouched, seen = shapes_after(unet, patch, sigma)
        assert seen[3] == (8, 8)
        assert torch.equal(untouched, run_unet(unet, NO_PATCHES, sigma))
    assert shapes_after(unet, patch, 5.0)[1][3] == (4, 4) and shapes_after(unet, patch, 1.0)[1][3] == (4, 4)


def test_deep_shrink_before_the_skip_shrinks_the_skip_too_and_resizes_as_asked():
    unet = tiny_unet()
    patch = DeepShrink(3, 2.0, 5.0, 1.0, "area", "nearest-exact")
    _, seen = shapes_after(unet, patch, sigma=3.0, after_skip=False)
    assert seen[("skip", 2)] == (4, 4)
    h = latent(1, (1, 64, 8, 8))
    hooks = UNetHooks(NO_PATCHES, torch.tensor([3.0]), [0])
    hooks.block = ("input", 3)
    torch.testing.assert_close(patch.input_patch(h, hooks), F.avg_pool2d(h, 2), rtol=1e-6, atol=1e-6)
    small, skip = latent(2, (1, 64, 4, 4)), latent(3, (1, 32, 8, 8))
    assert torch.equal(patch.output_patch(small, skip, hooks)[0], small.repeat_interleave(2, 2).repeat_interleave(2, 3))
    hooks.block = ("input", 2)
    assert patch.input_patch(h, hooks) is h


# -- HyperTile ----------------------------------------------------------------------------------------------
def test_random_divisor_draws_among_the_largest_counts_but_the_last():
    g = torch.Generator().manual_seed(0)
    assert random_divisor(16, 4, 1, g) == 4                      # tiles of ≥ 4: 4 tiles of 4
    assert {random_divisor(16, 4, 3, g) for _ in range(50)} == {4, 2}  # counts 4, 2, 1: the last never drawn
    assert random_divisor(6, 32, 2, g) == 1                      # tiles larger than the side: one tile


def test_hypertile_tiles_the_queries_and_attends_each_tile_to_a_chunk_of_the_keys():
    unet = tiny_unet()
    block = unet.input_blocks[1][1].transformer_blocks[0]
    patch = HyperTile(32, 1, 0, False)  # 4×4-pixel tiles on a 16×16 latent: 4 × 4 tiles
    hooks = UNetHooks(NO_PATCHES.add(attn1_patch=patch.tile, attn1_output_patch=patch.untile),
                      torch.tensor([1.0]), [0])
    hooks.block, hooks.original_shape = ("input", 1), [1, 4, 16, 16]
    x = latent(4, (1, 256, 32))
    a = block.attn1
    with torch.no_grad():
        got = block(x, prompt(1)[0][0], hooks)
        n = block.norm1(x)
        q, k, v = a.to_q(n)[0], a.to_k(n)[0], a.to_v(n)[0]
        out = torch.empty_like(q)
        for i in range(4):
            for j in range(4):
                rows = [r * 16 + c for r in range(4 * i, 4 * i + 4) for c in range(4 * j, 4 * j + 4)]
                chunk = slice(16 * (4 * i + j), 16 * (4 * i + j + 1))  # ComfyUI: keys in token order
                out[rows] = attention(q[rows][None], k[chunk][None], v[chunk][None], a.heads)[0]
        expected = a.to_out[0](out[None]) + x
        expected = block.attn2(block.norm2(expected), prompt(1)[0][0]) + expected
        expected = block.ff(block.norm3(expected)) + expected
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_hypertile_leaves_the_lower_levels_alone_unless_max_depth_reaches_them():
    patch = HyperTile(32, 1, 1, False)
    hooks = UNetHooks(NO_PATCHES, torch.tensor([1.0]), [0])
    hooks.original_shape = [1, 4, 16, 16]
    for tokens, tiled in ((256, True), (64, True), (16, False)):
        q = latent(5, (1, tokens, 8))
        assert (patch.tile(q, q, q, hooks)[0].shape[0] > 1) == tiled
        patch.untile(q, hooks)


# -- ToMe -------------------------------------------------------------------------------------------------------
def tome_reference(x: torch.Tensor, is_dst: list[bool], r: int, f) -> torch.Tensor:
    """Bipartite soft matching written out for one batch row: each source's most cosine-similar
    destination, the r best-matched sources averaged into theirs, f applied per merged token, then every
    token takes its group's result."""
    tokens = x[0]
    dst = [i for i, d in enumerate(is_dst) if d]
    src = [i for i, d in enumerate(is_dst) if not d]
    unit = tokens / tokens.norm(dim=-1, keepdim=True)
    best = {i: max(dst, key=lambda j: float(unit[i] @ unit[j])) for i in src}
    score = {i: float(unit[i] @ unit[best[i]]) for i in src}
    merged = sorted(src, key=lambda i: -score[i])[:r]
    group_of = {i: i for i in range(len(tokens))}
    for i in merged:
        group_of[i] = best[i]
    value = {j: tokens[[j] + [i for i in merged if best[i] == j]].mean(0) for j in dst}
    value.update({i: tokens[i] for i in src if i not in merged})
    return torch.stack([f(value[group_of[i]]) for i in range(len(tokens))])[None]


def test_tome_destinations_are_one_random_token_per_2x2_cell():
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    mask = destination_mask(6, 4, 2, 2, g1, "cpu").reshape(4, 6)
    pick = torch.randint(4, (2, 3, 1), generator=g2)
    for cy in range(2):
        for cx in range(3):
            cell = mask[2 * cy:2 * cy + 2, 2 * cx:2 * cx + 2]
            k = int(pick[cy, cx, 0])
            assert cell.sum() == 1 and cell[k // 2, k % 2]


def test_tome_merges_the_best_matched_sources_into_their_destinations_and_unmerges():
    x = latent(6, (1, 64, 16))
    weight = latent(7, (16, 16))

    def f(t):
        return torch.tanh(t @ weight)

    merge, unmerge = bipartite_merge(x, 8, 8, 20, torch.Generator().manual_seed(5))
    merged = merge(x)
    assert merged.shape == (1, 44, 16)
    is_dst = destination_mask(8, 8, 2, 2, torch.Generator().manual_seed(5), "cpu").tolist()
    torch.testing.assert_close(unmerge(f(merged)), tome_reference(x, is_dst, 20, f), rtol=1e-5, atol=1e-6)


def test_tome_runs_at_full_resolution_only_and_puts_every_output_back():
    patch = TokenMerging(0.5)
    hooks = UNetHooks(NO_PATCHES, torch.tensor([1.0]), [0])
    hooks.original_shape = [1, 4, 16, 16]
    full, half = latent(8, (2, 256, 32)), latent(9, (2, 64, 32))
    merged, _, _ = patch.merge(full, full, full, hooks)
    assert merged.shape == (2, 128, 32) and patch.unmerge(merged, hooks).shape == (2, 256, 32)
    assert patch.merge(half, half, half, hooks)[0] is half


def test_tome_in_a_transformer_block_attends_merged_queries_to_all_keys():
    """A tiny U-Net's first transformer block with TomePatchModel's hooks, against the block written out:
    self-attention queries from the merged normalised tokens (the reference's grouping), keys and values
    from all 256 tokens, each token then taking its group's output; the rest of the block as it is."""
    unet = tiny_unet()
    block = unet.input_blocks[1][1].transformer_blocks[0]
    patch = TokenMerging(0.3)
    hooks = UNetHooks(NO_PATCHES.add(attn1_patch=patch.merge, attn1_output_patch=patch.unmerge),
                      torch.tensor([1.0]), [0])
    hooks.block, hooks.original_shape = ("input", 1), [1, 4, 16, 16]
    x, context = latent(4, (1, 256, 32)), prompt(1)[0][0]
    a = block.attn1
    with torch.no_grad():
        got = block(x, context, hooks)
        n = block.norm1(x)
        k, v = a.to_k(n), a.to_v(n)
        is_dst = destination_mask(16, 16, 2, 2, torch.Generator().manual_seed(0), "cpu").tolist()

        def attend(token):
            return a.to_out[0](attention(a.to_q(token)[None, None], k, v, a.heads))[0, 0]

        expected = tome_reference(n, is_dst, int(256 * 0.3), attend) + x
        expected = block.attn2(block.norm2(expected), context) + expected
        expected = block.ff(block.norm3(expected)) + expected
        assert (got - block(x, context)).abs().max() > 1e-4  # merging changes the result
    # per-query attention vs. the batched merged queries: float32 rounding of a 32-wide layer
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


# -- attention multiply ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["attn1", "attn2"])
def test_unet_attention_multiply_scales_the_projections_while_in_use(which):
    from nodes.model_patches import unet_cross_attention_multiply, unet_self_attention_multiply
    from nodes.sd.diffusion_model import DiffusionModel

    model = DiffusionModel.for_family(tiny_unet(), "sd1")
    node = unet_self_attention_multiply if which == "attn1" else unet_cross_attention_multiply
    patched = node(model, q=1.5, k=0.5, v=2.0, out=0.75)
    by_hand = copy.deepcopy(model.unet)
    factors = {"to_q": 1.5, "to_k": 0.5, "to_v": 2.0, "to_out.0": 0.75}
    with torch.no_grad():
        for name, param in by_hand.named_parameters():
            for proj, factor in factors.items():
                if f".{which}.{proj}." in name:
                    param.mul_(factor)
    x, context = latent(3), torch.cat([prompt(1)[0][0], prompt(2)[0][0]])
    with patched.in_use(), torch.no_grad():
        got = model.unet(x, TIMESTEPS, context)
    with torch.no_grad():
        assert torch.equal(got, by_hand(x, TIMESTEPS, context))
        assert not torch.equal(got, model.unet(x, TIMESTEPS, context))  # restored after use


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_clip_attention_multiply_scales_every_encoders_self_attention(family):
    """SD1's CLIP has separate q/k/v projections; SD2's and SDXL-G's OpenCLIP fused ones (scaled by thirds)."""
    from nodes.model_patches import clip_attention_multiply
    from nodes.sd.text_encoders import build_text_encoder, text_encoder_state_dicts

    clip = build_text_encoder(family, text_encoder_state_dicts(family))
    patched = clip_attention_multiply(clip, q=1.5, k=0.5, v=2.0, out=0.75)
    by_hand = build_text_encoder(family, text_encoder_state_dicts(family))
    with torch.no_grad():
        for model in by_hand.models.values():
            for name, param in model.named_parameters():
                if "in_proj" in name:
                    third = param.shape[0] // 3
                    for i, factor in enumerate((1.5, 0.5, 2.0)):
                        param[i * third:(i + 1) * third] *= factor
                for proj, factor in (("q_proj", 1.5), ("k_proj", 0.5), ("v_proj", 2.0), ("out_proj", 0.75)):
                    if f"{proj}." in name:
                        param.mul_(factor)
    text = "a red fox in the snow"
    context, pooled = patched.encode(text)
    ref_context, ref_pooled = by_hand.encode(text)
    assert torch.equal(context, ref_context)
    assert pooled is None or torch.equal(pooled, ref_pooled)
    assert not torch.equal(clip.encode(text)[0], context)  # the input CLIP is unchanged


def test_weights_applied_twice_nested_on_one_module_do_not_deadlock():
    module = torch.nn.Linear(2, 2)
    with weights_applied({"m": module}, []):
        with weights_applied({"m": module}, []):
            pass
