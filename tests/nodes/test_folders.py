"""Model folders: search order, listings, lookups with helpful errors, ComfyUI's extra_model_paths.yaml."""
from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

import nodes.folders as folders_mod
from nodes.folders import ModelFolders, ModelNotFound, ModelPathsConfigError, read_extra_model_paths

OLD = 1_000_000_000  # an mtime (2001) far enough in the past for listings to be cached


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def age_tree(root: Path) -> None:
    """Give every folder under ``root`` an old mtime, so its listing is trusted by the cache."""
    for dirpath, _, _ in os.walk(root):
        os.utime(dirpath, (OLD, OLD))


@pytest.fixture
def no_package(monkeypatch, tmp_path):
    """Point the packaged demo models at an empty folder, so tests see only their own files."""
    monkeypatch.setattr(folders_mod, "PACKAGE_MODELS_DIR", tmp_path / "package_models")
    return tmp_path / "package_models"


@pytest.fixture
def user_dirs(monkeypatch, tmp_path):
    """Stand-ins for the user data folder, the app folder and the user config file."""
    user = tmp_path / "user_data" / "models"
    app = tmp_path / "app" / "models"
    config = tmp_path / "user_config" / "extra_model_paths.yaml"
    monkeypatch.setattr(folders_mod, "user_models_dir", lambda: user)
    monkeypatch.setattr(folders_mod, "APP_MODELS_DIR", app)
    monkeypatch.setattr(folders_mod, "user_config_file", lambda: config)
    return user, app, config


# -- search order ---------------------------------------------------------------------------------
def test_roots_are_searched_models_flag_then_env_then_user_then_app_then_config_then_package(
        tmp_path, user_dirs, no_package):
    user, app, config = user_dirs
    touch(config, textwrap.dedent(f"""
        other:
            base_path: {tmp_path / 'other'}
            checkpoints: ckpts
        """).encode())
    env = {"NODEGRAPH_MODELS": os.pathsep.join([str(tmp_path / "env1"), str(tmp_path / "env2")])}
    f = ModelFolders([tmp_path / "flag"], env=env, include_user_dirs=True)
    assert f.folders("checkpoints") == [
        tmp_path / "flag" / "checkpoints",
        tmp_path / "env1" / "checkpoints",
        tmp_path / "env2" / "checkpoints",
        user / "checkpoints",
        app / "checkpoints",
        tmp_path / "other" / "ckpts",
        no_package / "checkpoints",
    ]


def test_is_default_sections_come_after_models_flag_and_before_user_folders(tmp_path, user_dirs, no_package):
    user, app, _ = user_dirs
    cfg = touch(tmp_path / "paths.yaml", textwrap.dedent(f"""
        comfyui:
            base_path: {tmp_path / 'comfy'}
            is_default: true
            vae: models/vae/
        """).encode())
    f = ModelFolders([tmp_path / "flag"], extra_config=cfg, env={}, include_user_dirs=True)
    assert f.folders("vae") == [tmp_path / "flag" / "vae", tmp_path / "comfy" / "models" / "vae",
                                user / "vae", app / "vae", no_package / "vae"]


def test_testing_mode_skips_the_real_user_folders_and_config(tmp_path, monkeypatch, no_package):
    def forbidden():
        raise AssertionError("a real user folder was read in testing mode")

    monkeypatch.setattr(folders_mod, "user_models_dir", forbidden)
    monkeypatch.setattr(folders_mod, "user_config_file", forbidden)
    f = ModelFolders(env={"NODEGRAPH_TESTING": "1"})
    assert f.folders("checkpoints") == [no_package / "checkpoints"]
    assert f.roots() == [no_package]


def test_the_packaged_demo_models_folder_is_always_searched():
    f = ModelFolders(env={"NODEGRAPH_TESTING": "1"})
    package = Path(folders_mod.__file__).resolve().parent / "models"
    assert f.folders("checkpoints")[-1] == package / "checkpoints"
    assert f.folders("upscale_models")[-1] == package / "upscale_models"


def test_a_folder_named_twice_is_searched_once(tmp_path, no_package):
    f = ModelFolders([tmp_path / "m", tmp_path / "m" / "."], env={"NODEGRAPH_MODELS": str(tmp_path / "m")},
                     include_user_dirs=False)
    assert f.folders("vae") == [tmp_path / "m" / "vae", no_package / "vae"]


# -- listing --------------------------------------------------------------------------------------
def test_list_gives_sorted_relative_names_with_subfolders_and_model_extensions_only(tmp_path, no_package):
    root = tmp_path / "m"
    for name in ["b.safetensors", "a.ckpt", "sd15/c.SAFETENSORS", "sd15/deep/d.pth", "e.pt", "f.bin", "g.sft",
                 "notes.txt", "preview.png", ".hidden.safetensors", ".git/x.safetensors"]:
        touch(root / "checkpoints" / name)
    f = ModelFolders([root], env={}, include_user_dirs=False)
    assert f.list("checkpoints") == ["a.ckpt", "b.safetensors", "e.pt", "f.bin", "g.sft",
                                     "sd15/c.SAFETENSORS", "sd15/deep/d.pth"]
    assert f.list("checkpoints", extensions=[".safetensors"]) == ["b.safetensors", "sd15/c.SAFETENSORS"]


def test_a_name_in_two_folders_is_listed_once_and_found_in_the_first(tmp_path, no_package):
    first = touch(tmp_path / "one" / "vae" / "same.safetensors", b"first")
    touch(tmp_path / "two" / "vae" / "same.safetensors", b"second")
    touch(tmp_path / "two" / "vae" / "only2.safetensors")
    f = ModelFolders([tmp_path / "one", tmp_path / "two"], env={}, include_user_dirs=False)
    assert f.list("vae") == ["only2.safetensors", "same.safetensors"]
    assert f.find("vae", "same.safetensors") == first


def test_missing_category_folders_list_nothing(tmp_path, no_package):
    f = ModelFolders([tmp_path / "nothing_here"], env={}, include_user_dirs=False)
    assert f.list("loras") == []


def test_listing_is_cached_until_a_folder_changes(tmp_path, no_package, monkeypatch):
    root = tmp_path / "m"
    touch(root / "loras" / "sub" / "a.safetensors")
    age_tree(root)
    scans = []
    real_scan = folders_mod._scan
    monkeypatch.setattr(folders_mod, "_scan", lambda dirs: scans.append(1) or real_scan(dirs))
    f = ModelFolders([root], env={}, include_user_dirs=False)

    assert f.list("loras") == ["sub/a.safetensors"]
    assert f.list("loras") == ["sub/a.safetensors"]
    assert len(scans) == 1  # the second listing came from the cache

    touch(root / "loras" / "sub" / "b.safetensors")  # changes sub/'s mtime
    assert f.list("loras") == ["sub/a.safetensors", "sub/b.safetensors"]
    assert len(scans) == 2


def test_a_category_folder_created_later_is_noticed(tmp_path, no_package):
    root = tmp_path / "m"
    root.mkdir()
    f = ModelFolders([root], env={}, include_user_dirs=False)
    assert f.list("embeddings") == []
    touch(root / "embeddings" / "e.pt")
    assert f.list("embeddings") == ["e.pt"]


def test_a_recently_changed_folder_is_rescanned_even_with_an_unchanged_mtime(tmp_path, no_package):
    root = tmp_path / "m"
    touch(root / "vae" / "a.safetensors")
    f = ModelFolders([root], env={}, include_user_dirs=False)
    assert f.list("vae") == ["a.safetensors"]
    stamp = os.stat(root / "vae").st_mtime_ns
    touch(root / "vae" / "b.safetensors")
    os.utime(root / "vae", ns=(stamp, stamp))  # as if both happened within one timestamp tick
    assert f.list("vae") == ["a.safetensors", "b.safetensors"]


def test_refresh_forgets_cached_listings(tmp_path, no_package):
    root = tmp_path / "m"
    touch(root / "vae" / "a.safetensors")
    age_tree(root)
    f = ModelFolders([root], env={}, include_user_dirs=False)
    assert f.list("vae") == ["a.safetensors"]
    touch(root / "vae" / "b.safetensors")
    age_tree(root)  # hide the change from the mtime check
    assert f.list("vae") == ["a.safetensors"]
    f.refresh()
    assert f.list("vae") == ["a.safetensors", "b.safetensors"]


# -- find -----------------------------------------------------------------------------------------
def test_find_returns_the_path_of_a_name_with_subfolders_and_accepts_backslashes(tmp_path, no_package):
    path = touch(tmp_path / "m" / "checkpoints" / "sd15" / "model.safetensors")
    f = ModelFolders([tmp_path / "m"], env={}, include_user_dirs=False)
    assert f.find("checkpoints", "sd15/model.safetensors") == path
    assert f.find("checkpoints", "sd15\\model.safetensors") == path  # as Windows ComfyUI writes it


def test_model_not_found_lists_folders_searched_and_files_found_closest_first(tmp_path, no_package):
    touch(tmp_path / "m" / "checkpoints" / "zebra.safetensors")
    touch(tmp_path / "m" / "checkpoints" / "v1-5-pruned-emaonly.safetensors")
    f = ModelFolders([tmp_path / "m", tmp_path / "absent"], env={}, include_user_dirs=False)
    with pytest.raises(ModelNotFound) as info:
        f.find("checkpoints", "v1-5-pruned.safetensors")
    err = info.value
    assert err.found == ["v1-5-pruned-emaonly.safetensors", "zebra.safetensors"]
    assert err.searched == [tmp_path / "m" / "checkpoints", tmp_path / "absent" / "checkpoints",
                            no_package / "checkpoints"]
    message = str(err)
    assert "checkpoints model 'v1-5-pruned.safetensors' was not found" in message
    assert f"{tmp_path / 'absent' / 'checkpoints'}  (does not exist)" in message
    assert "v1-5-pruned-emaonly.safetensors, zebra.safetensors" in message
    assert "--models DIR" in message and "NODEGRAPH_MODELS" in message
    assert isinstance(err, FileNotFoundError)


@pytest.mark.parametrize("name", ["../secret.safetensors", "/etc/passwd", "C:\\x.safetensors", "a/../../b.pt",
                                  "", "a\x00b.pt"])
def test_find_refuses_names_that_leave_the_model_folders(tmp_path, no_package, name):
    touch(tmp_path / "secret.safetensors")
    touch(tmp_path / "m" / "checkpoints" / "ok.safetensors")
    f = ModelFolders([tmp_path / "m"], env={}, include_user_dirs=False)
    with pytest.raises(ModelNotFound, match="must be a relative path inside the model folders"):
        f.find("checkpoints", name)


def test_a_category_must_be_a_plain_folder_name(tmp_path, no_package):
    f = ModelFolders([tmp_path], env={}, include_user_dirs=False)
    with pytest.raises(ValueError, match="not a folder name"):
        f.list("../checkpoints")


# -- extra_model_paths.yaml -------------------------------------------------------------------------
A1111_EXAMPLE = """\
#config for a1111 ui
a1111:
    base_path: {base}

    checkpoints: models/Stable-diffusion
    configs: models/Stable-diffusion
    vae: models/VAE
    loras: |
         models/Lora
         models/LyCORIS
    upscale_models: |
                  models/ESRGAN
                  models/RealESRGAN
                  models/SwinIR
    embeddings: embeddings
    hypernetworks: models/hypernetworks
    controlnet: models/ControlNet

#comfyui:
#     base_path: path/to/comfyui/
#     checkpoints: models/checkpoints/
"""


def test_comfyui_example_config_for_a1111_maps_its_folders(tmp_path):
    base = tmp_path / "stable-diffusion-webui"
    cfg = touch(tmp_path / "extra_model_paths.yaml", A1111_EXAMPLE.format(base=base).encode())
    extra = read_extra_model_paths(cfg)
    assert extra.default_first == {}
    assert extra.last["checkpoints"] == [base / "models" / "Stable-diffusion"]
    assert extra.last["loras"] == [base / "models" / "Lora", base / "models" / "LyCORIS"]
    assert extra.last["upscale_models"] == [base / "models" / "ESRGAN", base / "models" / "RealESRGAN",
                                            base / "models" / "SwinIR"]
    assert extra.last["embeddings"] == [base / "embeddings"]


def test_models_in_an_a1111_install_are_listed_and_found(tmp_path, no_package):
    base = tmp_path / "webui"
    esrgan = touch(base / "models" / "ESRGAN" / "4x-UltraSharp.pth")
    touch(base / "models" / "RealESRGAN" / "RealESRGAN_x4plus.pth")
    cfg = touch(tmp_path / "extra_model_paths.yaml", A1111_EXAMPLE.format(base=base).encode())
    f = ModelFolders(extra_config=cfg, env={}, include_user_dirs=False)
    assert f.list("upscale_models") == ["4x-UltraSharp.pth", "RealESRGAN_x4plus.pth"]
    assert f.find("upscale_models", "4x-UltraSharp.pth") == esrgan


def test_config_paths_expand_home_and_environment_variables(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MODELS_DISK", str(tmp_path / "disk"))
    cfg = touch(tmp_path / "x.yaml", b"s:\n  base_path: ~/comfy\n  vae: models/vae\n"
                                     b"t:\n  loras: $MODELS_DISK/loras\n")
    extra = read_extra_model_paths(cfg)
    assert extra.last["vae"] == [tmp_path / "home" / "comfy" / "models" / "vae"]
    assert extra.last["loras"] == [tmp_path / "disk" / "loras"]


def test_relative_paths_resolve_against_the_config_files_folder(tmp_path):
    cfg = touch(tmp_path / "conf" / "x.yaml", b"a:\n  base_path: ../shared\n  vae: vae\nb:\n  loras: my_loras\n")
    extra = read_extra_model_paths(cfg)
    assert extra.last["vae"] == [tmp_path / "shared" / "vae"]
    assert extra.last["loras"] == [tmp_path / "conf" / "my_loras"]


def test_absolute_entries_ignore_base_path_and_empty_sections_are_skipped(tmp_path):
    cfg = touch(tmp_path / "x.yaml", f"a:\n  base_path: {tmp_path / 'b'}\n  vae: {tmp_path / 'abs'}\nempty:\n".encode())
    assert read_extra_model_paths(cfg).last == {"vae": [tmp_path / "abs"]}


def test_invalid_yaml_names_the_file_and_line(tmp_path):
    cfg = touch(tmp_path / "extra_model_paths.yaml", b"a1111:\n  base_path: x\n  vae: [unclosed\n")
    with pytest.raises(ModelPathsConfigError, match=r"extra_model_paths.yaml: line \d+ column \d+ is not valid YAML"):
        read_extra_model_paths(cfg)


def test_a_section_that_is_not_a_mapping_is_named(tmp_path):
    cfg = touch(tmp_path / "x.yaml", b"a1111: just a string\n")
    with pytest.raises(ModelPathsConfigError, match="section 'a1111' must map categories to folders"):
        read_extra_model_paths(cfg)


def test_a_category_value_that_is_not_a_path_is_named(tmp_path):
    cfg = touch(tmp_path / "x.yaml", b"a1111:\n  vae: {nested: 1}\n")
    with pytest.raises(ModelPathsConfigError, match=r"a1111\.vae must be a folder path"):
        read_extra_model_paths(cfg)


# -- the process-wide instance --------------------------------------------------------------------------
def test_configure_replaces_the_default_folders(tmp_path, monkeypatch, no_package):
    monkeypatch.setattr(folders_mod, "_default", None)
    touch(tmp_path / "m" / "checkpoints" / "x.safetensors")
    configured = folders_mod.configure(models_dirs=[tmp_path / "m"])
    assert folders_mod.default_folders() is configured
    assert folders_mod.list_models("checkpoints") == ["x.safetensors"]
    assert folders_mod.find_model("checkpoints", "x.safetensors") == tmp_path / "m" / "checkpoints" / "x.safetensors"


def test_the_default_folders_read_nodegraph_models_from_the_environment(tmp_path, monkeypatch, no_package):
    monkeypatch.setattr(folders_mod, "_default", None)
    monkeypatch.setenv("NODEGRAPH_MODELS", str(tmp_path / "env"))
    assert folders_mod.default_folders().folders("vae")[0] == tmp_path / "env" / "vae"
