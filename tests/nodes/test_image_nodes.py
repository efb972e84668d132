"""Image nodes: VAE encode/decode (plain and tiled), ImageScale(By), LoadImage, SaveImage, PreviewImage."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from nodekit import FakeContext, options_for
from PIL import Image

from nodegraph import Graph, format as graph_format
from nodes import image as image_nodes
from nodes.image import (image_scale, image_scale_by, load_image, preview_image, resolve_image, save_image,
                         vae_decode, vae_decode_tiled, vae_encode, vae_encode_tiled)
from nodes.imageio import read_graph_from_png


def pixels(h=64, w=64, c=3, batch=1, seed=0) -> torch.Tensor:
    return torch.rand(batch, h, w, c, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def ctx(models_dir, out_dir):
    return FakeContext(options_for(models_dir, out_dir))


def test_vae_encode_then_decode_keeps_the_size_and_gives_images_in_0_1(load, ctx):
    _, _, vae = load("sd1")
    latent = vae_encode(pixels=pixels(h=64, w=96, batch=2), vae=vae, ctx=ctx)
    assert set(latent) == {"samples"} and latent["samples"].shape == (2, 4, 8, 12)
    images = vae_decode(samples=latent, vae=vae, ctx=ctx)
    assert images.shape == (2, 64, 96, 3) and images.dtype == torch.float32
    assert images.min() >= 0.0 and images.max() <= 1.0 and images.std() > 0.01


def test_vae_encode_equals_the_vaes_own_encoding(load, ctx):
    _, _, vae = load("sd2")
    image = pixels()
    torch.testing.assert_close(vae_encode(pixels=image, vae=vae, ctx=ctx)["samples"], vae.encode(image),
                               rtol=0, atol=0)


def test_vae_encode_crops_sides_to_multiples_of_8_around_the_middle(load, ctx):
    _, _, vae = load("sd1")
    image = pixels(h=70, w=67)
    cropped = image[:, 3:67, 1:65]
    torch.testing.assert_close(vae_encode(pixels=image, vae=vae, ctx=ctx)["samples"], vae.encode(cropped),
                               rtol=0, atol=0)


def test_vae_encode_ignores_alpha_and_accepts_grey(load, ctx):
    _, _, vae = load("sd1")
    rgb = pixels()
    rgba = torch.cat([rgb, torch.zeros(1, 64, 64, 1)], dim=-1)
    torch.testing.assert_close(vae_encode(pixels=rgba, vae=vae, ctx=ctx)["samples"], vae.encode(rgb),
                               rtol=0, atol=0)
    grey = rgb[..., :1]
    torch.testing.assert_close(vae_encode(pixels=grey, vae=vae, ctx=ctx)["samples"],
                               vae.encode(grey.expand(-1, -1, -1, 3)), rtol=0, atol=0)


def test_tiled_decode_uses_pixel_tiles_and_stays_close_to_the_plain_decode(load, ctx):
    _, _, vae = load("sd1")
    latent = {"samples": torch.randn(1, 4, 24, 24, generator=torch.Generator().manual_seed(3))}
    plain = vae_decode(samples=latent, vae=vae, ctx=ctx)
    tiled = vae_decode_tiled(samples=latent, vae=vae, tile_size=128, overlap=32, ctx=ctx)
    torch.testing.assert_close(tiled, vae.decode_tiled(latent["samples"], tile=16, overlap=4, shared_norms=False),
                               rtol=0, atol=0)
    assert tiled.shape == plain.shape == (1, 192, 192, 3)
    assert (tiled - plain).abs().mean() < 0.05


def test_vae_decode_falls_back_to_memory_bounded_tiles_when_memory_runs_out(load, ctx, monkeypatch):
    _, _, vae = load("sd1")
    latent = {"samples": torch.randn(1, 4, 24, 24, generator=torch.Generator().manual_seed(5))}
    expected = vae.decode_tiled(latent["samples"], shared_norms=False)

    def out_of_memory(_latents):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(vae, "decode", out_of_memory)
    torch.testing.assert_close(vae_decode(samples=latent, vae=vae, ctx=ctx), expected, rtol=0, atol=0)


def test_vae_decode_does_not_hide_other_errors(load, ctx, monkeypatch):
    _, _, vae = load("sd1")

    def broken(_latents):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(vae, "decode", broken)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        vae_decode(samples={"samples": torch.zeros(1, 4, 8, 8)}, vae=vae, ctx=ctx)


def test_tiled_decode_keeps_the_overlap_below_a_quarter_tile(load, ctx):
    _, _, vae = load("sd1")
    latent = {"samples": torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(3))}
    tiled = vae_decode_tiled(samples=latent, vae=vae, tile_size=64, overlap=64, ctx=ctx)
    torch.testing.assert_close(tiled, vae.decode_tiled(latent["samples"], tile=8, overlap=2, shared_norms=False),
                               rtol=0, atol=0)


def test_tiled_encode_uses_pixel_tiles_and_stays_close_to_the_plain_encode(load, ctx):
    _, _, vae = load("sd1")
    image = pixels(h=128, w=128, seed=4)
    plain = vae_encode(pixels=image, vae=vae, ctx=ctx)["samples"]
    tiled = vae_encode_tiled(pixels=image, vae=vae, tile_size=64, overlap=16, ctx=ctx)["samples"]
    torch.testing.assert_close(tiled, vae.encode_tiled(image, tile=64, overlap=16, shared_norms=False), rtol=0, atol=0)
    assert tiled.shape == plain.shape == (1, 4, 16, 16)
    assert (tiled - plain).norm() / plain.norm() < 0.5


@pytest.mark.parametrize("method", ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"])
def test_image_scale_gives_the_asked_size(method):
    out = image_scale(image=pixels(h=40, w=60), upscale_method=method, width=90, height=30, crop="disabled")
    assert out.shape == (1, 30, 90, 3)
    assert abs(float(out.mean()) - 0.5) < 0.1  # resampling keeps the brightness


def test_image_scale_zero_width_keeps_the_aspect_ratio():
    assert image_scale(image=pixels(h=40, w=60), upscale_method="bilinear", width=0, height=80,
                       crop="disabled").shape == (1, 80, 120, 3)


def test_image_scale_by_scales_and_upsampling_by_nearest_repeats_pixels():
    image = pixels(h=10, w=20)
    out = image_scale_by(image=image, upscale_method="nearest-exact", scale_by=2.0)
    assert out.shape == (1, 20, 40, 3)
    torch.testing.assert_close(out[:, ::2, ::2], image, rtol=0, atol=0)


# -- LoadImage ------------------------------------------------------------------------------------
def write_png(path, rgba=False, size=(24, 16)):
    arr = (np.random.default_rng(0).random((size[1], size[0], 4 if rgba else 3)) * 255).astype(np.uint8)
    Image.fromarray(arr, "RGBA" if rgba else "RGB").save(path)
    return arr


def test_load_image_finds_a_name_in_the_input_folder(tmp_path, monkeypatch):
    folder = tmp_path / "inputs"
    (folder / "sub").mkdir(parents=True)
    arr = write_png(folder / "sub" / "cat.png")
    monkeypatch.setenv("NODEGRAPH_INPUT", str(folder))
    assert "sub/cat.png" in image_nodes.list_input_images()
    image, mask = load_image(image="sub/cat.png")
    assert image.shape == (1, 16, 24, 3) and mask.shape == (1, 16, 24)
    np.testing.assert_allclose(image[0].numpy(), arr / 255.0, atol=1e-6)
    assert torch.count_nonzero(mask) == 0


def test_load_image_reads_an_absolute_path_and_makes_the_mask_from_alpha(tmp_path):
    arr = write_png(tmp_path / "a.png", rgba=True)
    image, mask = load_image(image=str(tmp_path / "a.png"))
    np.testing.assert_allclose(mask[0].numpy(), 1.0 - arr[..., 3] / 255.0, atol=1e-6)
    np.testing.assert_allclose(image[0].numpy(), arr[..., :3] / 255.0, atol=1e-6)


def test_the_example_input_image_is_listed():
    assert "fox_sketch.png" in image_nodes.list_input_images()
    assert resolve_image("fox_sketch.png") == image_nodes.EXAMPLES_INPUT_DIR / "fox_sketch.png"


def test_load_image_choices_accept_existing_paths_and_explain_missing_ones(registry, tmp_path):
    param = registry["LoadImage"].param("image")
    write_png(tmp_path / "b.png")
    assert param.check(str(tmp_path / "b.png")) is None
    code, message = param.check("no-such-image.png")
    assert code == "bad_choice" and "Input folders searched" in message and "examples" in message


def test_an_edited_input_image_runs_load_image_again(session, tmp_path):
    path = tmp_path / "edit.png"
    write_png(path)
    graph = Graph()
    graph.add_node("LoadImage", {"image": str(path)}, id="1")
    graph.add_node("PreviewImage", {}, id="2")
    graph.connect("1", "IMAGE", "2", "images")
    assert session.run(graph).stats.executed == ["1", "2"]
    assert session.run(graph).stats.executed == []
    Image.new("RGB", (24, 16), (255, 0, 0)).save(path)
    os.utime(path, ns=(1, 1))  # even with an old modification time the content hash changes
    assert session.run(graph).stats.executed == ["1", "2"]


# -- SaveImage / PreviewImage ---------------------------------------------------------------------
def small_graph() -> Graph:
    graph = Graph(meta={"note": "test"})
    graph.add_node("LoadImage", {"image": "fox_sketch.png"}, id="5")
    graph.add_node("SaveImage", {"filename_prefix": "x"}, id="9", title="Save")
    graph.connect("5", "IMAGE", "9", "images")
    return graph


def test_save_image_writes_numbered_pngs_carrying_the_graph(ctx, out_dir):
    ctx.graph = small_graph()
    images = pixels(h=16, w=24, batch=2)
    save_image(images=images, filename_prefix="shots/fox", ctx=ctx)
    names = sorted(p.name for p in (out_dir / "shots").iterdir())
    assert names == ["fox_00001_.png", "fox_00002_.png"]
    assert ctx.ui["files"] == [str(out_dir / "shots" / n) for n in names]
    saved = np.asarray(Image.open(out_dir / "shots" / "fox_00002_.png"))
    np.testing.assert_array_equal(saved, (images[1].numpy() * 255).astype(np.uint8))
    chunks = read_graph_from_png(out_dir / "shots" / "fox_00001_.png")
    assert graph_format.loads(chunks["nodegraph"]) == ctx.graph
    assert json.loads(chunks["prompt"]) == {
        "5": {"class_type": "LoadImage", "inputs": {"image": "fox_sketch.png"}, "_meta": {"title": "Load Image"}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x", "images": ["5", 0]},
              "_meta": {"title": "Save"}}}


def test_save_image_continues_the_counter_and_never_overwrites(ctx, out_dir):
    ctx.graph = small_graph()
    save_image(images=pixels(h=8, w=8), filename_prefix="n", ctx=ctx)
    save_image(images=pixels(h=8, w=8), filename_prefix="n", ctx=ctx)
    assert sorted(p.name for p in out_dir.iterdir()) == ["n_00001_.png", "n_00002_.png"]


def test_save_image_files_are_readable_by_others(ctx, out_dir):
    save_image(images=pixels(h=8, w=8), filename_prefix="perm", ctx=ctx)
    mode = (out_dir / "perm_00001_.png").stat().st_mode & 0o777
    assert mode & 0o044 == 0o044


def test_preview_image_writes_to_a_temporary_folder_not_the_output(ctx, out_dir):
    preview_image(images=pixels(h=8, w=8), ctx=ctx)
    (path,) = ctx.ui["images"]
    assert os.path.isfile(path) and str(image_nodes.preview_folder()) in path
    assert "files" not in ctx.ui
    assert not out_dir.exists()
