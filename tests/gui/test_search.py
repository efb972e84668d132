"""The fuzzy node search ranks like a user expects."""
from __future__ import annotations

from gui.search import fuzzy_score, rank


def test_substring_beats_scattered_letters():
    assert fuzzy_score("save", "Save Image") > fuzzy_score("save", "Solid Average Vector Edit")


def test_word_start_initials_match():
    assert fuzzy_score("kss", "KSamplerSelect") is not None
    assert fuzzy_score("kss", "KSamplerSelect") > fuzzy_score("kss", "blocks shaders")


def test_letters_out_of_order_do_not_match():
    assert fuzzy_score("zx", "Save Image") is None


def test_every_query_word_must_match(registry):
    found = [s.type_id for s in rank(registry, "image solid")]
    assert found[0] == "testpack.SolidImage"
    assert rank(registry, "image qqq") == []


def test_filter_limits_results(registry):
    found = rank(registry, "", lambda s: s.output_node)
    assert found and all(s.output_node for s in found)
