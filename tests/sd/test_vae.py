"""The VAE computes what diffusers' AutoencoderKL computes on the same weights, loads the file
layouts people have, and its tiled encode/decode reproduce the untiled results.

Weights go to diffusers' layout through diffusers' own single-file converter
(`convert_ldm_vae_checkpoint`, config from `create_vae_diffusers_config_from_ldm` fed the LDM yaml's
`ddconfig`), from a checkpoint with the real `first_stage_model.` prefix.
"""
from __future__ import annotations

import os

import pytest
import torch

from nodes.sd import vae as vae_module
from nodes.sd.checkpoint import load_vae
from nodes.sd.testing import random_vae, save_safetensors, write_random_vae
from nodes.sd.vae import (
    VAE,
    AutoencoderKL,
    VAEConfig,
    config_from_state_dict,
    full_config,
    latent_scale,
    tiny_config,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
diffusers = pytest.importorskip("diffusers")
from diffusers import AutoencoderKL as DiffusersAutoencoderKL  # noqa: E402
from diffusers.loaders.single_file_utils import (  # noqa: E402
    convert_ldm_vae_checkpoint,
    create_vae_diffusers_config_from_ldm,
)
from numerics import rel_err


def ldm_yaml(cfg: VAEConfig) -> dict:
    """The parts of an LDM v1-inference.yaml that describe the first stage model."""
    ddconfig = {
        "double_z": True, "z_channels": cfg.z_channels, "resolution": 256, "in_channels": cfg.in_channels,
        "out_ch": cfg.out_ch, "ch": cfg.ch, "ch_mult": list(cfg.ch_mult), "num_res_blocks": cfg.num_res_blocks,
        "attn_resolutions": [], "dropout": 0.0,
    }
    return {"model": {"params": {"first_stage_config": {"params": {"embed_dim": cfg.embed_dim, "ddconfig": ddconfig}}}}}


def diffusers_twin(model: AutoencoderKL) -> DiffusersAutoencoderKL:
    checkpoint = {"first_stage_model." + k: v for k, v in model.state_dict().items()}
    config = create_vae_diffusers_config_from_ldm(ldm_yaml(model.config), checkpoint)
    ref = DiffusersAutoencoderKL(**config)
    ref.load_state_dict(convert_ldm_vae_checkpoint(checkpoint, config), strict=True)
    return ref.eval()


@pytest.fixture(scope="module")
def pair():
    model = random_vae(tiny_config(), seed=0)
    return model, diffusers_twin(model)


def smooth_image(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """An IMAGE [1, H, W, 3] in 0..1 with gradients, stripes and a little noise."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    img = torch.stack([xx, yy, (torch.sin(xx * 20) * torch.cos(yy * 13) + 1) / 2], -1)[None]
    noise = torch.rand(img.shape, generator=torch.Generator().manual_seed(seed))
    return (img * 0.9 + noise * 0.1).clamp(0, 1)


def test_encode_matches_diffusers_mean(pair):
    ours, ref = pair
    x = torch.rand(2, 3, 64, 48, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        mean = ours.encode(x)
        ref_mean = ref.encode(x).latent_dist.mean
    assert mean.shape == (2, 4, 8, 6)
    assert rel_err(mean, ref_mean) <= 1e-4


def test_decode_matches_diffusers(pair):
    ours, ref = pair
    z = torch.randn(2, 4, 7, 9, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        image = ours.decode(z)
        ref_image = ref.decode(z).sample
    assert image.shape == (2, 3, 56, 72)
    assert rel_err(image, ref_image) <= 1e-4


def test_encode_sample_is_mean_plus_std_times_seeded_noise(pair):
    ours, ref = pair
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.no_grad():
        a = ours.encode(x, generator=torch.Generator().manual_seed(7), sample=True)
        b = ours.encode(x, generator=torch.Generator().manual_seed(7), sample=True)
        dist = ref.encode(x).latent_dist
    expected = dist.mean + dist.std * torch.randn(dist.mean.shape, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    assert rel_err(a, expected) <= 1e-4


def test_config_is_read_back_from_state_dict_shapes():
    with torch.device("meta"):
        full = AutoencoderKL(full_config("sdxl"))
    assert config_from_state_dict(full.state_dict()) == full_config("sdxl")
    odd = VAEConfig(ch=64, ch_mult=(1, 2, 3), num_res_blocks=3, z_channels=8, embed_dim=6)
    with torch.device("meta"):
        assert config_from_state_dict(AutoencoderKL(odd).state_dict()) == odd


def test_state_dict_has_the_single_file_key_layout():
    with torch.device("meta"):
        keys = set(AutoencoderKL(full_config()).state_dict())
    for key in ("encoder.conv_in.weight", "encoder.down.0.block.1.norm2.bias", "encoder.down.1.block.0.nin_shortcut.weight",
                "encoder.down.2.downsample.conv.weight", "encoder.mid.attn_1.proj_out.weight", "encoder.norm_out.weight",
                "decoder.up.3.upsample.conv.weight", "decoder.up.0.block.2.conv1.weight", "decoder.mid.block_2.conv2.bias",
                "quant_conv.weight", "post_quant_conv.bias"):
        assert key in keys
    assert len(keys) == 248  # as in every SD1.x / SD2.x / SDXL file's first_stage_model.*


def test_linear_mid_attention_weights_load_like_conv_weights(pair):
    ours, _ = pair
    sd = {k: (v[:, :, 0, 0] if ".attn_1." in k and v.ndim == 4 else v) for k, v in ours.state_dict().items()}
    assert sd["decoder.mid.attn_1.q.weight"].ndim == 2
    loaded = vae_module.build_vae(sd)
    z = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert torch.equal(loaded.model.decode(z), ours.decode(z))


def test_standalone_ldm_vae_file_loads(tmp_path, pair):
    ours, _ = pair
    path = write_random_vae(tmp_path / "vae-ft-mse.safetensors", seed=0)
    loaded = load_vae(path)
    z = torch.randn(1, 4, 5, 6, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert torch.equal(loaded.model.decode(z), ours.decode(z))
    assert loaded.family is None


def test_diffusers_format_vae_file_loads(tmp_path, pair):
    ours, ref = pair
    path = save_safetensors(tmp_path / "diffusion_pytorch_model.safetensors", ref.state_dict())
    loaded = load_vae(path)
    z = torch.randn(1, 4, 6, 5, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        assert rel_err(loaded.model.decode(z), ref.decode(z).sample) <= 1e-4
    # renamed back, the weights are exactly the LDM-layout ones diffusers' converter started from
    assert all(torch.equal(v, loaded.model.state_dict()[k]) for k, v in ours.state_dict().items())


def test_wrapper_uses_image_and_raw_latent_conventions(pair):
    vae = VAE(pair[0])
    image = smooth_image(32, 40)
    latent = vae.encode(image)
    decoded = vae.decode(latent)
    assert latent.shape == (1, 4, 4, 5) and latent.dtype == torch.float32
    assert decoded.shape == (1, 32, 40, 3)
    assert decoded.min() >= 0 and decoded.max() <= 1
    with torch.no_grad():
        expected = pair[0].encode(image.movedim(-1, 1) * 2 - 1)
    assert torch.allclose(latent, expected, atol=1e-6)
    with pytest.raises(ValueError, match="multiple of 8"):
        vae.encode(smooth_image(30, 40))


def test_latent_scale_belongs_to_the_family():
    assert latent_scale("sd1") == latent_scale("sd2") == 0.18215
    assert latent_scale("sdxl") == latent_scale("sdxl_refiner") == 0.13025
    with pytest.raises(ValueError, match="sd3"):
        latent_scale("sd3")


def test_tiled_decode_of_four_tiles_is_within_2_of_255_of_untiled(pair):
    vae = VAE(pair[0])
    z = torch.randn(1, 4, 40, 40, generator=torch.Generator().manual_seed(8))
    assert len(vae_module._tiles(40, 28, 16, 1)) ** 2 == 4
    tiled = vae.decode_tiled(z, tile=28, overlap=16)
    assert (tiled - vae.decode(z)).abs().max() <= 2 / 255


def test_tiled_encode_of_four_tiles_matches_untiled(pair):
    vae = VAE(pair[0])
    image = smooth_image(256, 256)
    assert len(vae_module._tiles(256, 208, 160, 8)) ** 2 == 4
    tiled = vae.encode_tiled(image, tile=208, overlap=160)
    untiled = vae.encode(image)
    # Latents: relative error; images: both latents through the same untiled decoder.
    assert rel_err(tiled, untiled) <= 1e-3
    assert (vae.decode(tiled) - vae.decode(untiled)).abs().max() <= 2 / 255


def test_tiles_normalised_alone_differ_visibly(pair):
    """Why the tiles share group-norm statistics: without it (ComfyUI's way) a random VAE drifts."""
    vae = VAE(pair[0])
    z = torch.randn(1, 4, 40, 40, generator=torch.Generator().manual_seed(8))
    alone = vae.decode_tiled(z, tile=28, overlap=16, shared_norms=False)
    assert (alone - vae.decode(z)).abs().max() > 8 / 255


def test_blend_weights_of_two_overlapping_tiles_sum_to_one():
    left = vae_module._ramp(64, None, 32, "cpu")
    right = vae_module._ramp(64, 32, None, "cpu")
    overlap = left[32:] + right[:32]
    assert torch.allclose(overlap, torch.ones(32))
    assert left[-8:].eq(0).all() and right[:8].eq(0).all()  # the padding-touched quarter is ignored


def test_an_error_in_one_tile_reaches_the_caller():
    norm = vae_module.GroupNorm(2, 4)
    calls = []

    def fn(x):
        x = norm(x)  # every tile passes the shared statistics once
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom in the third tile")
        return norm(x)

    with pytest.raises(RuntimeError, match="boom in the third tile"):
        vae_module.tiled_apply(fn, torch.randn(1, 4, 32, 28), tile=16, overlap=4, scale=1)
