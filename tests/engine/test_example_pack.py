"""The example pack's nodes, run through the engine like any pack's."""
from __future__ import annotations

import numpy as np
import pytest

from nodegraph import Graph, NodeExecutionError, RunOptions
from nodegraph.executor import Executor, OutputCache
from nodegraph.plugins import REPO_PLUGINS, load_registry


@pytest.fixture(scope="module")
def registry():
    reg = load_registry(builtin=False, entry_points=False, folders=[REPO_PLUGINS])
    assert reg.pack("example_pack").status == "loaded", reg.pack("example_pack").traceback
    return reg


def run(registry, graph, tmp_path, outputs=None):
    ex = Executor(registry, OutputCache(), RunOptions(output_dir=tmp_path))
    return ex.run(graph, outputs=outputs)


def test_prompt_template_fills_subject_and_style_and_keeps_other_braces(registry):
    fn = registry["example_pack.PromptTemplate"]
    assert fn(template="{subject} in {style}, {other}", subject="a fox", style="ink") == \
        "a fox in ink, {other}"


def test_invert_image_maps_each_value_to_one_minus_it(registry):
    image = np.array([[[[0.0, 0.25, 1.0]]]], dtype=np.float32)  # [B,H,W,C]
    out = registry["example_pack.InvertImage"](image=image)
    np.testing.assert_allclose(out, [[[[1.0, 0.75, 0.0]]]])


def save_graph(prefix: str) -> Graph:
    g = Graph()
    t = g.add_node("example_pack.PromptTemplate", {"subject": "x", "style": "y"})
    s = g.add_node("example_pack.SaveText", {"filename_prefix": prefix})
    g.connect(t, "text", s, "text")
    return g


def test_save_text_numbers_files_and_never_overwrites(registry, tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "t_00001.txt").write_text("old")
    result = run(registry, save_graph("sub/t"), tmp_path)
    assert result.ui["2"]["files"] == [str(tmp_path / "sub" / "t_00002.txt")]
    assert (tmp_path / "sub" / "t_00001.txt").read_text() == "old"
    assert (tmp_path / "sub" / "t_00002.txt").read_text() == "a photo of x, y\n"


@pytest.mark.parametrize("prefix", ["../escape", "/abs/path", "a/../../b", "C:\\evil"])
def test_save_text_refuses_prefixes_that_leave_the_output_folder(registry, tmp_path, prefix):
    out = tmp_path / "out"
    with pytest.raises(NodeExecutionError, match="inside the output folder"):
        run(registry, save_graph(prefix), out)
    assert not any(p.is_file() for p in tmp_path.rglob("*"))
