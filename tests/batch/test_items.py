"""Item keys: what changes them, what does not, and model hashing done once per file."""
from __future__ import annotations

import os
from pathlib import Path

from nodegraph.batch.items import (ModelHasher, apply_overrides, build_items, canonical_graph,
                                   item_key)
from nodes.folders import folder_resolver

from .conftest import blob_graph


def key_of(graph, overrides=(), version="1.0", models=None):
    canon = canonical_graph(graph)
    return item_key(apply_overrides(canon, overrides), version, models or {})


def test_key_is_stable_across_processes_and_releases_of_this_code():
    # A fixed value: a change here means every existing batch folder stops resuming.
    assert key_of(blob_graph(), [("2", "seed", 7)], "1.0", {"blob.safetensors": "ab" * 32}) \
        == "4e766033f8742750"


def test_key_changes_with_an_override_value():
    g = blob_graph()
    assert key_of(g, [("2", "seed", 1)]) != key_of(g, [("2", "seed", 2)])


def test_override_and_the_same_value_in_the_graph_give_the_same_key():
    g = blob_graph()
    edited = blob_graph()
    edited.set_param("2", "seed", 5)
    assert key_of(g, [("2", "seed", 5)]) == key_of(edited)


def test_layout_title_and_meta_do_not_change_the_key():
    g = blob_graph()
    moved = blob_graph()
    moved.update_node("2", pos=(999, 999), title="Renamed", color="#ff0000")
    moved.meta["description"] = "moved around"
    assert key_of(g) == key_of(moved)


def test_links_and_modes_change_the_key():
    g = blob_graph()
    bypassed = blob_graph()
    bypassed.set_mode("2", "bypassed")
    assert key_of(g) != key_of(bypassed)


def test_version_and_model_hash_change_the_key():
    g = blob_graph()
    assert key_of(g, version="1.0") != key_of(g, version="1.1")
    assert key_of(g, models={"blob.safetensors": "00" * 32}) != \
        key_of(g, models={"blob.safetensors": "11" * 32})


def test_items_are_numbered_in_grid_order_and_carry_model_hashes(models: Path):
    grid = [(("2", "seed", s),) for s in (5, 6, 7)]
    items = build_items(blob_graph(), grid, version="1.0", resolve=folder_resolver([models]))
    assert [i.index for i in items] == [0, 1, 2]
    assert [i.overrides[0][2] for i in items] == [5, 6, 7]
    assert len({i.key for i in items}) == 3
    assert set(items[0].models) == {"blob.safetensors"}
    assert items[0].models["blob.safetensors"] == ModelHasher().sha256(
        models / "checkpoints" / "blob.safetensors")


def test_a_model_file_is_hashed_once_per_batch_not_per_item(models: Path):
    hasher = ModelHasher()
    grid = [(("2", "seed", s),) for s in range(50)]
    build_items(blob_graph(), grid, version="1.0", resolve=folder_resolver([models]), hasher=hasher)
    assert hasher.hashed == 1


def test_hash_cache_file_spares_a_second_process_the_read(tmp_path: Path, models: Path):
    path = models / "checkpoints" / "blob.safetensors"
    first = ModelHasher(tmp_path / "hashes.json")
    digest = first.sha256(path)
    second = ModelHasher(tmp_path / "hashes.json")
    assert second.sha256(path) == digest
    assert second.hashed == 0


def test_an_edited_model_file_is_hashed_again(tmp_path: Path, models: Path):
    path = models / "checkpoints" / "blob.safetensors"
    hasher = ModelHasher(tmp_path / "hashes.json")
    before = hasher.sha256(path)
    path.write_bytes(b"other weights")
    os.utime(path, ns=(1, 1))
    assert hasher.sha256(path) != before
    assert hasher.hashed == 2


def test_values_that_name_no_model_file_are_left_out_of_the_key(models: Path):
    g = blob_graph()
    g.set_param("1", "ckpt_name", "missing.safetensors")
    items = build_items(g, [()], version="1.0", resolve=folder_resolver([models]))
    assert items[0].models == {}
