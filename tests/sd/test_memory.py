"""Device and precision choice, and the model manager: one load per file, placement on the compute
device within a budget, offloading the least recently used models, freeing."""
from __future__ import annotations

import mmap
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from nodes.sd import memory
from nodes.runtime import get_manager, set_manager
from nodes.sd.checkpoint import ModelManager
from nodes.sd.memory import choose_device, choose_dtype, module_bytes
from nodes.sd.testing import write_random_checkpoint


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return write_random_checkpoint(tmp_path_factory.mktemp("mm") / "tiny.safetensors", "sd1", dtype=torch.float16)


# -------------------------------------------------------------------------------- device


def test_auto_device_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(memory, "_mps_available", lambda: False)
    assert choose_device("auto") == torch.device("cpu")
    monkeypatch.setattr(memory, "_mps_available", lambda: True)
    assert choose_device(None) == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert choose_device("auto") == torch.device("cuda")


def test_explicit_device_must_exist(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert choose_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        choose_device("cuda:0")
    with pytest.raises(ValueError, match="unsupported device"):
        choose_device("xla")


# -------------------------------------------------------------------------------- dtype


def test_explicit_dtypes_are_honoured_and_fp32_is_fp32_everywhere():
    choice = choose_dtype("fp32", "cpu")
    assert (choice.unet, choice.vae, choice.text) == (torch.float32,) * 3
    assert choose_dtype("bf16", "cpu").unet == torch.bfloat16
    assert choose_dtype(torch.float16, "cpu").unet == torch.float16


def test_fp16_never_reaches_the_vae_nor_cpu_text_encoders(monkeypatch):
    monkeypatch.setattr(memory, "cpu_bf16_units", lambda: [])
    choice = choose_dtype("fp16", "cpu")
    assert (choice.unet, choice.vae, choice.text) == (torch.float16, torch.float32, torch.float32)


def test_auto_is_fp16_on_cuda(monkeypatch):
    monkeypatch.setattr(memory, "_supports_bf16", lambda device: True)
    choice = choose_dtype("auto", torch.device("cuda"))
    assert (choice.unet, choice.vae) == (torch.float16, torch.bfloat16)
    assert "CUDA" in choice.summary


def test_auto_picks_bf16_on_a_cpu_with_fast_bf16_units(monkeypatch):
    monkeypatch.setattr(memory, "cpu_bf16_units", lambda: ["amx_bf16"])
    monkeypatch.setattr(memory, "cpu_bf16_speedup", lambda: 4.0)
    choice = choose_dtype("auto", "cpu")
    assert choice.unet == choice.vae == torch.bfloat16
    assert choice.summary.startswith("dtype bf16 (auto: CPU has amx_bf16, bf16 matmul 4.0× faster")


@pytest.mark.parametrize(
    "units, speedup, psnr, reason",
    [([], 4.0, 40.0, "no native bf16"), (["avx512_bf16"], 1.1, 40.0, "only 1.1×"), (["amx_bf16"], 4.0, 30.0, "30.0 dB")],
)
def test_auto_stays_fp32_when_bf16_is_not_fast_or_not_good(monkeypatch, units, speedup, psnr, reason):
    monkeypatch.setattr(memory, "cpu_bf16_units", lambda: units)
    monkeypatch.setattr(memory, "cpu_bf16_speedup", lambda: speedup)
    monkeypatch.setattr(memory, "BF16_MEASURED_PSNR_DB", psnr)
    choice = choose_dtype("auto", "cpu")
    assert choice.unet == torch.float32
    assert reason in choice.reason


def test_unknown_dtype_is_an_error():
    with pytest.raises(ValueError, match="fp8"):
        choose_dtype("fp8", "cpu")


# -------------------------------------------------------------------------------- loading


def test_loading_the_same_file_twice_reuses_the_loaded_model(ckpt):
    manager = ModelManager(device="cpu")
    first = manager.load_checkpoint(ckpt)
    second = manager.load_checkpoint(ckpt)
    assert second is first
    assert (manager.stats.loads, manager.stats.reuses) == (1, 1)
    assert first.dtype == torch.float16  # no dtype asked: the file's


def test_a_different_dtype_is_a_different_entry(ckpt):
    manager = ModelManager(device="cpu")
    half = manager.load_checkpoint(ckpt)
    full = manager.load_checkpoint(ckpt, dtype=choose_dtype("fp32", "cpu"))
    assert full is not half and full.dtype == torch.float32
    assert manager.stats.loads == 2
    assert len(manager.loaded()) == 2


def test_a_file_changed_on_disk_is_loaded_again(ckpt, tmp_path):
    path = tmp_path / "edited.safetensors"
    path.write_bytes(ckpt.read_bytes())
    manager = ModelManager(device="cpu")
    first = manager.load_checkpoint(path)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    second = manager.load_checkpoint(path)
    assert second is not first
    assert manager.stats.loads == 2 and len(manager.loaded()) == 1


def test_free_drops_models_so_the_next_use_reloads(ckpt):
    manager = ModelManager(device="cpu")
    manager.load_checkpoint(ckpt)
    assert manager.free(ckpt) == 1
    assert manager.loaded() == []
    manager.load_checkpoint(ckpt)
    assert manager.stats.loads == 2 and manager.stats.frees == 1


def test_the_process_wide_manager_is_shared_and_replaceable():
    assert get_manager() is get_manager()
    mine = ModelManager(device="cpu")
    previous = set_manager(mine)
    try:
        assert get_manager() is mine
    finally:
        set_manager(previous)


# -------------------------------------------------------------------------------- placement


def linear(n: int) -> nn.Module:
    return nn.Linear(n, n, bias=False)  # n² float32 weights


def test_use_places_modules_and_offloads_the_least_recently_used_when_short():
    a, b, c = linear(16), linear(16), linear(16)
    size = module_bytes(a)
    manager = ModelManager(device="cpu", device_budget=2 * size)
    with manager.use(a):
        pass
    with manager.use(b):
        pass
    assert manager.on_device() == [a, b]
    with manager.use(a):  # a becomes the most recently used
        pass
    with manager.use(c) as device:
        assert device == torch.device("cpu")
        assert manager.on_device() == [a, c]  # b went back to CPU RAM to make room
    assert manager.stats.offloads == 1


def test_modules_in_use_are_never_offloaded():
    a, b = linear(16), linear(16)
    manager = ModelManager(device="cpu", device_budget=module_bytes(a))
    with manager.use(a):
        with manager.use(b):
            assert set(map(id, manager.on_device())) == {id(a), id(b)}
    assert manager.stats.offloads == 0


def test_without_keep_on_device_modules_leave_after_use():
    a = linear(8)
    manager = ModelManager(device="cpu", keep_on_device=False)
    with manager.use(a):
        assert manager.on_device() == [a]
    assert manager.on_device() == []


def test_placement_accounts_for_the_weights_it_places():
    a = linear(32)
    manager = ModelManager(device="cpu", device_budget=10 * module_bytes(a))
    with manager.use(a):
        assert manager.placed_bytes() == 32 * 32 * 4
        assert manager.available_bytes() == 9 * 32 * 32 * 4


_ALLOCATOR_PROBE = """
import resource, sys, torch
from nodes.sd.memory import tune_cpu_allocator
applied = tune_cpu_allocator() if sys.argv[1] == "tuned" else False
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):  # the last round is measured: glibc's heap can take two rounds to settle
    before = faults()
    for _ in range(5):
        x = torch.empty(64 * 2**20 // 4).fill_(1.0)  # 64 MB: above glibc's largest automatic threshold
        del x
    grown = faults() - before
print(applied, grown)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning")
def test_tuned_allocator_reuses_large_blocks_instead_of_faulting_fresh_pages():
    """Five 64 MB tensors one after the other: plain glibc maps (and faults) fresh pages for each;
    with the tuning the freed block is reused."""

    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    env.pop("NODEGRAPH_MALLOC_TUNING", None)

    def probe(mode):
        out = subprocess.run([sys.executable, "-c", _ALLOCATOR_PROBE, mode], capture_output=True, text=True,
                             env=env, check=True, cwd=str(Path(__file__).parents[2]))
        applied, grown = out.stdout.split()
        return applied == "True", int(grown)

    applied, tuned = probe("tuned")
    _, plain = probe("plain")
    if not applied:
        pytest.skip("not glibc: mallopt unavailable")
    page_faults_of_64mb = 64 * 2**20 // mmap.PAGESIZE
    assert plain >= 4 * page_faults_of_64mb  # a fresh mapping each time
    assert tuned < page_faults_of_64mb // 4  # reused
