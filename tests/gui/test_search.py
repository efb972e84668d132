"""The fuzzy node search ranks like a user expects."""
from __future__ import annotations

from PySide6.QtCore import Qt

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


def _registry_of(*entries):
    """A registry of (type id, display name, pack) entries (pack "" = built-in)."""
    from nodegraph.registry import NodeSpec, Registry

    reg = Registry()
    for type_id, name, pack in entries:
        reg.add_node(NodeSpec(type_id, lambda: None, display_name=name, category="image"), pack or None)
    return reg


def test_a_built_in_prefix_match_ranks_before_a_packs():
    reg = _registry_of(("SaveImage", "Save Image", ""), ("SaveText", "Save Text", "example_pack"),
                       ("VAESaver", "Sample Averager", ""))
    assert [s.display_name for s in rank(reg, "save")] == ["Save Image", "Save Text", "Sample Averager"]


def test_an_exact_name_ranks_before_longer_names_that_start_with_it():
    reg = _registry_of(("KSamplerSelect", "KSamplerSelect", ""), ("KSamplerAdvanced", "KSampler (Advanced)", ""),
                       ("KSampler", "KSampler", ""))
    assert rank(reg, "ksampler")[0].type_id == "KSampler"


def test_the_search_popup_shows_whole_category_names(window, qtbot):
    from PySide6.QtGui import QFontMetrics

    from gui.search import SearchPopup, row_texts
    from nodegraph.registry import NodeSpec, Registry

    reg = Registry()
    for type_id, name, category in (("A", "Sampler Euler Ancestral CFG++", "sampling/custom_sampling/samplers"),
                                    ("B", "Basic Scheduler", "sampling/custom_sampling/schedulers")):
        reg.add_node(NodeSpec(type_id, lambda: None, display_name=name, category=category))
    popup = SearchPopup(reg, window.view)
    popup.open(window.view.rect().center())
    fm = QFontMetrics(popup.list.font())
    width = popup.list.viewport().width()
    for i in range(popup.list.count()):
        it = popup.list.item(i)
        name, side = row_texts(it.text(), it.data(Qt.UserRole + 1), width, fm)
        assert side == it.data(Qt.UserRole + 1) and name == it.text()
    popup.close_popup()
