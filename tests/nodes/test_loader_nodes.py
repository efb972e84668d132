"""Loader nodes: CheckpointLoaderSimple, VAELoader, CLIPSetLastLayer; model choices from the models folders."""
from __future__ import annotations

import shutil

import pytest
import torch
from nodekit import FakeContext, options_for

from nodes.loaders import checkpoint_loader_simple, clip_set_last_layer, vae_loader
from nodes.sd.diffusion_model import DiffusionModel
from nodes.runtime import get_manager
from nodes.sd.text_encoders import SDTextEncoder
from nodes.sd.vae import VAE


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_checkpoint_loader_gives_model_clip_and_vae_of_the_files_family(load, family):
    model, clip, vae = load(family)
    assert isinstance(model, DiffusionModel) and model.family == family
    assert isinstance(clip, SDTextEncoder) and clip.family == family
    assert isinstance(vae, VAE)
    assert model.latent_scale == pytest.approx(0.13025 if family == "sdxl" else 0.18215)


def test_checkpoint_loader_loads_a_file_once_and_reuses_it(models_dir, load):
    first = load("sd1")
    loads = get_manager().stats.loads
    ctx = FakeContext(options_for(models_dir))
    again = checkpoint_loader_simple(ckpt_name="sd1.safetensors", ctx=ctx)
    assert get_manager().stats.loads == loads
    assert all(a is b for a, b in zip(first, again))


def test_checkpoint_loader_uses_the_runs_dtype_and_records_it(models_dir):
    ctx = FakeContext(options_for(models_dir, dtype="bf16"))
    model, clip, vae = checkpoint_loader_simple(ckpt_name="sd1.safetensors", ctx=ctx)
    assert model.dtype == torch.bfloat16
    assert next(vae.model.parameters()).dtype == torch.bfloat16
    assert ctx.ui["dtype"].startswith("dtype bf16 (requested")
    assert ctx.ui["model"]["family"] == "sd1"


def test_fp32_run_loads_fp32_weights(load):
    model, clip, vae = load("sd2")
    assert model.dtype == torch.float32 and clip.dtype == torch.float32


PACKAGED = ("demo-shapes.safetensors",)  # the shipped demo model is always listed (ARCHITECTURE: models roots)


def test_checkpoint_choices_list_the_files_of_the_models_folder_and_the_packaged_demo(registry, models_dir):
    param = registry["CheckpointLoaderSimple"].param("ckpt_name")
    assert param.resolve_choices(options_for(models_dir)) == tuple(sorted(
        PACKAGED + ("sd1.safetensors", "sd2.safetensors", "sdxl.safetensors")))


def test_checkpoint_choices_follow_new_files(registry, models_dir, tmp_path):
    root = tmp_path / "models"
    (root / "checkpoints" / "sub").mkdir(parents=True)
    param = registry["CheckpointLoaderSimple"].param("ckpt_name")
    assert param.resolve_choices(options_for(root)) == PACKAGED
    shutil.copy(models_dir / "checkpoints" / "sd1.safetensors", root / "checkpoints" / "sub" / "mine.safetensors")
    assert param.resolve_choices(options_for(root)) == tuple(sorted(PACKAGED + ("sub/mine.safetensors",)))


def test_vae_loader_loads_a_standalone_vae_that_decodes(models_dir):
    ctx = FakeContext(options_for(models_dir))
    vae = vae_loader(vae_name="tiny-vae.safetensors", ctx=ctx)
    images = vae.decode(torch.zeros(1, 4, 4, 4))
    assert images.shape == (1, 32, 32, 3)
    assert 0.0 <= images.min() and images.max() <= 1.0


@pytest.mark.parametrize("family, layer", [("sd1", -2), ("sdxl", -1)])  # SDXL reads -2 by default
def test_clip_set_last_layer_changes_the_encoding_like_the_encoders_clip_skip(load, family, layer):
    _, clip, _ = load(family)
    skipped = clip_set_last_layer(clip=clip, stop_at_clip_layer=layer)
    ours, _ = skipped.encode("a red fox")
    reference, _ = clip.with_last_layer(layer).encode("a red fox")
    default, _ = clip.encode("a red fox")
    torch.testing.assert_close(ours, reference, rtol=0, atol=0)
    assert not torch.allclose(ours, default, atol=1e-4)


def test_clip_set_last_layer_leaves_the_input_clip_unchanged(load):
    _, clip, _ = load("sd1")
    before, _ = clip.encode("a red fox")
    clip_set_last_layer(clip=clip, stop_at_clip_layer=-2)
    after, _ = clip.encode("a red fox")
    torch.testing.assert_close(before, after, rtol=0, atol=0)


def test_clip_set_last_layer_minus_one_on_sd1_is_the_default_encoding(load):
    _, clip, _ = load("sd1")
    last, _ = clip_set_last_layer(clip=clip, stop_at_clip_layer=-1).encode("a red fox")
    default, _ = clip.encode("a red fox")
    torch.testing.assert_close(last, default, rtol=0, atol=0)


def test_a_checkpoint_replaced_on_disk_is_loaded_again(registry, tmp_path):
    from nodegraph import Graph
    from nodegraph.api import Session
    from nodegraph.executor import OutputCache
    from nodes.sd.testing import write_random_checkpoint

    root = tmp_path / "models"
    (root / "checkpoints").mkdir(parents=True)
    path = root / "checkpoints" / "mine.safetensors"
    write_random_checkpoint(path, "sd1", seed=1)
    session = Session(registry, options=options_for(root, tmp_path / "out"), cache=OutputCache())
    graph = Graph()
    graph.add_node("CheckpointLoaderSimple", {"ckpt_name": "mine.safetensors"}, id="1")
    graph.add_node("EmptyLatentImage", {"width": 16, "height": 16, "batch_size": 1}, id="2")
    graph.add_node("VAEDecode", {}, id="3")
    graph.connect("2", "LATENT", "3", "samples")
    graph.connect("1", "VAE", "3", "vae")
    graph.add_node("PreviewImage", {}, id="4")
    graph.connect("3", "IMAGE", "4", "images")
    first = session.run(graph, outputs=["3"]).output("3")
    assert session.run(graph, outputs=["3"]).stats.executed == []
    write_random_checkpoint(path, "sd1", seed=2)
    result = session.run(graph, outputs=["3"])
    assert result.stats.executed == ["1", "3"]
    assert not torch.allclose(result.output("3"), first)
