"""A ControlNet on an inpainting checkpoint: the control model sees the noisy latent without the U-Net's
extra input channels (as in ComfyUI), so a 4-channel SD1 ControlNet steers a 9-channel SD1 inpainting
U-Net."""
from __future__ import annotations

import torch
from nodekit import FakeContext, options_for

from nodes.controlnet import controlnet_apply_advanced, controlnet_loader
from nodes.inpaint import set_latent_noise_mask
from nodes.loaders import checkpoint_loader_simple
from nodes.sampling import ksampler
from nodes.sd.control.testing import write_random_controlnet
from nodes.sd.testing import write_random_checkpoint


def test_an_sd1_controlnet_steers_an_sd1_inpainting_unet(tmp_path):
    for folder in ("checkpoints", "controlnet"):
        (tmp_path / folder).mkdir()
    write_random_checkpoint(tmp_path / "checkpoints" / "sd15-inpainting.safetensors", "sd1", in_channels=9)
    write_random_controlnet(tmp_path / "controlnet" / "canny.safetensors", "sd1", seed=1)
    ctx = FakeContext(options_for(tmp_path))
    model, clip, _ = checkpoint_loader_simple(ckpt_name="sd15-inpainting.safetensors", ctx=ctx)
    net = controlnet_loader(control_net_name="canny.safetensors", ctx=ctx)
    cond = [[clip.encode("a fox")[0], {}]]
    positive, negative = controlnet_apply_advanced(cond, cond, net, torch.rand(1, 64, 64, 3), 1.0, 0.0, 1.0)
    mask = torch.zeros(1, 64, 64)
    mask[:, 16:48, 16:48] = 1.0
    latent = set_latent_noise_mask({"samples": torch.zeros(1, 4, 8, 8)}, mask)
    args = dict(model=model, latent_image=latent, seed=1, steps=2, cfg=7.0, sampler_name="euler",
                scheduler="normal", denoise=1.0, ctx=ctx)
    steered = ksampler(positive=positive, negative=negative, **args)["samples"]
    plain = ksampler(positive=cond, negative=cond, **args)["samples"]
    assert torch.isfinite(steered).all()
    assert (steered - plain).abs().max() > 1e-3
