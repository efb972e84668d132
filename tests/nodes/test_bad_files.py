"""Damaged and hostile files meet the built-in nodes: every loader refuses each kind of bad model file with
a message of ours naming the file (an error raised on purpose: no traceback in the CLI), pickles never
run code, images that would decode to gigabytes are refused from their headers, folder walks survive
link loops, output paths that cannot be written say where and why, and a checkpoint without a VAE
loads and fails only where its VAE is used.

The corpus is generated here, per loader: an empty file, a truncated one, a header that claims more
bytes than the file has, tensor offsets out of range, an unknown dtype, a PNG renamed to a model
file, and a pickle whose unpickling would create a marker file.
"""
from __future__ import annotations

import errno
import json
import os
import pickle
import struct
from pathlib import Path

import pytest
import torch
from nodekit import ROOT, run_cli
from PIL import Image

from nodegraph import NodeExecutionError
from nodegraph.api import Session
from nodegraph.executor import OutputCache

EXAMPLE = ROOT / "examples" / "txt2img.json"
SMALL = ["5.width=64", "5.height=64", "3.steps=1"]


def safetensors_bytes(header: dict, data: bytes = b"") -> bytes:
    blob = json.dumps(header).encode()
    return struct.pack("<Q", len(blob)) + blob + data


class Marker:
    """Unpickling this would create a file: proof that no code ran."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def corpus(marker: Path, pickle_suffix: str = ".ckpt") -> dict[str, bytes]:
    """Bad file contents by name (the extension matters: a pickle is named as its loader expects)."""
    good = safetensors_bytes({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, bytes(16))
    png = Path(ROOT / "examples" / "input" / "fox_sketch.png").read_bytes()
    return {
        "empty.safetensors": b"",
        "truncated.safetensors": good[: len(good) - 9],
        "header-lies.safetensors": struct.pack("<Q", 10**9) + b"{}",
        "offsets-out-of-range.safetensors": safetensors_bytes(
            {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 4096]}}, bytes(16)),
        "unknown-dtype.safetensors": safetensors_bytes(
            {"w": {"dtype": "X99", "shape": [4], "data_offsets": [0, 16]}}, bytes(16)),
        "png-renamed.safetensors": png,
        f"code{pickle_suffix}": pickle.dumps({"state_dict": {"w": Marker(str(marker))}}, protocol=2),
    }


def graph_for(session: Session, loader: str, name: str):
    """A graph whose first failing node is ``loader`` reading the model file ``name``."""
    graph = session.load(str(EXAMPLE))
    for assignment in SMALL + ["4.ckpt_name=sd1.safetensors"]:
        session.set(graph, assignment)
    if loader == "checkpoints":
        session.set(graph, f"4.ckpt_name={name}")
    elif loader == "vae":
        graph.add_node("VAELoader", {"vae_name": name}, id="20")
        graph.connect("20", "VAE", "8", "vae")
    elif loader == "loras":
        graph.add_node("LoraLoaderModelOnly", {"lora_name": name, "strength_model": 1.0}, id="20")
        graph.connect("4", "MODEL", "20", "model")
        graph.connect("20", "MODEL", "3", "model")
    elif loader == "upscale_models":
        graph.add_node("UpscaleModelLoader", {"model_name": name}, id="20")
        graph.add_node("ImageUpscaleWithModel", {}, id="21")
        graph.connect("20", "UPSCALE_MODEL", "21", "upscale_model")
        graph.connect("8", "IMAGE", "21", "image")
        graph.connect("21", "IMAGE", "9", "images")
    elif loader == "embeddings":
        session.set(graph, f"6.text=a fox, embedding:{Path(name).stem}")
    return graph


LOADERS = {"checkpoints": "CheckpointLoaderSimple", "vae": "VAELoader", "loras": "LoraLoaderModelOnly",
           "upscale_models": "UpscaleModelLoader", "embeddings": "CLIPTextEncode"}


@pytest.mark.parametrize("loader", list(LOADERS))
def test_every_kind_of_damaged_model_file_is_refused_on_purpose_naming_the_file(loader, registry, models_dir,
                                                                                tmp_path):
    folder = tmp_path / "models" / loader
    folder.mkdir(parents=True)
    marker = tmp_path / "code-ran"
    files = corpus(marker, ".pt" if loader == "embeddings" else ".ckpt")
    for name, data in files.items():
        (folder / name).write_bytes(data)
    options_dirs = (tmp_path / "models", models_dir)
    from nodegraph import RunOptions

    session = Session(registry, options=RunOptions("cpu", "fp32", tmp_path / "out", options_dirs),
                      cache=OutputCache())
    for name in files:
        with pytest.raises(NodeExecutionError) as info:
            session.run(graph_for(session, loader, name), validate=False)
        error = info.value
        assert error.node_type == LOADERS[loader], (name, str(error))
        assert error.expected, (name, error.traceback_text)
        assert name in str(error), (name, str(error))
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def test_the_cli_prints_a_damaged_checkpoint_as_one_message_without_a_traceback(models_dir, tmp_path):
    (tmp_path / "models" / "checkpoints").mkdir(parents=True)
    (tmp_path / "models" / "checkpoints" / "bad.safetensors").write_bytes(b"\x00" * 12)
    proc = run_cli("run", str(EXAMPLE), "--models", str(tmp_path / "models"), "--out", str(tmp_path / "out"),
                   "--set", "4.ckpt_name=bad.safetensors", cwd=tmp_path)
    assert proc.returncode == 1
    assert "node 4 (CheckpointLoaderSimple) failed: " in proc.stderr and "bad.safetensors" in proc.stderr
    assert "Traceback" not in proc.stderr


# -- images ------------------------------------------------------------------------------------------------
def test_an_animated_gif_over_the_pixel_limit_is_refused_before_any_frame_is_decoded(tmp_path, monkeypatch):
    from nodes import imageio

    frames = [Image.new("P", (1000, 1000), i % 2) for i in range(100)]  # 10⁸ pixels, ~100 kB on disk
    path = tmp_path / "bomb.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    decoded = []
    monkeypatch.setattr(imageio, "_frame_to_arrays", lambda *a: decoded.append(1) or (None, None))
    monkeypatch.setattr(imageio.Image, "MAX_IMAGE_PIXELS", 50_000_000)
    with pytest.raises(imageio.ImageTooLargeError) as info:
        imageio.load_image(path)
    assert decoded == []
    assert str(info.value).startswith(f"{path}: the image has 100000000 pixels in 100 frames, more than the "
                                      "limit of 50000000 pixels")


# -- folders ------------------------------------------------------------------------------------------------
def test_links_back_into_a_models_folder_are_walked_once(tmp_path, models_dir):
    from nodes.folders import ModelFolders

    checkpoints = tmp_path / "models" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "one.safetensors").write_bytes(b"x")
    (checkpoints / "a").symlink_to(".")
    (checkpoints / "b").symlink_to(".")
    (checkpoints / "real").mkdir()
    (checkpoints / "real" / "two.safetensors").write_bytes(b"x")
    (checkpoints / "real" / "up").symlink_to("..")
    found = ModelFolders([tmp_path / "models"], include_user_dirs=False, include_package=False).list("checkpoints")
    assert found == ["one.safetensors", "real/two.safetensors"]


def test_validate_returns_promptly_with_a_link_loop_in_the_models_folder(tmp_path, models_dir):
    checkpoints = tmp_path / "models" / "checkpoints"
    checkpoints.mkdir(parents=True)
    for name in ("a", "b", "c"):  # each link doubled the walk: 3 links were 2^40 visits
        (checkpoints / name).symlink_to(".")
    proc = run_cli("validate", str(EXAMPLE), "--models", str(tmp_path / "models"), cwd=tmp_path)
    assert proc.returncode == 2 and "not found" in proc.stderr


# -- outputs that cannot be written ---------------------------------------------------------------------
def image_graph(session: Session, prefix: str = "out"):
    graph = session.new_graph()
    graph.add_node("LoadImage", {"image": "fox_sketch.png"}, id="1")
    graph.add_node("SaveImage", {"filename_prefix": prefix}, id="2")
    graph.connect("1", "IMAGE", "2", "images")
    return graph


def saving_fails(session: Session, prefix: str = "out") -> str:
    with pytest.raises(NodeExecutionError) as info:
        session.run(image_graph(session, prefix))
    assert info.value.node_type == "SaveImage" and info.value.expected, info.value.traceback_text
    return str(info.value)


def test_an_output_folder_that_is_a_file_is_named_with_what_to_do(session, out_dir):
    out_dir.write_text("a file")
    assert saving_fails(session).endswith(f"cannot use the output folder {out_dir}: a file of that name is "
                                          "in the way; move it or choose another name")


def test_a_prefix_too_long_for_a_file_name_is_refused_before_writing(session, out_dir):
    message = saving_fails(session, "p" * 5000)
    assert "makes a file name (with the counter _00001_.png) of 5011 bytes; file systems allow 255" in message
    assert len(message) < 1000 and not out_dir.exists()  # the prefix is shown cut, not 5000 characters


def test_a_link_loop_under_the_output_folder_is_named(session, out_dir):
    out_dir.mkdir()
    (out_dir / "loop").symlink_to("loop")
    message = saving_fails(session, "loop/x")
    assert f"{out_dir / 'loop'} is a symbolic link that loops or leads nowhere" in message


def test_a_full_disk_names_the_file_and_leaves_no_partial_file(session, out_dir, monkeypatch):
    real_fsync = os.fsync

    def disk_full(fd: int) -> None:
        if os.fstat(fd).st_size > 0:  # the image's bytes, not a folder
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", disk_full)
    message = saving_fails(session)
    assert f"cannot write {out_dir / 'out_00001_.png'}: no space left on the device" in message
    assert list(out_dir.iterdir()) == []


def test_a_read_only_output_folder_says_permission_denied_through_the_cli(models_dir, tmp_path):
    import unprivileged

    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    try:
        proc = unprivileged.run("run", str(EXAMPLE), "--models", str(models_dir), "--out", str(out),
                                *[a for s in SMALL + ["4.ckpt_name=sd1.safetensors"] for a in ("--set", s)],
                                cwd=tmp_path)
    finally:
        out.chmod(0o755)
    assert proc.returncode == 1, proc.stderr
    assert f"cannot write {out / 'txt2img_00001_.png'}: permission denied" in proc.stderr
    assert "Traceback" not in proc.stderr and list(out.iterdir()) == []


# -- a checkpoint without VAE weights ---------------------------------------------------------------------
def test_a_checkpoint_without_vae_weights_loads_and_only_its_vae_use_fails(session, models_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    sd = load_file(str(models_dir / "checkpoints" / "sd1.safetensors"))
    folder = tmp_path / "more" / "checkpoints"
    folder.mkdir(parents=True)
    save_file({k: v for k, v in sd.items() if not k.startswith("first_stage_model.")},
              str(folder / "novae.safetensors"))
    session.options.models_dirs = (tmp_path / "more", models_dir)
    graph = session.load(str(EXAMPLE))
    for assignment in SMALL + ["4.ckpt_name=novae.safetensors"]:
        session.set(graph, assignment)
    with pytest.raises(NodeExecutionError) as info:
        session.run(graph)
    assert (info.value.node_id, info.value.node_type) == ("8", "VAEDecode") and info.value.expected
    assert str(info.value) == ("node 8 (VAEDecode) failed: input 'vae' is empty: the checkpoint "
                               "novae.safetensors has no VAE weights; load a VAE file with Load VAE "
                               "(VAELoader) and connect it instead")
    graph.add_node("VAELoader", {"vae_name": "tiny-vae.safetensors"}, id="20")
    graph.connect("20", "VAE", "8", "vae")
    result = session.run(graph)  # the loaded checkpoint, the prompts and the latent come from the cache
    assert {"3", "4", "6", "7"} <= set(result.stats.cached) and result.ui["9"]["files"]


# -- memory -----------------------------------------------------------------------------------------------------
def test_a_latent_too_large_for_memory_is_not_enough_memory_naming_node_and_params(session):
    graph = session.load(str(EXAMPLE))
    for assignment in ("4.ckpt_name=sd1.safetensors", "5.width=16384", "5.height=16384", "5.batch_size=4096"):
        session.set(graph, assignment)
    with pytest.raises(NodeExecutionError) as info:
        session.run(graph)
    message = str(info.value)
    assert info.value.node_id == "5" and info.value.expected
    assert message.startswith("node 5 (EmptyLatentImage) failed: not enough memory: the node needs 274.9 GB "
                              "more than it could get (its params: batch_size=4096, height=16384, width=16384)")
    assert torch.zeros(1).sum() == 0  # the process goes on
