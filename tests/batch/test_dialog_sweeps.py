"""The editor's Batch dialog, Qt-free: the sweep table's rows and the item count, with the engine's
sweep parser (gui.batch.sweeps)."""
from __future__ import annotations

import time

import pytest

from nodegraph.graph import Graph
from nodegraph.plugins import load_registry

from gui.batch.sweeps import SweepRow, count_items, default_rows, range_size

from .conftest import PACKS, blob_graph


@pytest.fixture(scope="module")
def bt_registry():
    """The batch tests' torch-free pack."""
    return load_registry(builtin=True, entry_points=False, folders=[PACKS])


def test_a_graph_with_a_seed_starts_with_a_seed_sweep(bt_registry):
    assert default_rows(blob_graph(), bt_registry) == [SweepRow("2", "seed", "0:8")]
    no_seed = Graph()
    no_seed.add_node("batchtest.SavePNG", {}, id="9")
    assert default_rows(no_seed, bt_registry) == []


def test_the_count_multiplies_the_sweeps_in_order(bt_registry):
    rows = [SweepRow("2", "prompt", "a, b ,c"), SweepRow("Sampler", "seed", "0:8")]
    count = count_items(blob_graph(), bt_registry, rows)
    assert count.ok and count.sizes == [3, 8] and count.total == 24
    assert count.describe() == "24 items: 3 × 8"
    assert count_items(blob_graph(), bt_registry, []).describe().startswith("1 item")


def test_sweeping_one_param_twice_is_refused(bt_registry):
    count = count_items(blob_graph(), bt_registry,
                        [SweepRow("2", "seed", "0:2"), SweepRow("2", "seed", "5,6")])
    assert not count.ok and "2.seed is given twice" in count.error


def test_a_values_file_is_read_relative_to_the_graphs_folder(bt_registry, tmp_path):
    (tmp_path / "prompts.txt").write_text("a fox, at dusk\n\nan owl\n")
    count = count_items(blob_graph(), bt_registry, [SweepRow("2", "prompt", "@prompts.txt")],
                        base_dir=tmp_path)
    assert count.ok and count.total == 2
    missing = count_items(blob_graph(), bt_registry, [SweepRow("2", "prompt", "@nope.txt")],
                          base_dir=tmp_path)
    assert not missing.ok and "cannot read the values file" in missing.error


def test_a_huge_range_is_counted_without_listing_it_and_its_ends_are_checked(bt_registry):
    assert range_size("0:5000000") == (5_000_000, "0", "4999999")
    assert range_size("10:0:-3") == (4, "10", "1")
    assert range_size("0.5:2:0.25") == (6, "0.5", "1.75")
    assert range_size("0:0") is None and range_size("a,b") is None
    started = time.perf_counter()
    count = count_items(blob_graph(), bt_registry, [SweepRow("2", "seed", "0:5000000")])
    assert count.ok and count.total == 5_000_000
    assert time.perf_counter() - started < 2.0  # listing 5 M values through the parser takes ~8 s
    too_big = count_items(blob_graph(), bt_registry, [SweepRow("2", "width", "1:300000")])
    assert not too_big.ok and "value '299999'" in too_big.error
