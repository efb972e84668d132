"""SPEC parsing and grid expansion."""
from __future__ import annotations

from pathlib import Path

import pytest

from nodegraph.batch.sweeps import MAX_ITEMS, expand, grid_size, parse_sweep, range_bounds, range_values, raw_values
from nodegraph.batch.sweeps import check_distinct
from nodegraph.errors import UsageError


def sweep(session, graph, text, **kw):
    return parse_sweep(graph, session.registry, text, options=session.options, **kw)


def test_half_open_range_has_stop_minus_start_values(session, graph):
    s = sweep(session, graph, "2.seed=0:1000")
    assert len(s.values) == 1000
    assert s.values[:3] == (0, 1, 2) and s.values[-1] == 999


def test_step_range_stops_before_stop(session, graph):
    assert sweep(session, graph, "2.seed=0:1000:7").values[-2:] == (987, 994)
    assert len(sweep(session, graph, "2.seed=0:1000:7").values) == 143


@pytest.mark.parametrize("spec", ["0:1000", "0:1000:7", "5:0:-2", "0.5:2:0.25", "-3:4:3"])
def test_range_bounds_agree_with_the_listed_values(spec):
    values = range_values(spec)
    assert range_bounds(spec) == (len(values), values[0], values[-1])


def test_range_bounds_count_a_huge_range_without_listing_it():
    assert range_bounds(f"0:{MAX_ITEMS}") == (MAX_ITEMS, "0", str(MAX_ITEMS - 1))
    assert range_bounds("a,b") is None
    with pytest.raises(UsageError, match="at most"):
        range_bounds(f"0:{MAX_ITEMS + 1}")


def test_negative_step_counts_down():
    assert range_values("5:0:-2") == ["5", "3", "1"]


def test_decimal_steps_are_exact_for_float_params(session, graph):
    assert sweep(session, graph, "2.delay=0:1:0.1").values == (
        0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def test_values_are_typed_by_the_param_kind(session, graph):
    assert sweep(session, graph, "2.seed=3,1,2").values == (3, 1, 2)
    assert sweep(session, graph, "2.delay=1").values == (1.0,)
    assert type(sweep(session, graph, "2.delay=1").values[0]) is float
    assert sweep(session, graph, "2.prompt=a cat, a dog").values == ("a cat", "a dog")


def test_node_may_be_named_by_its_title(session, graph):
    s = sweep(session, graph, "Sampler.seed=1,2")
    assert (s.node, s.param) == ("2", "seed")


def test_value_file_gives_one_value_a_line_and_keeps_commas(session, graph, tmp_path: Path):
    f = tmp_path / "prompts.txt"
    f.write_text("a fox, at dawn\n\n  an owl, at night\r\nthe sea\n", encoding="utf-8")
    s = sweep(session, graph, f"2.prompt=@{f}")
    assert s.values == ("a fox, at dawn", "  an owl, at night", "the sea")


def test_value_file_relative_to_base_dir(session, graph, tmp_path: Path):
    (tmp_path / "p.txt").write_text("x\ny\n", encoding="utf-8")
    assert sweep(session, graph, "2.prompt=@p.txt", base_dir=tmp_path).values == ("x", "y")


def test_missing_value_file_names_the_file(session, graph, tmp_path: Path):
    with pytest.raises(UsageError, match="cannot read the values file .*nope.txt"):
        sweep(session, graph, f"2.prompt=@{tmp_path / 'nope.txt'}")


@pytest.mark.parametrize("text, message", [
    ("2.seed=5:5", "is empty"),
    ("2.seed=0:10:0", "step must not be 0"),
    ("2.seed=1,,2", "empty value"),
    ("2.seed=1,x", "'x' is not a whole number"),
    ("2.seed=-1:2", "-1 is below the minimum 0"),
    ("2.width=1:300", "value .257.: 257 is above the maximum 256"),
    ("9.seed=1", "no node has the id or title '9'"),
    ("2.steps=1", "has no param 'steps'"),
    ("2.seed", "write NODE.PARAM=SPEC"),
])
def test_bad_sweeps_are_refused_with_the_reason(session, graph, text, message):
    with pytest.raises(UsageError, match=message) as info:
        sweep(session, graph, text)
    assert "--sweep" in str(info.value)


def test_grid_varies_the_last_sweep_fastest(session, graph):
    seeds = sweep(session, graph, "2.seed=0:3")
    prompts = sweep(session, graph, "2.prompt=a,b")
    combos = [tuple(v for _, _, v in o) for o in expand([seeds, prompts])]
    assert combos == [(0, "a"), (0, "b"), (1, "a"), (1, "b"), (2, "a"), (2, "b")]
    assert grid_size([seeds, prompts]) == 6


def test_no_sweeps_is_one_item_with_no_overrides():
    assert list(expand([])) == [()]


def test_the_same_param_swept_twice_is_refused(session, graph):
    a, b = sweep(session, graph, "2.seed=1,2"), sweep(session, graph, "Sampler.seed=3")
    with pytest.raises(UsageError, match="given twice"):
        check_distinct([a, b])


def test_a_string_that_looks_like_a_range_is_a_range_of_texts():
    assert raw_values("1:3") == ["1", "2"]
    assert raw_values("a:b") == ["a:b"]
