"""SaveImage / LoadImage internals: PNGs that carry their graph, safe names, robust image loading."""
from __future__ import annotations

import hashlib
import io
import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, PngImagePlugin

import nodes.imageio as imageio
from nodes.imageio import (ImageLoadError, ImageTooLargeError, UnsafePathError, image_fingerprint, load_image,
                           read_graph_from_png, save_images, split_prefix)

GRAPH = json.dumps({"format": "nodegraph", "version": 1, "nodes": {"1": {"type": "SaveImage"}}}, sort_keys=True)
PROMPT = json.dumps({"9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI"}}})
WORKFLOW = json.dumps({"last_node_id": 9, "nodes": [], "links": [], "version": 0.4})


def ramp_images(batch: int = 1, height: int = 8, width: int = 16, channels: int = 3) -> torch.Tensor:
    values = torch.arange(batch * height * width * channels, dtype=torch.float32)
    return (values % 256 / 255.0).reshape(batch, height, width, channels)


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def pixel_limit():
    """Restore Pillow's decompression-bomb limit after a test changes it."""
    saved = Image.MAX_IMAGE_PIXELS
    yield
    Image.MAX_IMAGE_PIXELS = saved


# -- save_images ----------------------------------------------------------------------------------
def test_saves_one_png_per_image_named_like_comfyui(tmp_path):
    paths = save_images(ramp_images(batch=2), tmp_path, "shot")
    assert [p.name for p in paths] == ["shot_00001_.png", "shot_00002_.png"]
    assert files_under(tmp_path) == set(paths)


def test_saved_pixels_are_the_image_times_255_truncated_as_comfyui_does(tmp_path):
    image = torch.tensor([[[[0.0, 0.5, 1.0], [0.999, 1.5, -0.2]]]])  # 1x1x2x3
    (path,) = save_images(image, tmp_path, "px")
    assert np.asarray(Image.open(path)).tolist() == [[[0, 127, 255], [254, 255, 0]]]


def test_rgba_and_grey_images_keep_their_channels(tmp_path):
    rgba, grey = ramp_images(channels=4), ramp_images(channels=1)
    (p4,) = save_images(rgba, tmp_path, "rgba")
    (p1,) = save_images(grey, tmp_path, "grey")
    assert Image.open(p4).mode == "RGBA" and Image.open(p1).mode == "L"
    np.testing.assert_array_equal(np.asarray(Image.open(p4)), (rgba[0].numpy() * 255).astype(np.uint8))
    np.testing.assert_array_equal(np.asarray(Image.open(p1)), (grey[0, ..., 0].numpy() * 255).astype(np.uint8))


def test_the_graph_and_comfyui_chunks_are_embedded(tmp_path):
    (path,) = save_images(ramp_images(), tmp_path, "g", graph_json=GRAPH, comfy_prompt_json=PROMPT,
                          comfy_workflow_json=WORKFLOW)
    text = Image.open(path).text
    assert text == {"nodegraph": GRAPH, "prompt": PROMPT, "workflow": WORKFLOW}


def test_a_non_ascii_comfy_prompt_is_stored_as_ascii_json_with_the_same_value(tmp_path):
    prompt = json.dumps({"6": {"class_type": "CLIPTextEncode", "inputs": {"text": "un château 🏰"}}},
                        ensure_ascii=False)
    (path,) = save_images(ramp_images(), tmp_path, "u", comfy_prompt_json=prompt, graph_json='{"t": "🏰"}')
    stored = read_graph_from_png(path)
    assert stored["prompt"].isascii()
    assert json.loads(stored["prompt"]) == json.loads(prompt)
    assert stored["nodegraph"] == '{"t": "🏰"}'


def test_the_counter_continues_after_the_highest_existing_file(tmp_path):
    (tmp_path / "run_00007_.png").write_bytes(b"old")
    (tmp_path / "run_00003.png").write_bytes(b"old")
    (tmp_path / "runner_00050_.png").write_bytes(b"other prefix")
    (path,) = save_images(ramp_images(), tmp_path, "run")
    assert path.name == "run_00008_.png"


def test_an_existing_file_is_never_overwritten(tmp_path, monkeypatch):
    existing = tmp_path / "x_00001_.png"
    existing.write_bytes(b"precious")
    monkeypatch.setattr(imageio, "_next_counter", lambda folder, stem: 1)  # a stale scan, as in a race
    (path,) = save_images(ramp_images(), tmp_path, "x")
    assert path.name == "x_00002_.png"
    assert existing.read_bytes() == b"precious"


def test_without_hard_links_the_name_is_reserved_exclusively_instead(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise PermissionError("hard links not supported")

    monkeypatch.setattr(os, "link", no_links)
    (tmp_path / "y_00001_.png").write_bytes(b"precious")
    monkeypatch.setattr(imageio, "_next_counter", lambda folder, stem: 1)
    paths = save_images(ramp_images(batch=2), tmp_path, "y")
    assert [p.name for p in paths] == ["y_00002_.png", "y_00003_.png"]
    assert (tmp_path / "y_00001_.png").read_bytes() == b"precious"
    assert Image.open(paths[0]).size == (16, 8)


def test_concurrent_saves_get_distinct_files_and_leave_no_temporary_files(tmp_path):
    results: list[Path] = []
    lock = threading.Lock()

    def worker(seed: int) -> None:
        paths = save_images(torch.full((2, 4, 4, 3), seed / 10), tmp_path, "race")
        with lock:
            results.extend(paths)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 12
    assert files_under(tmp_path) == set(results)  # no .tmp left behind
    assert sorted(p.name for p in results) == [f"race_{i:05d}_.png" for i in range(1, 13)]
    for p in results:
        Image.open(p).load()  # every file is a complete PNG


def test_a_prefix_may_contain_subfolders(tmp_path):
    (path,) = save_images(ramp_images(), tmp_path, "portraits/take1/img")
    assert path == tmp_path.resolve() / "portraits" / "take1" / "img_00001_.png"


def test_prefix_placeholders_are_filled_like_comfyui(tmp_path):
    paths = save_images(ramp_images(batch=2, height=8, width=16), tmp_path, "%width%x%height%_b%batch_num%")
    assert [p.name for p in paths] == ["16x8_b0_00001_.png", "16x8_b1_00001_.png"]


@pytest.mark.parametrize("prefix, why", [
    ("../escape", "contains '..'"),
    ("a/../../escape", "contains '..'"),
    ("/tmp/abs", "is an absolute path"),
    ("~/home", "is an absolute path"),
    ("C:escape", "starts with a drive letter"),
    ("c:/windows/x", "starts with a drive letter"),
    ("a\\..\\b", "contains a backslash"),
    ("nul\x00byte", "control character"),
    ("", "is empty"),
    ("folder/", "ends with '/'"),
    ("CON", "reserved device name"),
    ("what?", "contains ?"),
    ("dir./x", "ending in a space or dot"),
])
def test_unsafe_prefixes_are_refused_and_nothing_is_written(tmp_path, prefix, why):
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(UnsafePathError) as info:
        save_images(ramp_images(), out, prefix)
    message = str(info.value)
    assert why in message and "filename_prefix" in message
    assert "sub-folders separated by '/'" in message  # says what is allowed
    assert files_under(tmp_path) == set()
    assert list(tmp_path.iterdir()) == [out]


def test_a_symlinked_subfolder_cannot_lead_outside_the_output_folder(tmp_path):
    out, outside = tmp_path / "out", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    (out / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePathError, match="leads outside the output folder"):
        save_images(ramp_images(), out, "link/deeper/img")
    assert list(outside.iterdir()) == []


def test_split_prefix_separates_folders_and_stem():
    assert split_prefix("a/./b//c") == (["a", "b"], "c")
    assert split_prefix("ComfyUI") == ([], "ComfyUI")


@pytest.mark.parametrize("images, message", [
    (torch.zeros(4, 4, 3), r"IMAGE tensor \[B,H,W,C\]; got \(4, 4, 3\)"),
    (torch.zeros(0, 4, 4, 3), "empty batch"),
    (torch.zeros(1, 4, 4, 2), "images\\[0\\] has 2 channels"),
])
def test_bad_image_tensors_are_refused_with_a_clear_message(tmp_path, images, message):
    with pytest.raises(ValueError, match=message):
        save_images(images, tmp_path, "bad")
    assert files_under(tmp_path) == set()


# -- read_graph_from_png ----------------------------------------------------------------------------
def test_read_graph_returns_the_chunks_that_exist(tmp_path):
    (both,) = save_images(ramp_images(), tmp_path, "a", graph_json=GRAPH, comfy_prompt_json=PROMPT)
    (none,) = save_images(ramp_images(), tmp_path, "b")
    assert read_graph_from_png(both) == {"nodegraph": GRAPH, "prompt": PROMPT}
    assert read_graph_from_png(none) == {}


def test_read_graph_reads_chunks_placed_after_the_image_data(tmp_path):
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="PNG")
    data = buffer.getvalue()
    payload = b"workflow\x00" + WORKFLOW.encode()
    import struct
    import zlib
    chunk = struct.pack(">I", len(payload)) + b"tEXt" + payload + struct.pack(">I", zlib.crc32(b"tEXt" + payload))
    iend = data.rindex(b"IEND") - 4
    path = tmp_path / "late.png"
    path.write_bytes(data[:iend] + chunk + data[iend:])
    assert read_graph_from_png(path) == {"workflow": WORKFLOW}


def test_read_graph_handles_a_graph_larger_than_pillows_text_chunk_limit(tmp_path):
    big = json.dumps({"nodes": {str(i): {"type": "Note", "text": "x" * 200} for i in range(8000)}})
    assert len(big) > PngImagePlugin.MAX_TEXT_CHUNK
    (path,) = save_images(ramp_images(), tmp_path, "big", graph_json=big)
    assert read_graph_from_png(path)["nodegraph"] == big


def test_read_graph_reads_comfyui_webp_exif(tmp_path):
    # As ComfyUI's SaveAnimatedWEBP: prompt in 0x0110 (Model), extra_pnginfo keys from 0x010f (Make) down.
    image = Image.new("RGB", (8, 8), (10, 20, 30))
    exif = image.getexif()
    exif[0x0110] = "prompt:" + PROMPT
    exif[0x010F] = "workflow:" + WORKFLOW
    path = tmp_path / "comfy.webp"
    image.save(path, format="WEBP", exif=exif, lossless=True)
    assert read_graph_from_png(path) == {"prompt": PROMPT, "workflow": WORKFLOW}


def test_read_graph_of_a_non_image_names_the_file(tmp_path):
    path = tmp_path / "graph.json"
    path.write_text(GRAPH)
    with pytest.raises(ImageLoadError, match=r"graph\.json: cannot read it as an image"):
        read_graph_from_png(path)
    with pytest.raises(ImageLoadError, match="missing.png: no such file"):
        read_graph_from_png(tmp_path / "missing.png")


# -- load_image -----------------------------------------------------------------------------------
def save_pil(image: Image.Image, path: Path, **kwargs) -> Path:
    image.save(path, **kwargs)
    return path


def test_rgb_png_loads_as_floats_with_a_zero_mask_of_the_same_size(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    path = save_pil(Image.fromarray(pixels), tmp_path / "rgb.png")
    image, mask = load_image(path)
    assert image.shape == (1, 5, 7, 3) and image.dtype == torch.float32
    torch.testing.assert_close(image[0], torch.from_numpy(pixels.astype(np.float32) / 255.0))
    assert mask.shape == (1, 5, 7) and mask.abs().sum() == 0


def test_alpha_becomes_the_mask_as_one_minus_alpha(tmp_path):
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = [[255, 0, 51], [102, 255, 0]]
    image, mask = load_image(save_pil(Image.fromarray(rgba), tmp_path / "a.png"))
    torch.testing.assert_close(mask[0], torch.tensor([[0.0, 1.0, 0.8], [0.6, 0.0, 1.0]]))
    torch.testing.assert_close(image[0, ..., 0], torch.full((2, 3), 200 / 255))  # colour is not premultiplied


def test_grey_and_grey_alpha_images_are_replicated_to_rgb(tmp_path):
    la = Image.fromarray(np.array([[[10, 255], [20, 0]]], np.uint8), mode="LA")
    image, mask = load_image(save_pil(la, tmp_path / "la.png"))
    torch.testing.assert_close(image[0, 0], torch.tensor([[10, 10, 10], [20, 20, 20]]) / 255.0)
    torch.testing.assert_close(mask[0, 0], torch.tensor([0.0, 1.0]))


def test_palette_transparency_becomes_the_mask(tmp_path):
    palette_image = Image.new("P", (2, 1))
    palette_image.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    palette_image.putdata([0, 1])
    path = save_pil(palette_image, tmp_path / "p.png", transparency=1)
    image, mask = load_image(path)
    torch.testing.assert_close(image[0, 0], torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    torch.testing.assert_close(mask[0, 0], torch.tensor([0.0, 1.0]))


def test_sixteen_bit_grey_keeps_its_precision(tmp_path):
    values = np.array([[0, 257, 1000, 65535]], np.uint16)
    image, _ = load_image(save_pil(Image.fromarray(values), tmp_path / "16.png"))
    torch.testing.assert_close(image[0, 0, :, 1], torch.from_numpy(values[0].astype(np.float32) / 65535))


def test_cmyk_jpeg_is_converted_to_rgb(tmp_path):
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # no cyan, full magenta and yellow: red
    image, _ = load_image(save_pil(cmyk, tmp_path / "c.jpg", quality=100))
    mean = image[0].mean(dim=(0, 1))
    assert mean[0] > 0.95 and mean[1] < 0.05 and mean[2] < 0.05


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((2, 4, 3), np.uint8)  # 4 wide, 2 high; top-left pixel white
    pixels[0, 0] = 255
    stored = Image.fromarray(pixels)
    exif = stored.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    image, mask = load_image(save_pil(stored, tmp_path / "o.jpg", exif=exif, quality=100))
    assert image.shape == (1, 4, 2, 3) and mask.shape == (1, 4, 2)
    assert image[0, 0, 1].mean() > 0.9  # the white corner is now top-right
    assert image[0, 0, 0].mean() < 0.1


def test_frames_of_an_animation_form_a_batch(tmp_path):
    frames = [Image.new("RGB", (6, 4), (c, 0, 0)) for c in (0, 120, 240)]
    path = save_pil(frames[0], tmp_path / "anim.png", save_all=True, append_images=frames[1:])
    image, mask = load_image(path)
    assert image.shape == (3, 4, 6, 3) and mask.shape == (3, 4, 6)
    torch.testing.assert_close(image[:, 0, 0, 0], torch.tensor([0, 120, 240]) / 255.0)


def test_frames_of_another_size_than_the_first_are_left_out(tmp_path):
    pages = [Image.new("RGB", (4, 4), (10, 0, 0)), Image.new("RGB", (8, 2), (20, 0, 0)),
             Image.new("RGB", (4, 4), (30, 0, 0))]
    path = save_pil(pages[0], tmp_path / "pages.tiff", save_all=True, append_images=pages[1:])
    image, _ = load_image(path)
    torch.testing.assert_close(image[:, 0, 0, 0], torch.tensor([10, 30]) / 255.0)


def test_an_mpo_gives_only_its_first_picture(tmp_path):
    pics = [Image.new("RGB", (8, 8), (250, 0, 0)), Image.new("RGB", (8, 8), (0, 0, 250))]
    path = save_pil(pics[0], tmp_path / "stereo.mpo", format="MPO", save_all=True, append_images=pics[1:])
    assert Image.open(path).n_frames == 2
    image, _ = load_image(path)
    assert image.shape[0] == 1 and image[0, ..., 0].mean() > 0.9


def test_a_decompression_bomb_is_refused_naming_file_pixels_and_how_to_raise_the_limit(tmp_path, pixel_limit):
    path = save_pil(Image.new("RGB", (40, 40)), tmp_path / "bomb.png")
    imageio.set_max_image_pixels(1000)
    with pytest.raises(ImageTooLargeError) as info:
        load_image(path)
    message = str(info.value)
    assert "bomb.png" in message and "1600 pixels" in message and "limit of 1000 pixels" in message
    assert "NODEGRAPH_MAX_IMAGE_PIXELS" in message


def test_an_image_far_over_the_limit_is_refused_the_same_way(tmp_path, pixel_limit):
    path = save_pil(Image.new("L", (100, 100)), tmp_path / "huge.png")
    imageio.set_max_image_pixels(1000)  # 10000 pixels is more than twice the limit: Pillow itself refuses
    with pytest.raises(ImageTooLargeError, match=r"huge\.png: the image has 10000 pixels"):
        load_image(path)


def test_frames_count_together_against_the_pixel_limit(tmp_path, pixel_limit):
    frames = [Image.new("RGB", (20, 20), (i * 50, 0, 0)) for i in range(4)]
    path = save_pil(frames[0], tmp_path / "many.png", save_all=True, append_images=frames[1:])
    imageio.set_max_image_pixels(1000)
    with pytest.raises(ImageTooLargeError, match=r"1600 pixels in 4 frames"):  # counted from the headers
        load_image(path)


def test_raising_the_limit_lets_the_image_load(tmp_path, pixel_limit):
    path = save_pil(Image.new("RGB", (40, 40)), tmp_path / "ok.png")
    imageio.set_max_image_pixels(2000)
    assert load_image(path)[0].shape == (1, 40, 40, 3)


def test_a_truncated_png_is_a_clear_error_naming_the_file(tmp_path):
    pixels = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    full = save_pil(Image.fromarray(pixels), tmp_path / "full.png")
    cut = tmp_path / "cut.png"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(ImageLoadError, match=r"cut\.png: the image data is corrupt or truncated"):
        load_image(cut)


def test_random_bytes_are_not_an_image(tmp_path):
    path = tmp_path / "noise.png"
    path.write_bytes(os.urandom(2048))
    with pytest.raises(ImageLoadError, match=r"noise\.png: not an image file Pillow can read"):
        load_image(path)


def test_a_missing_file_or_a_folder_is_named(tmp_path):
    with pytest.raises(ImageLoadError, match=r"absent\.png: no such file"):
        load_image(tmp_path / "absent.png")
    with pytest.raises(ImageLoadError, match="is a folder"):
        load_image(tmp_path)


def test_an_image_mode_that_cannot_become_rgb_is_named(tmp_path, monkeypatch):
    path = save_pil(Image.new("RGB", (2, 2)), tmp_path / "odd.png")

    def refuse(self, mode=None, *args, **kwargs):
        raise ValueError(f"conversion from {self.mode} to {mode} not supported")

    monkeypatch.setattr(Image.Image, "convert", refuse)
    with pytest.raises(ImageLoadError, match=r"odd\.png: image mode 'RGB' cannot be converted to RGB"):
        load_image(path)


# -- image_fingerprint ------------------------------------------------------------------------------
def test_fingerprint_is_the_sha256_of_the_file_bytes(tmp_path):
    path = tmp_path / "f.png"
    data = os.urandom(3 * 1024 * 1024 + 17)  # spans several read blocks
    path.write_bytes(data)
    assert image_fingerprint(path) == hashlib.sha256(data).hexdigest()


def test_fingerprint_changes_when_the_file_changes(tmp_path):
    path = tmp_path / "f.png"
    path.write_bytes(b"one")
    os.utime(path, (1_000_000_000, 1_000_000_000))
    first = image_fingerprint(path)
    path.write_bytes(b"two")
    os.utime(path, (1_000_000_000, 1_000_000_000))  # same size, mtime and inode: only the ctime tells
    assert image_fingerprint(path) == hashlib.sha256(b"two").hexdigest() != first


def test_fingerprint_of_a_missing_file_names_it(tmp_path):
    with pytest.raises(ImageLoadError, match=r"gone\.png: no such file"):
        image_fingerprint(tmp_path / "gone.png")


def test_a_lossless_webp_with_alpha_loads_exactly(tmp_path):
    rgba = np.random.default_rng(2).integers(0, 256, (6, 5, 4), dtype=np.uint8)
    rgba[..., 3] = np.where(rgba[..., 3] > 127, 255, 0)  # WebP may alter colours under fully clear pixels
    rgba[rgba[..., 3] == 0, :3] = 0
    image, mask = load_image(save_pil(Image.fromarray(rgba), tmp_path / "w.webp", lossless=True, exact=True))
    torch.testing.assert_close(image[0], torch.from_numpy(rgba[..., :3].astype(np.float32) / 255))
    torch.testing.assert_close(mask[0], torch.from_numpy(1 - rgba[..., 3].astype(np.float32) / 255))


def test_a_lab_image_is_not_mistaken_for_one_with_alpha(tmp_path):
    # LAB's bands are L, A, B: its "A" is a colour axis, not transparency (ComfyUI's band check would take it)
    path = save_pil(Image.new("LAB", (3, 2), (50, 200, 128)), tmp_path / "lab.tif")
    image, mask = load_image(path)
    assert image.shape == (1, 2, 3, 3) and mask.abs().sum() == 0
