"""Upscale models through spandrel: loading by architecture, tiled upscaling, out-of-memory retry, safety."""
from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from spandrel.architectures.Compact import Compact
from spandrel.architectures.ESRGAN import ESRGAN

from numerics import path_rtol, rel_err

from nodes.sd.upscale import (UpscaleModel, UpscaleModelError, load_upscale_model, read_state_dict, tile_spans,
                              upscale_image)

TOL = 2 / 255


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny convolutions run fastest on one thread, and the CPU is shared."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def in_range(net: torch.nn.Module, last_conv: torch.nn.Conv2d) -> torch.nn.Module:
    """Rescale the last convolution of a random network so its outputs spread over 0..1 (not clipped)."""
    with torch.no_grad():
        out = net(torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(1)))
        last_conv.weight.mul_(0.15 / out.std())
        last_conv.bias.add_(0.5 - net(torch.rand(1, 3, 24, 24)).mean())
    return net.eval()


@pytest.fixture(scope="module")
def compact(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    """A small random Real-ESRGAN compact (SRVGGNetCompact) 2x model saved as .safetensors."""
    torch.manual_seed(0)
    net = Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=2)
    net = in_range(net, net.body[-1])
    path = tmp_path_factory.mktemp("compact") / "compact-2x.safetensors"
    save_file(net.state_dict(), str(path))
    return path, net


@pytest.fixture(scope="module")
def esrgan(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    """A small random ESRGAN (RRDBNet, original key layout) 4x model saved as .pth, wrapped in 'params_ema'
    as Real-ESRGAN's releases are."""
    torch.manual_seed(0)
    net = ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=4)
    last = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    net = in_range(net, last)
    assert "model.1.sub.0.RDB1.conv1.0.weight" in net.state_dict()  # the original ESRGAN layout
    path = tmp_path_factory.mktemp("esrgan") / "esrgan-4x.pth"
    torch.save({"params_ema": net.state_dict()}, path)
    return path, net


def rand_image(h: int, w: int, c: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.rand(1, h, w, c, generator=torch.Generator().manual_seed(seed))


def direct(net: torch.nn.Module, image: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return net(image.movedim(-1, 1)).clamp(0, 1).movedim(1, -1)


# -- loading --------------------------------------------------------------------------------------
def test_compact_safetensors_is_detected_with_its_scale(compact):
    model = load_upscale_model(compact[0])
    assert (model.architecture, model.scale, model.input_channels, model.output_channels) == ("Compact", 2, 3, 3)
    assert model.path == compact[0]


def test_esrgan_pth_is_detected_with_its_scale(esrgan):
    model = load_upscale_model(esrgan[0])
    assert (model.architecture, model.scale) == ("ESRGAN", 4)
    assert model.nbytes == sum(t.numel() * 4 for t in esrgan[1].state_dict().values())


def test_a_module_prefix_from_data_parallel_training_is_removed(tmp_path, compact):
    state = {f"module.{k}": v for k, v in compact[1].state_dict().items()}
    path = tmp_path / "dp.pth"
    torch.save(state, path)
    assert load_upscale_model(path).architecture == "Compact"


def test_fp16_weights_load_and_run(tmp_path, compact):
    path = tmp_path / "half.safetensors"
    save_file({k: v.half() for k, v in compact[1].state_dict().items()}, str(path))
    image = rand_image(12, 10)
    out = upscale_image(load_upscale_model(path), image)
    assert (out - direct(compact[1], image)).abs().max() < 5e-3


# -- upscaling ------------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["compact", "esrgan"])
def test_an_image_that_fits_one_tile_equals_the_model_run_on_the_whole_image(which, request):
    path, net = request.getfixturevalue(which)
    model = load_upscale_model(path)
    image = rand_image(20, 28)
    out = upscale_image(model, image, tile=512)
    assert out.shape == (1, 20 * model.scale, 28 * model.scale, 3)
    torch.testing.assert_close(out, direct(net, image), rtol=0, atol=1e-6)
    assert 0.2 < out.mean() < 0.8 and out.std() > 0.05  # real values, not clipped to a constant


@pytest.mark.parametrize("which, size, tile", [("compact", (70, 90), 32), ("esrgan", (64, 76), 32)])
def test_tiled_upscaling_matches_the_untiled_result(which, size, tile, request):
    # Overlap 32 is capped at tile // 4 = 8 pixels; the cross-fade keeps out the outer 2 pixels of each overlap,
    # where the tile border truncates the receptive field (radius 4 for this compact model; ~20 for this ESRGAN,
    # but with weights that fall below 1e-4 beyond 4 pixels).
    path, net = request.getfixturevalue(which)
    model = load_upscale_model(path)
    image = rand_image(*size, seed=3)
    whole = direct(net, image)
    tiled = upscale_image(model, image, tile=tile, overlap=32)
    assert len(tile_spans(size[0], tile, tile // 4)) >= 3 and len(tile_spans(size[1], tile, tile // 4)) >= 3
    assert (tiled - whole).abs().max() <= TOL


def test_tiles_without_overlap_show_seams(compact):
    model = load_upscale_model(compact[0])
    image = rand_image(64, 64, seed=4)
    seams = upscale_image(model, image, tile=16, overlap=0)
    assert (seams - direct(compact[1], image)).abs().max() > TOL  # what the overlap is there to prevent


class NearestUpscaler:
    """A stand-in model: exact 3x nearest-neighbour upscaling, so any blending error would show."""

    scale, input_channels, output_channels = 3, 3, 3
    path = Path("nearest.pth")

    def __init__(self):
        self.calls: list[tuple[int, int]] = []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(x.shape[-2:]))
        return F.interpolate(x, scale_factor=3, mode="nearest")


def test_tile_blend_weights_add_up_to_one_everywhere():
    model = NearestUpscaler()
    image = rand_image(37, 53, seed=5)
    out = upscale_image(model, image, tile=16, overlap=4)
    expected = F.interpolate(image.movedim(-1, 1), scale_factor=3, mode="nearest").movedim(1, -1)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    assert len(model.calls) == len(tile_spans(37, 16, 4)) * len(tile_spans(53, 16, 4))


def test_tile_spans_are_full_tiles_that_cover_the_size_with_at_least_the_overlap():
    spans = tile_spans(100, 32, 8)
    assert spans[0][0] == 0 and spans[-1][1] == 100
    assert all(end - start == 32 for start, end in spans)
    assert all(prev_end - start >= 8 for (_, prev_end), (start, _) in zip(spans, spans[1:]))
    assert tile_spans(20, 32, 8) == [(0, 20)]


def test_progress_reports_each_tile(compact):
    seen = []
    upscale_image(load_upscale_model(compact[0]), rand_image(40, 40), tile=16, overlap=4,
                  progress=lambda done, total: seen.append((done, total)))
    total = len(tile_spans(40, 16, 4)) ** 2
    assert seen == [(i, total) for i in range(1, total + 1)]


def test_an_alpha_channel_is_resized_bilinearly_beside_the_colour(compact):
    image = rand_image(10, 12, c=4, seed=6)
    out = upscale_image(load_upscale_model(compact[0]), image)
    assert out.shape == (1, 20, 24, 4)
    torch.testing.assert_close(out[..., :3], direct(compact[1], image[..., :3]), rtol=0, atol=1e-6)
    alpha = F.interpolate(image[..., 3:].movedim(-1, 1), size=(20, 24), mode="bilinear").movedim(1, -1)
    torch.testing.assert_close(out[..., 3:], alpha)


def test_a_batch_is_upscaled_image_by_image(compact):
    images = torch.cat([rand_image(9, 9, seed=1), rand_image(9, 9, seed=2)])
    out = upscale_image(load_upscale_model(compact[0]), images)
    # one image at a time against a batch of two: the same sums in another order (tests/numerics.py)
    assert rel_err(out, direct(compact[1], images)) <= path_rtol(compact[1])


# -- out of memory --------------------------------------------------------------------------------
class RunsOutOfMemory:
    """Wraps a model; raises an out-of-memory error for tiles larger than ``max_side``."""

    def __init__(self, model: UpscaleModel, max_side: int, error: Exception):
        self.model, self.max_side, self.error = model, max_side, error
        self.tile_sides: list[int] = []

    def __getattr__(self, name):
        return getattr(self.model, name)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.tile_sides.append(max(x.shape[-2:]))
        if max(x.shape[-2:]) > self.max_side:
            raise self.error
        return self.model(x)


@pytest.mark.parametrize("error", [
    torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:116] DefaultCPUAllocator: can't allocate memory"),
    RuntimeError("MPS backend out of memory"),
])
def test_out_of_memory_halves_the_tile_and_gives_the_same_result(compact, error):
    model = RunsOutOfMemory(load_upscale_model(compact[0]), max_side=32, error=error)
    image = rand_image(100, 100, seed=7)
    out = upscale_image(model, image, tile=128, overlap=32, min_tile=16)
    # the whole image (it fits 128) fails, the first 64-pixel tile fails, then every 32-pixel tile works
    assert model.tile_sides[:2] == [100, 64] and set(model.tile_sides[2:]) == {32}
    assert (out - direct(compact[1], image)).abs().max() <= TOL


def test_out_of_memory_below_the_smallest_tile_is_raised_with_advice(compact):
    error = torch.cuda.OutOfMemoryError("CUDA out of memory")
    model = RunsOutOfMemory(load_upscale_model(compact[0]), max_side=4, error=error)
    with pytest.raises(torch.cuda.OutOfMemoryError) as info:
        upscale_image(model, rand_image(40, 40), tile=32, min_tile=16)
    assert "even with 16-pixel tiles" in "".join(getattr(info.value, "__notes__", []))
    assert sorted(set(model.tile_sides)) == [16, 32]


def test_other_errors_are_not_retried(compact):
    model = RunsOutOfMemory(load_upscale_model(compact[0]), max_side=0, error=RuntimeError("shape mismatch"))
    with pytest.raises(RuntimeError, match="shape mismatch"):
        upscale_image(model, rand_image(40, 40), tile=128)
    assert len(model.tile_sides) == 1


def test_an_image_with_the_wrong_channel_count_is_named(compact):
    with pytest.raises(ValueError, match="image has 2 channels but the upscale model compact-2x.safetensors takes 3"):
        upscale_image(load_upscale_model(compact[0]), torch.zeros(1, 8, 8, 2))
    with pytest.raises(ValueError, match="empty batch"):
        upscale_image(load_upscale_model(compact[0]), torch.zeros(0, 8, 8, 3))


# -- refusing bad files ---------------------------------------------------------------------------
class Payload:
    """Unpickling this creates a file: proof that code in a model file ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_malicious_pickle_is_refused_without_running_it(tmp_path, compact):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    state = dict(compact[1].state_dict())
    state["extra"] = Payload(marker)
    with open(path, "wb") as f:
        pickle.dump(state, f, protocol=2)  # a plain (non-zip) pickle
    torch.save({"params": state}, tmp_path / "evil_zip.pth")  # the usual torch.save zip format
    for file in (path, tmp_path / "evil_zip.pth"):
        with pytest.raises(UpscaleModelError) as info:
            load_upscale_model(file)
        assert f"{file}: refused" in str(info.value) and "weights_only=True" in str(info.value)
        assert ".safetensors" in str(info.value)
    assert not marker.exists()


def test_an_unsupported_extension_is_refused(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x00" * 16)
    with pytest.raises(UpscaleModelError, match=r"model\.onnx: unsupported file type '\.onnx'.*\.safetensors"):
        load_upscale_model(path)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(UpscaleModelError, match=r"nope\.safetensors: no such file"):
        load_upscale_model(tmp_path / "nope.safetensors")


def test_a_truncated_safetensors_file_is_named(tmp_path, compact):
    data = compact[0].read_bytes()
    path = tmp_path / "cut.safetensors"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UpscaleModelError,
                       match=r"cut\.safetensors: not a readable safetensors file.*Download it again"):
        load_upscale_model(path)


def test_random_bytes_in_a_pth_are_named(tmp_path):
    path = tmp_path / "junk.pth"
    path.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(UpscaleModelError, match=r"junk\.pth: (not a readable PyTorch file|refused)"):
        load_upscale_model(path)


def test_weights_of_an_unknown_architecture_are_named_with_their_keys(tmp_path):
    path = tmp_path / "mystery.safetensors"
    save_file({"encoder.weight": torch.zeros(2, 2), "decoder.bias": torch.zeros(2)}, str(path))
    with pytest.raises(UpscaleModelError, match=r"mystery\.safetensors: not an upscale model architecture.*"
                                                r"first keys: decoder\.bias, encoder\.weight"):
        load_upscale_model(path)


def test_read_state_dict_unwraps_params_ema(esrgan):
    state = read_state_dict(esrgan[0])
    assert state.keys() == esrgan[1].state_dict().keys()
