"""Page control over memory-mapped model files (nodes/sd/mapped.py) and its use by the loaders."""
from __future__ import annotations

import struct
import sys

import pytest
import torch
from safetensors.torch import save_file

from nodes.sd.build import convert
from nodes.sd.checkpoint import load_checkpoint, read_mapped
from nodes.sd.mapped import PAGE, Mapping
from nodes.sd.testing import write_random_checkpoint

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise page control is Linux-only")


def _resident_bytes(address: int) -> int:
    """Resident bytes of the mapping (VMA) holding ``address``, from /proc/self/smaps."""
    current = None
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()[0]
            if "-" in head and ":" not in head:
                lo, hi = (int(x, 16) for x in head.split("-"))
                current = lo <= address < hi
            elif current and head == "Rss:":
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no mapping holds {address:#x}")


@pytest.fixture
def big_file(tmp_path):
    """A safetensors file with two 8 MB tensors (page-sized many times over)."""
    path = tmp_path / "big.safetensors"
    save_file({"a": torch.arange(2 * 2**20, dtype=torch.float32), "b": torch.ones(2 * 2**20)}, str(path))
    return path


@linux
def test_fault_in_makes_the_whole_file_resident(big_file):
    sd, _, mapping = read_mapped(big_file)
    assert mapping is not None and mapping.nbytes >= 16 * 2**20
    assert _resident_bytes(mapping.start) < 2 * 2**20  # making the tensors read nothing
    mapping.fault_in_background().join()
    assert _resident_bytes(mapping.start) >= 16 * 2**20 - PAGE


def test_a_stopped_fault_in_returns_without_reading(big_file):
    _, _, mapping = read_mapped(big_file)
    mapping.stop()
    mapping.fault_in()  # returns at once
    if sys.platform.startswith("linux"):
        assert _resident_bytes(mapping.start) < 2 * 2**20


def test_tensors_equal_safetensors_own_reading_for_every_dtype_and_layout(tmp_path):
    """Views made from the header equal what safetensors reads, whatever the dtype, shape (scalars,
    empty tensors) or alignment (a header whose length is not a multiple of 8 puts every tensor at an
    odd address)."""
    from safetensors.torch import load_file

    g = torch.Generator().manual_seed(0)
    tensors = {
        "f32": torch.randn(3, 5, generator=g), "f16": torch.randn(7, generator=g).half(),
        "bf16": torch.randn(2, 2, 2, generator=g).bfloat16(), "f64": torch.randn(4, generator=g).double(),
        "i64": torch.arange(-3, 3), "i32": torch.arange(5, dtype=torch.int32), "i16": torch.arange(3, dtype=torch.int16),
        "i8": torch.tensor([-128, 0, 127], dtype=torch.int8), "u8": torch.arange(250, 256, dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]), "scalar": torch.tensor(2.5), "empty": torch.zeros(0, 4),
        "f8": torch.tensor([0.5, -2.0, 448.0]).to(torch.float8_e4m3fn),
        "f8b": torch.tensor([0.25, -1.0]).to(torch.float8_e5m2),
    }
    aligned = tmp_path / "a.safetensors"
    save_file(tensors, str(aligned), metadata={"k": "v"})
    # The same file with a 3-byte-longer header (trailing spaces are valid JSON).
    raw = aligned.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    odd = tmp_path / "odd.safetensors"
    odd.write_bytes(struct.pack("<Q", n + 3) + raw[8:8 + n] + b"   " + raw[8 + n:])
    for path in (aligned, odd):
        ours, metadata, mapping = read_mapped(path)
        theirs = load_file(str(path))
        assert metadata == {"k": "v"} and set(ours) == set(theirs) == set(tensors)
        for key, value in theirs.items():
            assert ours[key].dtype == value.dtype and ours[key].shape == value.shape, key
            assert torch.equal(ours[key].view(torch.uint8), value.view(torch.uint8)) if value.dim() else \
                ours[key].item() == value.item(), key
            assert ours[key].numel() == 0 or mapping.contains(ours[key]), key


@linux
def test_release_drops_a_converted_tensors_pages_and_keeps_the_rest(big_file):
    sd, _, mapping = read_mapped(big_file)
    mapping.fault_in()
    before = _resident_bytes(mapping.start)
    a = sd["a"]
    converted = a.to(torch.float16)
    assert mapping.release(a)
    assert before - _resident_bytes(mapping.start) >= 8 * 2**20 - 2 * PAGE
    assert torch.equal(converted, torch.arange(2 * 2**20, dtype=torch.float32).to(torch.float16))
    assert torch.equal(sd["b"], torch.ones(2 * 2**20))  # untouched neighbour
    assert torch.equal(sd["a"][:5], torch.arange(5.0))  # a released page reads the file again


def test_release_never_touches_memory_outside_the_mapping(big_file):
    sd, _, mapping = read_mapped(big_file)
    heap = torch.arange(4 * 2**20, dtype=torch.float32)
    assert not mapping.contains(heap)
    assert not mapping.release(heap)
    assert torch.equal(heap[-3:], torch.tensor([4 * 2**20 - 3.0, 4 * 2**20 - 2.0, 4 * 2**20 - 1.0]))


def test_pickle_files_have_no_mapping(tmp_path):
    path = tmp_path / "w.pt"
    torch.save({"x": torch.ones(3)}, path)
    sd, _, mapping = read_mapped(path)
    assert mapping is None and torch.equal(sd["x"], torch.ones(3))


def test_convert_keeps_tensors_already_right_and_converts_floats_only():
    same = torch.ones(3, dtype=torch.float16)
    ints = torch.arange(3)
    tensors = {"same": same, "ints": ints, "f32": torch.full((2,), 0.5)}
    convert(tensors, torch.float16, None)
    assert tensors["same"] is same and tensors["ints"] is ints
    assert tensors["f32"].dtype == torch.float16 and torch.equal(tensors["f32"], torch.full((2,), 0.5, dtype=torch.float16))


@pytest.mark.parametrize("dtype", [None, torch.float32, torch.bfloat16])
def test_checkpoint_weights_equal_the_file_whether_kept_or_converted(tmp_path, dtype):
    """Releasing pages while converting (and reading the file in when not) never changes a weight."""
    path = tmp_path / "tiny.safetensors"
    write_random_checkpoint(path, "sd1", tiny=True, dtype=torch.float16)
    reference, _, _ = read_mapped(path)
    reference = {k: v.clone() for k, v in reference.items()}
    loaded = load_checkpoint(path, dtype=dtype)
    unet = {"model.diffusion_model." + k: v for k, v in loaded.unet.state_dict().items()}
    text = loaded.text_encoder.models["l"].state_dict()
    for key, value in list(unet.items()) + [("cond_stage_model.transformer.text_model." + k, v) for k, v in text.items()]:
        assert value.dtype == (dtype or torch.float16)
        assert torch.equal(value, reference[key].to(value.dtype)), key


def test_assign_takes_linear_weights_for_1x1_convs_and_names_real_shape_mismatches():
    from torch import nn

    from nodes.sd.build import assign, on_meta

    conv = on_meta(lambda: nn.Conv2d(4, 4, 1))
    weight = torch.arange(16.0).reshape(4, 4)
    assign(conv, {"weight": weight, "bias": torch.zeros(4)})
    assert conv.weight.shape == (4, 4, 1, 1) and torch.equal(conv.weight[:, :, 0, 0], weight)
    assert isinstance(conv.weight, nn.Parameter) and not conv.weight.requires_grad
    wrong = on_meta(lambda: nn.Conv2d(4, 4, 1))
    with pytest.raises(ValueError, match=r"weight: the file holds shape \(4, 2\), the model needs \(4, 4, 1, 1\)"):
        assign(wrong, {"weight": torch.zeros(4, 2), "bias": torch.zeros(4)})
