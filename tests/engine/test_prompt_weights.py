"""Prompt weighting reads brackets the way ComfyUI does (plus A1111's square brackets)."""

import pytest

from nodegraph.prompt_weights import parse_prompt_weights


def weights(text, **kw):
    return [(piece, round(w, 6)) for piece, w in parse_prompt_weights(text, **kw)]


def test_plain_text_is_one_piece_of_weight_one():
    assert weights("a photo of a cat") == [("a photo of a cat", 1.0)]


def test_empty_text_has_no_pieces():
    assert weights("") == []


def test_parentheses_multiply_by_1_1_and_nest():
    assert weights("a (red) ((big)) (((dog)))") == [
        ("a ", 1.0), ("red", 1.1), (" ", 1.0), ("big", 1.21), (" ", 1.0), ("dog", 1.331)]


def test_an_explicit_weight_sets_the_weight():
    assert weights("a (red:1.5) cat") == [("a ", 1.0), ("red", 1.5), (" cat", 1.0)]


def test_an_explicit_weight_replaces_rather_than_multiplies_the_outer_weight():
    assert weights("((red:0.5))") == [("red", 0.5)]


def test_groups_inside_an_explicit_weight_start_from_it():
    assert weights("((a) b:2)") == [("a", 2.2), (" b", 2.0)]


def test_the_number_after_the_last_colon_is_the_weight():
    assert weights("(a:1.2:1.3)") == [("a:1.2", 1.3)]


def test_a_colon_followed_by_no_number_is_text():
    assert weights("(time: now)") == [("time: now", 1.1)]


def test_a_leading_colon_is_text():
    assert weights("(:1.2)") == [(":1.2", 1.1)]


def test_spaces_around_the_number_are_allowed():
    assert weights("(a: 0.8 )") == [("a", 0.8)]


def test_escaped_parentheses_are_literal_and_lose_their_backslash():
    assert weights("\\(not weighted\\) (weighted)") == [("(not weighted) ", 1.0), ("weighted", 1.1)]


def test_an_unclosed_group_is_text():
    assert weights("a (b c") == [("a ", 1.0), ("(b c", 1.0)]


def test_a_stray_closing_parenthesis_is_text_and_shifts_nesting_like_comfyui():
    assert weights("a) b") == [("a) b", 1.0)]
    assert weights("a) ((b))") == [("a) (", 1.0), ("b", 1.1), (")", 1.0)]


def test_an_unclosed_outer_group_with_closed_inner_group_is_weighted_as_comfyui_does():
    assert weights("(a (b)") == [("a ", 1.1), ("(b", 1.1)]


def test_square_brackets_divide_by_1_1():
    assert weights("[cat] [[dog]]") == [("cat", round(1 / 1.1, 6)), (" ", 1.0), ("dog", round(1 / 1.21, 6))]


def test_square_brackets_and_parentheses_cancel():
    assert weights("([cat])") == [("cat", 1.0)]


def test_escaped_square_brackets_are_literal():
    assert weights("\\[cat\\]") == [("[cat]", 1.0)]


def test_mismatched_bracket_kinds_are_text():
    assert weights("(cat]") == [("(cat]", 1.0)]


def test_square_brackets_are_text_when_disabled_as_in_comfyui():
    assert weights("[cat] (dog)", square_brackets=False) == [("[cat] ", 1.0), ("dog", 1.1)]
    assert weights("\\[cat\\]", square_brackets=False) == [("\\[cat\\]", 1.0)]


@pytest.mark.parametrize("text", ["(((", ")))", "(:)", "((a:b:c))", "[(])", "\\", "\\\\((x))", "(a:1e400)"])
def test_odd_inputs_never_raise(text):
    assert all(isinstance(p, str) and isinstance(w, float) for p, w in parse_prompt_weights(text))
