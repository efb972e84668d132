"""The atomic writer, output names, PNG metadata and the results log."""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from PIL import Image

from nodegraph.batch.writer import (BATCH_CHUNK, BatchWriter, Output, add_png_text, atomic_write,
                                    finished_items, output_name, read_jsonl, sha256_bytes)


def png_bytes(color=(10, 20, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 3), color).save(buffer, format="PNG")
    return buffer.getvalue()


def test_output_name_has_index_key_node_and_element():
    assert output_name(7, "abcdef0123456789", "12", 1, ".png") == "000007-abcdef0123456789-12-1.png"


def test_output_name_makes_node_ids_file_name_safe():
    assert output_name(1, "k", "../a b:c", 0, ".png") == "000001-k-_a_b_c-0.png"


def test_atomic_write_creates_the_file_and_leaves_no_temporary(tmp_path: Path):
    assert atomic_write(tmp_path / "a.png", b"data") is True
    assert (tmp_path / "a.png").read_bytes() == b"data"
    assert os.listdir(tmp_path) == ["a.png"]


def test_atomic_write_never_replaces_an_existing_output(tmp_path: Path):
    atomic_write(tmp_path / "a.png", b"first")
    assert atomic_write(tmp_path / "a.png", b"second") is False
    assert (tmp_path / "a.png").read_bytes() == b"first"
    assert os.listdir(tmp_path) == ["a.png"]


def test_atomic_write_with_replace_swaps_the_content(tmp_path: Path):
    atomic_write(tmp_path / "m.json", b"1")
    assert atomic_write(tmp_path / "m.json", b"2", replace=True) is True
    assert (tmp_path / "m.json").read_bytes() == b"2"


def test_png_text_chunk_is_readable_and_pixels_unchanged():
    data = png_bytes()
    tagged = add_png_text(data, BATCH_CHUNK, '{"index": 3, "text": "é"}')
    Image.open(io.BytesIO(tagged)).verify()  # chunk CRCs are right
    image = Image.open(io.BytesIO(tagged))
    assert json.loads(image.text[BATCH_CHUNK]) == {"index": 3, "text": "é"}
    assert image.convert("RGB").getpixel((0, 0)) == (10, 20, 30)


def test_non_png_data_is_left_alone():
    assert add_png_text(b"plain text", BATCH_CHUNK, "x") == b"plain text"


def test_writer_writes_files_then_one_results_line(tmp_path: Path):
    writer = BatchWriter(tmp_path)
    record = writer.write_item(4, "k" * 16, [["2", "seed", 9]],
                               [Output("3", 0, ".png", png_bytes()), Output("3", 1, ".png", png_bytes((1, 2, 3)))],
                               seconds=1.5, worker="local-1")
    writer.close()
    names = [f["path"] for f in record["files"]]
    assert names == ["000004-kkkkkkkkkkkkkkkk-3-0.png", "000004-kkkkkkkkkkkkkkkk-3-1.png"]
    lines = list(read_jsonl(tmp_path / "results.jsonl"))
    assert len(lines) == 1 and lines[0]["worker"] == "local-1" and lines[0]["seconds"] == 1.5
    for f in lines[0]["files"]:
        assert sha256_bytes((tmp_path / f["path"]).read_bytes()) == f["sha256"]
    meta = json.loads(Image.open(tmp_path / names[0]).text[BATCH_CHUNK])
    assert meta == {"index": 4, "key": "k" * 16, "overrides": [["2", "seed", 9]]}


def test_a_second_write_of_an_item_keeps_the_first_files(tmp_path: Path):
    writer = BatchWriter(tmp_path)
    first = writer.write_item(0, "k", [], [Output("3", 0, ".png", png_bytes())], seconds=1, worker="a")
    again = writer.write_item(0, "k", [], [Output("3", 0, ".png", png_bytes((9, 9, 9)))], seconds=1,
                              worker="b")
    writer.close()
    assert again["files"][0]["sha256"] == first["files"][0]["sha256"]
    assert writer.kept_existing == 1


def test_writer_removes_temporary_files_of_a_crashed_run(tmp_path: Path):
    (tmp_path / ".000001-k-3-0.png.1234abcd.ngtmp").write_bytes(b"half a png")
    (tmp_path / "keep.txt").write_text("mine")
    writer = BatchWriter(tmp_path)
    writer.close()
    assert writer.removed_temp == 1
    assert sorted(os.listdir(tmp_path)) == ["errors.jsonl", "keep.txt", "results.jsonl"]


def test_a_torn_last_results_line_is_cut_before_appending(tmp_path: Path):
    (tmp_path / "results.jsonl").write_text('{"index": 0}\n{"index": 1, "fi', encoding="utf-8")
    writer = BatchWriter(tmp_path)
    writer.results.append({"index": 2})
    writer.close()
    assert [r["index"] for r in read_jsonl(tmp_path / "results.jsonl")] == [0, 2]


def test_finished_items_need_matching_key_and_intact_files(tmp_path: Path):
    writer = BatchWriter(tmp_path)
    for i in range(3):
        writer.write_item(i, f"key{i}", [], [Output("3", 0, ".png", png_bytes((i, i, i)))],
                          seconds=0, worker="w")
    writer.close()
    (tmp_path / output_name(1, "key1", "3", 0, ".png")).unlink()  # lost
    damaged = tmp_path / output_name(2, "key2", "3", 0, ".png")
    damaged.write_bytes(b"not what was recorded")
    done, stale = finished_items(tmp_path, {0: "key0", 1: "key1", 2: "key2"})
    assert sorted(done) == [0]
    assert stale == [damaged]
    done, _ = finished_items(tmp_path, {0: "other", 1: "key1", 2: "key2"})
    assert done == {}


def test_full_verification_catches_a_same_size_change(tmp_path: Path):
    writer = BatchWriter(tmp_path)
    writer.write_item(0, "k", [], [Output("3", 0, ".txt", b"abc")], seconds=0, worker="w")
    writer.close()
    (tmp_path / output_name(0, "k", "3", 0, ".txt")).write_bytes(b"abd")
    assert sorted(finished_items(tmp_path, {0: "k"})[0]) == [0]  # sizes agree
    assert finished_items(tmp_path, {0: "k"}, verify="sha256")[0] == {}


@pytest.mark.parametrize("ext", [".png", ".txt"])
def test_files_keep_their_extension(tmp_path: Path, ext: str):
    writer = BatchWriter(tmp_path)
    record = writer.write_item(0, "k", [], [Output("9", 0, ext, b"x")], seconds=0, worker="w")
    writer.close()
    assert record["files"][0]["path"].endswith(ext)
