"""CheckpointSave / ModelSave / VAESave / CLIPSave files: our loader and diffusers' single-file converters
(the code behind ``from_single_file``, which offline cannot fetch its configs) read them back to the
weights the saved values run with; names, metadata and never overwriting."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from test_unet import diffusers_twin, inputs, rel_err

from nodegraph import RunOptions
from nodes.loaders import lora_loader
from nodes.merging import model_merge_simple
from nodes.saving import checkpoint_save, clip_save, model_save, vae_save
from nodes.sd.checkpoint import load_checkpoint, load_vae
from nodes.sd.testing import write_random_checkpoint, write_random_lora

os.environ.setdefault("HF_HUB_OFFLINE", "1")
diffusers = pytest.importorskip("diffusers")
from diffusers.loaders.single_file_utils import convert_ldm_clip_checkpoint  # noqa: E402


class Ctx:
    """What a node function sees as ``ctx`` (options with the output and models folders, ui, log)."""

    def __init__(self, root: Path):
        self.options = RunOptions(device="cpu", dtype="fp32", output_dir=root / "out", models_dirs=(root,))
        self.ui: dict = {}
        self.log = logging.getLogger("test")
        self.node_id, self.graph = "7", None


@pytest.fixture
def setup(tmp_path):
    for folder in ("checkpoints", "loras"):
        (tmp_path / folder).mkdir()
    a = load_checkpoint(write_random_checkpoint(tmp_path / "checkpoints" / "a.safetensors", "sd1", seed=1))
    b = load_checkpoint(write_random_checkpoint(tmp_path / "checkpoints" / "b.safetensors", "sd1", seed=2))
    write_random_lora(tmp_path / "loras" / "style.safetensors", "sd1", seed=3, scale=0.3)
    return Ctx(tmp_path), a, b


def in_use(model) -> dict[str, torch.Tensor]:
    with model.in_use():
        return {k: v.detach().clone() for k, v in model.unet.state_dict().items()}


def test_a_saved_merge_loads_back_to_the_merged_weights(setup):
    ctx, a, b = setup
    merged = model_merge_simple(model1=a.model, model2=b.model, ratio=0.4, ctx=ctx)
    checkpoint_save(model=merged, clip=a.text_encoder, vae=a.vae, filename_prefix="checkpoints/mix", ctx=ctx)
    path = Path(ctx.ui["files"][0])
    assert path == ctx.options.output_dir / "checkpoints" / "mix_00001_.safetensors"
    back = load_checkpoint(path)
    expected = in_use(merged)
    assert all(torch.equal(v, expected[k]) for k, v in back.unet.state_dict().items())
    for slot, module in back.text_encoder.models.items():
        original = a.text_encoder.models[slot].state_dict()
        assert all(torch.equal(v, original[k]) for k, v in module.state_dict().items())
    vae = a.vae.model.state_dict()
    assert all(torch.equal(v, vae[k]) for k, v in back.vae.model.state_dict().items())
    assert back.family == "sd1" and back.prediction == "eps"


def test_the_checkpoint_carries_modelspec_metadata_and_never_overwrites(setup):
    ctx, a, _ = setup
    for _ in range(2):
        checkpoint_save(model=a.model, clip=a.text_encoder, vae=a.vae, filename_prefix="checkpoints/ComfyUI", ctx=ctx)
    first, second = map(Path, ctx.ui["files"])
    assert (first.name, second.name) == ("ComfyUI_00001_.safetensors", "ComfyUI_00002_.safetensors")
    with safe_open(str(first), "pt") as f:
        meta = f.metadata()
    assert meta["modelspec.sai_model_spec"] == "1.0.0"
    assert meta["modelspec.architecture"] == "stable-diffusion-v1"
    assert meta["modelspec.resolution"] == "512x512" and meta["modelspec.predict_key"] == "epsilon"
    assert not [p for p in first.parent.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_diffusers_reads_the_saved_unet_vae_and_clip_to_the_weights_they_ran_with(setup):
    """diffusers' converters on the saved file: the U-Net computes what the merged value (with a LoRA
    on top) computes (the twins agree to 1e-4, tests/sd/test_unet.py), the VAE and CLIP load strictly
    with our weights, bit for bit."""
    ctx, a, b = setup
    tuned, _ = lora_loader(model=a.model, clip=a.text_encoder, lora_name="style.safetensors", strength_model=0.8,
                           strength_clip=0.0, ctx=ctx)
    merged = model_merge_simple(model1=tuned, model2=b.model, ratio=0.7, ctx=ctx)
    checkpoint_save(model=merged, clip=a.text_encoder, vae=a.vae, filename_prefix="mix", ctx=ctx)
    saved = load_file(ctx.ui["files"][0])
    unet = load_checkpoint(ctx.ui["files"][0]).unet
    ref = diffusers_twin(unet)  # built by convert_ldm_unet_checkpoint from the file's keys
    x, t, context = inputs(unet.config)
    with torch.no_grad(), merged.in_use():
        ours = merged.unet(x, t, context)
    assert rel_err(ours, ref(x, t, encoder_hidden_states=context).sample) <= 1e-4
    converted = convert_ldm_clip_checkpoint(saved)
    ours_clip = a.text_encoder.models["l"].state_dict()
    assert len(converted) >= len(ours_clip)
    assert torch.equal(converted["text_model.embeddings.token_embedding.weight"],
                       ours_clip["embeddings.token_embedding.weight"])


def test_model_vae_and_clip_save_write_their_part_alone(setup):
    ctx, a, _ = setup
    model_save(model=a.model, filename_prefix="diffusion_models/unet", ctx=ctx)
    vae_save(vae=a.vae, filename_prefix="vae/v", ctx=ctx)
    clip_save(clip=a.text_encoder, filename_prefix="clip/c", ctx=ctx)
    unet_file, vae_file, clip_file = map(Path, ctx.ui["files"])
    assert clip_file.name == "c_clip_l_00001_.safetensors"
    unet = load_file(str(unet_file))
    weights = a.model.unet.state_dict()
    assert unet.keys() == {"model.diffusion_model." + k for k in weights}
    assert all(torch.equal(unet["model.diffusion_model." + k], v) for k, v in weights.items())
    back = load_vae(vae_file).model.state_dict()
    assert all(torch.equal(v, back[k]) for k, v in a.vae.model.state_dict().items())
    clip = load_file(str(clip_file))
    assert all(torch.equal(clip["text_model." + k], v) for k, v in a.text_encoder.models["l"].state_dict().items())


def rank_r_bound(diff: torch.Tensor, rank: int) -> float:
    """The error bound of a rank-``rank`` extraction of ``diff``, from an independent transcription of the
    stated method: truncated SVD (Eckart–Young: the best rank-r approximation misses √(Σ_{i>r} σ_i²)),
    plus what ComfyUI's clamp of both factors to their 0.99 quantile changes, plus float16 storage of the
    factors (each entry within 2^-11 relative: ‖U'D' − UD‖_F ≤ (2·2^-11 + 2^-22)·‖U‖_F·‖D‖_F), plus
    float32 rounding of the applied weights (1e-6 absolute on each of at most 10⁵ entries of order 0.1)."""
    flat = diff.reshape(diff.shape[0], -1).double()
    if diff.dim() < 2:
        return 2.0**-11 * float(diff.norm()) + 1e-6
    r = min(rank, diff.shape[0], diff.shape[1])  # ComfyUI caps a conv's rank by its input channels
    u, s, vh = torch.linalg.svd(flat, full_matrices=False)
    tail = float(s[r:].square().sum().sqrt())
    up, down = u[:, :r] * s[:r], vh[:r]
    q = torch.quantile(torch.cat([up.flatten(), down.flatten()]), 0.99)
    cu, cd = up.clamp(-q, q), down.clamp(-q, q)
    clamp = float((up @ down - cu @ cd).norm())
    storage = (2 * 2.0**-11 + 2.0**-22) * float(cu.norm() * cd.norm())
    return tail + clamp + storage + 1e-6 * flat.numel() ** 0.5


@pytest.mark.parametrize("rank", [4, 64])
def test_lora_save_then_load_lora_gives_back_the_difference_within_the_rank_bound(setup, rank):
    from nodes.merging import model_merge_subtract
    from nodes.saving import lora_save

    ctx, a, b = setup
    tuned = model_merge_simple(model1=a.model, model2=b.model, ratio=0.9, ctx=ctx)  # a full-rank change
    diff = model_merge_subtract(model1=tuned, model2=a.model, multiplier=1.0, ctx=ctx)
    lora_save(filename_prefix="loras/extracted", rank=rank, lora_type="standard", bias_diff=True, ctx=ctx,
              model_diff=diff)
    ctx.options.models_dirs = (ctx.options.output_dir, *ctx.options.models_dirs)
    back, _ = lora_loader(model=a.model, clip=a.text_encoder, lora_name="extracted_00001_.safetensors",
                          strength_model=1.0, strength_clip=0.0, ctx=ctx)
    assert ctx.ui["lora"]["applied"] == ctx.ui["lora"]["layers"] > 0
    base, want, got = in_use(a.model), in_use(diff), in_use(back)
    errors = {k: float((got[k] - base[k] - want[k]).norm()) for k in base}
    bounds = {k: rank_r_bound(want[k], rank) for k in base}
    assert all(errors[k] <= bounds[k] for k in base), [(k, errors[k], bounds[k]) for k in base if errors[k] > bounds[k]]
    if rank == 64:  # at or above the cap of nearly every weight (tiny model: ≤ 64 channels): little is lost
        total = sum(e * e for e in errors.values()) ** 0.5 / sum(float(v.norm()) ** 2 for v in want.values()) ** 0.5
        assert total < 0.3


def test_a_text_encoder_difference_round_trips_through_lora_save_within_the_rank_bound(setup):
    from nodes.merging import clip_merge_subtract
    from nodes.saving import lora_save
    from nodes.sd.lora import text_targets
    from nodes.sd.merging import weights_in_use

    ctx, a, b = setup
    diff = clip_merge_subtract(clip1=b.text_encoder, clip2=a.text_encoder, multiplier=0.2, ctx=ctx)
    lora_save(filename_prefix="loras/text", rank=8, lora_type="standard", bias_diff=True, ctx=ctx,
              text_encoder_diff=diff)
    ctx.options.models_dirs = (ctx.options.output_dir, *ctx.options.models_dirs)
    _, back = lora_loader(model=a.model, clip=a.text_encoder, lora_name="text_00001_.safetensors",
                          strength_model=0.0, strength_clip=1.0, ctx=ctx)

    def weights(clip):
        with weights_in_use(clip):
            return {k: v.detach().clone() for k, v in clip.models["l"].named_parameters()}

    base, want, got = weights(a.text_encoder), weights(diff), weights(back)
    layers = {t.param for t in text_targets(a.text_encoder.models["l"], "lora_te_").values()}
    assert layers and ctx.ui["lora"]["applied"] == ctx.ui["lora"]["layers"] > 0
    for key in layers:
        assert float((got[key] - base[key] - want[key]).norm()) <= rank_r_bound(want[key], 8), key
    untouched = [k for k in base if k not in layers and not k.endswith(".bias")]
    assert untouched and all(torch.equal(got[k], base[k]) for k in untouched)  # embeddings, norms: not stored


@pytest.mark.parametrize("family", ["sd2", "sdxl"])
def test_a_saved_checkpoint_of_each_family_loads_back_to_the_same_weights(tmp_path, family):
    (tmp_path / "checkpoints").mkdir()
    loaded = load_checkpoint(write_random_checkpoint(tmp_path / "checkpoints" / "m.safetensors", family, seed=4,
                                                     prediction="v" if family == "sd2" else "eps"))
    ctx = Ctx(tmp_path)
    checkpoint_save(model=loaded.model, clip=loaded.text_encoder, vae=loaded.vae, filename_prefix="m", ctx=ctx)
    back = load_checkpoint(ctx.ui["files"][0])
    assert (back.family, back.prediction) == (family, loaded.prediction)
    for mine, theirs in ((loaded.unet, back.unet), (loaded.vae.model, back.vae.model),
                         *((loaded.text_encoder.models[s], back.text_encoder.models[s]) for s in loaded.text_encoder.models)):
        want = mine.state_dict()
        assert all(torch.equal(v, want[k]) for k, v in theirs.state_dict().items())
    with safe_open(ctx.ui["files"][0], "pt") as f:
        arch = f.metadata()["modelspec.architecture"]
    assert arch == {"sd2": "stable-diffusion-v2-768-v", "sdxl": "stable-diffusion-xl-v1-base"}[family]


def test_saved_models_get_the_mode_of_any_new_output_file(setup):
    """safetensors writes its file private (0600); a saved model is an output like an image: 0666 less
    the umask, as SaveImage's files."""
    from nodegraph.fileio import usual_mode

    ctx, a, _ = setup
    vae_save(vae=a.vae, filename_prefix="vae/v", ctx=ctx)
    mode = Path(ctx.ui["files"][0]).stat().st_mode & 0o777
    assert mode == usual_mode() == 0o666 & ~_umask(), oct(mode)


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current
