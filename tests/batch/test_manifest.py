"""Manifest and resume rules."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from nodegraph.batch.items import build_items
from nodegraph.batch.manifest import (MANIFEST, Manifest, ResumeRefused, open_batch, read_manifest)
from nodegraph.batch.sweeps import Sweep, expand
from nodegraph.errors import UsageError
from nodegraph import format as graph_format

from .conftest import blob_graph


def manifest(graph=None, seeds=(1, 2, 3), version="1.0", models=None) -> Manifest:
    graph = graph or blob_graph()
    sweeps = [Sweep("2", "seed", "x", tuple(seeds))]
    resolve = (lambda name: models) if models else None
    items = build_items(graph, expand(sweeps), version=version, resolve=resolve)
    return Manifest(graph_format.to_data(graph), sweeps, items, version)


def test_a_new_folder_gets_the_manifest(tmp_path: Path):
    m = manifest()
    open_batch(tmp_path / "out", m, resume=False)
    stored = read_manifest(tmp_path / "out")
    assert [i.key for i in stored.items] == [i.key for i in m.items]
    assert stored.sweeps == m.sweeps
    data = json.loads((tmp_path / "out" / MANIFEST).read_text())
    assert data["total"] == 3 and data["graph_sha256"] == m.graph_sha256


def test_resume_on_a_folder_without_manifest_starts_the_batch(tmp_path: Path):
    open_batch(tmp_path, manifest(), resume=True)
    assert (tmp_path / MANIFEST).is_file()


def test_a_folder_holding_a_batch_needs_resume(tmp_path: Path):
    open_batch(tmp_path, manifest(), resume=False)
    with pytest.raises(ResumeRefused, match="already holds a batch .*add --resume"):
        open_batch(tmp_path, manifest(), resume=False)


def test_resume_with_the_same_batch_is_accepted(tmp_path: Path):
    open_batch(tmp_path, manifest(), resume=False)
    again = open_batch(tmp_path, manifest(), resume=True)
    assert len(again.items) == 3


def test_resume_refuses_a_changed_graph_and_names_the_change(tmp_path: Path):
    open_batch(tmp_path, manifest(), resume=False)
    changed = blob_graph()
    changed.set_param("2", "prompt", "an owl")
    with pytest.raises(ResumeRefused, match="graph changed .*node 2 param prompt: 'a fox' → 'an owl'"):
        open_batch(tmp_path, manifest(changed), resume=True)


def test_resume_accepts_a_graph_that_was_only_moved(tmp_path: Path):
    open_batch(tmp_path, manifest(), resume=False)
    moved = blob_graph()
    moved.update_node("3", pos=(5, 5))
    open_batch(tmp_path, manifest(moved), resume=True)


def test_resume_refuses_changed_sweeps(tmp_path: Path):
    open_batch(tmp_path, manifest(), resume=False)
    with pytest.raises(ResumeRefused, match=r"sweeps changed .*2.seed \(3 values\).*2.seed \(4 values\)"):
        open_batch(tmp_path, manifest(seeds=(1, 2, 3, 4)), resume=True)


def test_resume_refuses_a_changed_model_file(tmp_path: Path):
    a = tmp_path / "a.safetensors"
    a.write_bytes(b"old")
    open_batch(tmp_path / "out", manifest(models=a), resume=False)
    a.write_bytes(b"new weights")
    with pytest.raises(ResumeRefused, match="model file blob.safetensors changed"):
        open_batch(tmp_path / "out", manifest(models=a), resume=True)


def test_resume_refuses_another_nodegraph_version(tmp_path: Path):
    open_batch(tmp_path, manifest(version="1.0"), resume=False)
    with pytest.raises(ResumeRefused, match="NodeGraph 1.0 → 2.0"):
        open_batch(tmp_path, manifest(version="2.0"), resume=True)


def test_a_damaged_manifest_is_reported_not_overwritten(tmp_path: Path):
    (tmp_path / MANIFEST).write_text("{not json", encoding="utf-8")
    with pytest.raises(UsageError, match="cannot read the batch manifest"):
        open_batch(tmp_path, manifest(), resume=True)
    assert (tmp_path / MANIFEST).read_text() == "{not json"
