"""The run history: bounded, persisted one file per entry, reloaded in order, outputs by path; what a
history list shows (seed, prompt summary, thumbnail)."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from nodegraph import Graph, Int, Registry, String, node
from nodegraph.history import History, HistoryEntry, HistoryRemoved, default_history_folder, summarize


def entry(entry_id: str, finished: float, *, status: str = "success", images: tuple[str, ...] = (),
          graph: Graph | None = None) -> HistoryEntry:
    g = graph or Graph()
    if graph is None:
        g.add_node("Const", {"value": int(finished)})
    outputs = {"9": {"images": list(images), "files": list(images)}} if images else {}
    return HistoryEntry(entry_id, finished, status, finished - 2.5, finished, g, outputs,
                        executed=("1",), cached=("2",), targets=("9",), seed=7, summary="a fox",
                        extra={"comfy": {"client_id": "abc"}})


def test_entries_persist_and_reload_in_order_with_their_graphs(tmp_path):
    history = History(tmp_path)
    for k in range(3):
        history.add(entry(f"id-{k}", 1_800_000_000.0 + k, images=(f"/out/img_{k}.png",)))
    again = History(tmp_path)
    assert [e.id for e in again.entries()] == ["id-0", "id-1", "id-2"]
    loaded, original = again.get("id-1"), history.get("id-1")
    assert loaded == original
    assert loaded.graph == original.graph
    assert loaded.duration == 2.5
    assert loaded.images == ["/out/img_1.png"] and loaded.thumbnail == "/out/img_1.png"


def test_the_history_keeps_only_the_newest_entries_and_deletes_the_files_of_the_others(tmp_path):
    history = History(tmp_path, max_entries=3)
    for k in range(5):
        history.add(entry(f"id-{k}", 1_800_000_000.0 + k))
    assert [e.id for e in history.entries()] == ["id-2", "id-3", "id-4"]
    assert len(list(tmp_path.glob("*.json"))) == 3
    assert [e.id for e in History(tmp_path).entries()] == ["id-2", "id-3", "id-4"]


def test_a_smaller_bound_on_reload_drops_the_oldest_files(tmp_path):
    full = History(tmp_path)
    for k in range(4):
        full.add(entry(f"id-{k}", 1_800_000_000.0 + k))
    assert [e.id for e in History(tmp_path, max_entries=2).entries()] == ["id-2", "id-3"]
    assert len(list(tmp_path.glob("*.json"))) == 2


def test_delete_and_clear_remove_entries_and_their_files_and_say_so(tmp_path):
    changes: list[HistoryRemoved] = []
    history = History(tmp_path, on_change=changes.append)
    for k in range(3):
        history.add(entry(f"id-{k}", 1_800_000_000.0 + k, images=("/out/x.png",)))
    assert history.delete(["id-1", "unknown"]) == ["id-1"]
    assert [e.id for e in History(tmp_path).entries()] == ["id-0", "id-2"]
    history.clear()
    assert len(history) == 0 and list(tmp_path.glob("*.json")) == []
    assert changes == [HistoryRemoved(("id-1",)), HistoryRemoved(("id-0", "id-2"), cleared=True)]


def test_last_gives_the_newest_entries(tmp_path):
    history = History()
    for k in range(4):
        history.add(entry(f"id-{k}", 1_800_000_000.0 + k))
    assert [e.id for e in history.entries(last=2)] == ["id-2", "id-3"]
    assert history.entries(last=0) == []


def test_a_damaged_file_costs_only_its_own_entry(tmp_path, caplog):
    history = History(tmp_path)
    history.add(entry("good", 1_800_000_000.0))
    history.add(entry("bad", 1_800_000_001.0))
    bad_file = next(p for p in tmp_path.glob("*.json") if "bad" in p.name)
    bad_file.write_text("{not json", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="nodegraph.history"):
        again = History(tmp_path)
    assert [e.id for e in again.entries()] == ["good"]
    assert str(bad_file) in caplog.text


def test_an_entry_file_is_plain_json_with_paths_not_images(tmp_path):
    History(tmp_path).add(entry("one", 1_800_000_000.0, images=("/out/a.png",)))
    (path,) = tmp_path.glob("*.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["outputs"] == {"9": {"images": ["/out/a.png"], "files": ["/out/a.png"]}}
    assert data["graph"]["format"] == "nodegraph"
    assert path.stat().st_size < 4096


def test_an_entry_with_an_unknown_status_is_refused():
    with pytest.raises(ValueError, match="status"):
        HistoryEntry("x", 0, "done", 0.0, 1.0, Graph())


def test_the_default_folder_is_the_user_data_folder_except_under_tests(monkeypatch, tmp_path):
    assert default_history_folder() is None  # NODEGRAPH_TESTING=1 in the suite
    monkeypatch.setenv("NODEGRAPH_TESTING", "0")
    monkeypatch.setattr("platformdirs.user_data_dir", lambda name, appauthor=None: str(tmp_path / name))
    assert default_history_folder() == tmp_path / "NodeGraph" / "history"


# -- summarize --------------------------------------------------------------------------------------
@node("Encode", params=[String("text", "", multiline=True)], outputs={"c": "STRING"})
def encode(text: str) -> str:
    return text


@node("Sample", inputs={"positive": "STRING", "negative": "STRING"},
      params=[Int("noise_seed", 0), Int("seed", 0, control_after_run="randomize")], outputs={"x": "INT"})
def sample(positive: str, negative: str, noise_seed: int, seed: int) -> int:
    return seed


@pytest.fixture
def sd_like() -> Registry:
    reg = Registry()
    reg.add_node(encode)
    reg.add_node(sample)
    return reg


def test_the_summary_is_the_text_feeding_positive_and_the_seed_the_first_seed_param(sd_like):
    g = Graph()
    neg = g.add_node("Encode", {"text": "blurry"}, id="2")
    pos = g.add_node("Encode", {"text": "a lighthouse\n\nat  dusk"}, id="3")
    s = g.add_node("Sample", {"noise_seed": 99, "seed": 5}, id="4")
    g.connect(pos, "c", s, "positive")
    g.connect(neg, "c", s, "negative")
    assert summarize(g, sd_like) == (99, "a lighthouse at dusk")


def test_a_long_prompt_is_cut_and_a_linked_seed_is_not_taken(sd_like):
    g = Graph()
    enc = g.add_node("Encode", {"text": "word " * 100})
    s = g.add_node("Sample", {"noise_seed": 1, "seed": 2})
    g.connect(enc, "c", s, "positive")
    g.connect(enc, "c", s, "negative")
    g.add_node("Sample", {"noise_seed": 3, "seed": 4}, id="z")
    seed, summary = summarize(g, sd_like)
    assert seed == 1
    assert len(summary) == 200 and summary.endswith("…")


def test_a_graph_without_text_or_seed_has_neither(sd_like):
    assert summarize(Graph(), sd_like) == (None, "")


def test_history_files_are_named_by_finish_time_and_id(tmp_path):
    History(tmp_path).add(entry("a/b c", 1_800_000_000.25))
    assert [p.name for p in tmp_path.glob("*.json")] == ["1800000000250-a_b_c.json"]
    assert [e.id for e in History(tmp_path).entries()] == ["a/b c"]


def test_re_adding_an_entry_replaces_it_and_its_file(tmp_path):
    history = History(tmp_path)
    history.add(entry("same", 1_800_000_000.0))
    history.add(entry("same", 1_800_000_005.0, status="error"))
    assert len(history) == 1 and len(list(Path(tmp_path).glob("*.json"))) == 1
    assert History(tmp_path).get("same").status == "error"


def test_long_numeric_node_ids_order_the_summary_and_images_numerically(sd_like):
    g = Graph()
    g.add_node("Encode", {"text": "second"}, id="1" * 400)
    g.add_node("Encode", {"text": "first"}, id="10")
    assert summarize(g, sd_like) == (None, "first")
    e = HistoryEntry("x", 0, "success", 0.0, 1.0, g, {"9" * 400: {"images": ["b.png"]}, "2": {"images": ["a.png"]}})
    assert e.images == ["a.png", "b.png"]
