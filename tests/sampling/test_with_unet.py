"""The sampling glue drives the project's real U-Net (tiny configs): SD1 eps, SD2 v, SDXL with its y."""
from __future__ import annotations

import pytest
import torch

unet_module = pytest.importorskip("nodes.sd.unet")

from nodes.sd import ksampler as K  # noqa: E402
from nodes.sd.diffusion_model import DiffusionModel, sdxl_adm_fn  # noqa: E402


def tiny(family: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return unet_module.UNetModel(unet_module.tiny_config(family)).eval()


def prompt(seed: int, width: int, **options):
    return [[torch.randn(1, 77, width, generator=torch.Generator().manual_seed(seed)), options]]


@pytest.mark.parametrize("family,prediction,context", [("sd1", "eps", 768), ("sd2", "v", 1024)])
def test_txt2img_runs_and_split_pipeline_matches(family, prediction, context):
    model = DiffusionModel.for_family(tiny(family), family, prediction)
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    pos, neg = prompt(1, context), prompt(2, context)
    out = K.sample(model, latent, pos, neg, seed=7, steps=3, cfg=5.0, sampler_name="dpmpp_2m", scheduler="karras")
    parts, _ = K.sample_custom(K.RandomNoise(7), K.CFGGuider(model, pos, neg, 5.0), K.Sampler("dpmpp_2m"),
                               K.basic_scheduler(model.model_sampling, "karras", 3), latent)
    assert torch.isfinite(out["samples"]).all()
    assert torch.equal(out["samples"], parts["samples"])


def test_sdxl_adm_fn_builds_unet_y_from_conditioning_keys():
    pooled = torch.randn(1, 1280)
    cond = {"pooled_output": pooled, "width": 1024, "height": 768, "crop_w": 16, "crop_h": 8}
    y = sdxl_adm_fn()(cond, 1, torch.device("cpu"), torch.float32)
    assert torch.equal(y, unet_module.sdxl_adm(pooled, 1024, 768, 16, 8, 1024, 768))


def test_refiner_adm_fn_uses_comfyui_aesthetic_defaults():
    pooled = torch.randn(1, 1280)
    adm = sdxl_adm_fn(refiner=True)
    base = {"pooled_output": pooled, "width": 1024, "height": 1024}
    assert torch.equal(adm(dict(base, prompt_type="positive"), 1, torch.device("cpu"), torch.float32),
                       unet_module.sdxl_refiner_adm(pooled, 1024, 1024, 0, 0, 6.0))
    assert torch.equal(adm(dict(base, prompt_type="negative"), 1, torch.device("cpu"), torch.float32),
                       unet_module.sdxl_refiner_adm(pooled, 1024, 1024, 0, 0, 2.5))


def test_sdxl_samples_with_pooled_and_size_conditioning():
    model = DiffusionModel.for_family(tiny("sdxl"), "sdxl")
    assert model.latent_scale == 0.13025
    pos = prompt(1, 2048, pooled_output=torch.randn(1, 1280))
    neg = prompt(2, 2048, pooled_output=torch.zeros(1, 1280))
    out = K.sample(model, {"samples": torch.zeros(1, 4, 8, 8)}, pos, neg, seed=3, steps=2, cfg=4.0,
                   sampler_name="euler", scheduler="normal")
    assert torch.isfinite(out["samples"]).all()


def test_sdxl_without_pooled_output_says_what_is_missing():
    model = DiffusionModel.for_family(tiny("sdxl"), "sdxl")
    with pytest.raises(ValueError, match="no 'pooled_output'"):
        K.sample(model, {"samples": torch.zeros(1, 4, 8, 8)}, prompt(1, 2048), prompt(2, 2048), seed=3, steps=1,
                 cfg=4.0, sampler_name="euler", scheduler="normal")
