"""The graph file: deterministic text, round trips, unknown fields, every load error, migrations,
PNGs, and the JSON Schema in docs/."""
from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
import pytest

from nodegraph import Graph, GraphLoadError
from nodegraph.format import dumps, load, loads, save

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "docs" / "graph.schema.json").read_text())


def small_graph() -> Graph:
    g = Graph(meta={"author": "me"})
    a = g.add_node("Const", {"value": 2}, title="Two", pos=(10, 20.5))
    s = g.add_node("Sink", pos=(300, 20), size=(200, 80), color="#335533")
    g.connect(a, "value", s, "value")
    return g


def codes(exc: pytest.ExceptionInfo[GraphLoadError]) -> list[str]:
    return [p.code for p in exc.value.problems]


def test_writer_sorts_keys_indents_by_two_and_ends_with_a_newline():
    assert dumps(small_graph()) == """{
  "format": "nodegraph",
  "groups": [],
  "links": [
    {
      "from": "1",
      "input": "value",
      "output": "value",
      "to": "2"
    }
  ],
  "meta": {
    "author": "me"
  },
  "nodes": {
    "1": {
      "params": {
        "value": 2
      },
      "pos": [
        10,
        20.5
      ],
      "title": "Two",
      "type": "Const"
    },
    "2": {
      "color": "#335533",
      "params": {},
      "pos": [
        300,
        20
      ],
      "size": [
        200,
        80
      ],
      "type": "Sink"
    }
  },
  "version": 1
}
"""


def test_links_are_written_in_a_stable_order_whatever_the_order_of_edits():
    g1, g2 = Graph(), Graph()
    for g in (g1, g2):
        for i in range(3):
            g.add_node("Const", id=str(i + 1))
        g.add_node("Add", id="9")
    g1.connect("1", "value", "9", "a")
    g1.connect("2", "value", "9", "b")
    g2.connect("2", "value", "9", "b")
    g2.connect("1", "value", "9", "a")
    assert dumps(g1) == dumps(g2)


def test_a_graph_survives_a_round_trip_unchanged():
    g = small_graph()
    assert loads(dumps(g)) == g


def test_unknown_fields_are_kept_everywhere_on_a_round_trip():
    data = json.loads(dumps(small_graph()))
    data["future_top"] = {"x": 1}
    data["nodes"]["1"]["future_node"] = [1, 2]
    data["links"][0]["points"] = [[5, 5]]
    data["groups"] = [{"title": "G", "rect": [0, 0, 10, 10], "locked": True}]
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    g = loads(text)
    assert g.extra == {"future_top": {"x": 1}} and g.nodes["1"].extra == {"future_node": [1, 2]}
    assert dumps(g) == text


def test_save_writes_atomically_and_leaves_no_temporary_file(tmp_path):
    path = save(small_graph(), tmp_path / "sub" / "g.json")
    assert path.read_text() == dumps(small_graph())
    assert [p.name for p in path.parent.iterdir()] == ["g.json"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_a_saved_graph_gets_the_usual_file_mode_and_a_replaced_one_keeps_its_own(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    path = save(small_graph(), tmp_path / "g.json")
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600: graphs are shared
    path.chmod(0o640)
    save(small_graph(), path)
    assert path.stat().st_mode & 0o777 == 0o640


def test_not_json_reports_line_and_column():
    with pytest.raises(GraphLoadError) as exc:
        loads('{"format": "nodegraph",\n  "version": 1,\n  "nodes": {,}}')
    (p,) = exc.value.problems
    assert p.code == "not_json" and "line 3 column 13" in p.message


def test_nan_is_refused_because_json_has_no_nan():
    with pytest.raises(GraphLoadError, match="NaN is not allowed"):
        loads('{"format": "nodegraph", "version": 1, "nodes": {}, "meta": {"x": NaN}}')


def test_bytes_that_are_not_utf8_are_reported():
    with pytest.raises(GraphLoadError, match="not UTF-8") as exc:
        loads(b'{"format": "\xff"}')
    assert codes(exc) == ["not_json"]


@pytest.mark.parametrize("text, code, words", [
    ("[1, 2]", "bad_format", "expected a JSON object"),
    ('{"version": 1, "nodes": {}}', "bad_format", 'no "format" field'),
    ('{"format": "other", "version": 1}', "bad_format", "is 'other'"),
    ('{"last_node_id": 3, "nodes": []}', "bad_format", "looks like a ComfyUI workflow"),
    ('{"format": "nodegraph", "nodes": {}}', "bad_version", 'no "version" field'),
    ('{"format": "nodegraph", "version": "1"}', "bad_version", "must be an integer"),
    ('{"format": "nodegraph", "version": 7}', "bad_version", "newer than this NodeGraph reads"),
    ('{"format": "nodegraph", "version": -1}', "bad_version", "older than any version"),
])
def test_wrong_format_or_version_is_reported_with_what_to_do(text, code, words):
    with pytest.raises(GraphLoadError) as exc:
        loads(text)
    assert codes(exc) == [code] and words in exc.value.problems[0].message


def test_duplicate_node_ids_are_reported():
    text = '{"format": "nodegraph", "version": 1, "nodes": {"1": {"type": "A"}, "1": {"type": "B"}}}'
    with pytest.raises(GraphLoadError) as exc:
        loads(text)
    assert codes(exc) == ["duplicate_id"] and exc.value.problems[0].node_id == "1"


def test_two_links_into_one_input_are_reported():
    data = json.loads(dumps(small_graph()))
    data["links"].append(dict(data["links"][0], **{"from": "2"}))
    with pytest.raises(GraphLoadError) as exc:
        loads(json.dumps(data))
    assert codes(exc) == ["duplicate_link"]


def test_every_malformed_field_is_reported_at_once():
    data = {"format": "nodegraph", "version": 1, "meta": [],
            "nodes": {"1": {"type": 5, "params": [], "pos": [1]},
                      "2": {"type": "Ok", "mode": "sleeping", "control_after_run": {"seed": "x"}}},
            "links": [{"from": "1", "output": "", "to": "2"}],
            "groups": [{"title": 1, "rect": [0, 0]}]}
    with pytest.raises(GraphLoadError) as exc:
        loads(json.dumps(data))
    fields = [(p.node_id, p.field) for p in exc.value.problems]
    assert fields == [(None, "meta"), ("1", "type"), ("1", "params"), ("1", "pos"),
                      ("2", "mode"), ("2", "control_after_run"), (None, "links[0]"),
                      (None, "groups[0].title"), (None, "groups[0].rect")]
    assert "output, input must be non-empty strings" in str(exc.value)


def test_version_0_files_are_migrated_to_version_1():
    v0 = {"format": "nodegraph", "version": 0, "meta": {"m": 1},
          "nodes": [{"id": 1, "type": "Const", "x": 5, "y": 6, "inputs": {"value": 2}},
                    {"id": 2, "type": "Sink", "title": "Out",
                     "inputs": {"value": {"node": 1, "output": "value"}}}]}
    g = loads(json.dumps(v0))
    expected = Graph(meta={"m": 1})
    expected.add_node("Const", {"value": 2}, id="1", pos=(5, 6))
    expected.add_node("Sink", {}, id="2", title="Out")
    expected.connect("1", "value", "2", "value")
    assert g == expected


def test_a_broken_version_0_file_gives_load_errors():
    v0 = {"format": "nodegraph", "version": 0,
          "nodes": [{"id": 1, "type": "Const"}, {"id": 1, "type": "Const"}, {"type": "X"},
                    {"id": 3, "type": "Sink", "inputs": {"value": {"node": [], "output": "v"}}}]}
    with pytest.raises(GraphLoadError) as exc:
        loads(json.dumps(v0))
    assert codes(exc) == ["duplicate_id", "bad_field", "bad_field"]


def test_load_reads_the_graph_from_a_png_saved_by_nodegraph(tmp_path):
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("nodegraph", dumps(small_graph()))
    Image.new("RGB", (4, 4)).save(tmp_path / "out.png", pnginfo=info)
    assert load(tmp_path / "out.png") == small_graph()


def test_a_png_without_a_graph_says_so(tmp_path):
    from PIL import Image, PngImagePlugin

    Image.new("RGB", (4, 4)).save(tmp_path / "plain.png")
    with pytest.raises(GraphLoadError, match="no 'nodegraph' text chunk"):
        load(tmp_path / "plain.png")
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", '{"3": {"class_type": "KSampler", "inputs": {}}}')
    Image.new("RGB", (4, 4)).save(tmp_path / "comfy.png", pnginfo=info)
    with pytest.raises(GraphLoadError, match="ComfyUI 'prompt' chunk"):
        load(tmp_path / "comfy.png")


def test_a_missing_file_is_a_load_error_naming_it(tmp_path):
    with pytest.raises(GraphLoadError, match=r"absent\.json: cannot read the file"):
        load(tmp_path / "absent.json")


def test_the_schema_is_a_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.json")), ids=lambda p: p.name)
def test_example_graphs_match_the_schema_and_are_written_canonically(path):
    jsonschema.validate(json.loads(path.read_text()), SCHEMA)
    assert dumps(load(path)) == path.read_text()


def test_the_schema_rejects_what_the_reader_rejects():
    bad = json.loads(dumps(small_graph()))
    bad["nodes"]["1"]["pos"] = [1]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, SCHEMA)
    with pytest.raises(GraphLoadError):
        loads(json.dumps(bad))
