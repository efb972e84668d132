"""Node specs as data: params and their checks, specs, socket types, namespacing, JSON."""
from __future__ import annotations

import json

import pytest

from nodegraph import (Boolean, Combo, Float, InputSpec, Int, NodeSpec, ParamSpec, Registry,
                       RegistryError, RunOptions, SocketType, String, UnknownNodeType, node)
from nodegraph.registry import PackInfo


def test_int_param_accepts_whole_numbers_in_range():
    p = Int("steps", 20, min=1, max=100)
    assert p.check(1) is None and p.check(100) is None


def test_int_param_reports_below_minimum_with_both_numbers():
    assert Int("steps", 20, min=1).check(0) == ("below_min", "0 is below the minimum 1")


def test_int_param_reports_above_maximum():
    assert Int("steps", 20, max=50).check(51) == ("above_max", "51 is above the maximum 50")


def test_int_param_multiple_of_is_enforced_and_names_the_nearest_good_values():
    p = Int("width", 512, min=16, max=1020, step=8, multiple_of=8)
    assert p.check(96) is None and p.check(1016) is None
    assert p.check(100) == ("not_multiple", "100 is not a multiple of 8; use 96 or 104")
    assert p.check(1019) == ("not_multiple", "1019 is not a multiple of 8; use 1016")  # 1024 is above max
    assert p.to_json()["multiple_of"] == 8


def test_int_param_step_alone_is_only_an_editor_hint():
    assert Int("tile_size", 512, min=64, step=32).check(500) is None


@pytest.mark.parametrize("kw", [dict(multiple_of=0), dict(multiple_of=2.5)])
def test_multiple_of_must_be_a_positive_integer(kw):
    with pytest.raises(RegistryError, match="multiple_of"):
        Int("width", 512, **kw)


def test_a_default_that_is_not_a_multiple_is_refused_at_registration():
    with pytest.raises(RegistryError, match="default 100 is invalid: 100 is not a multiple of 8"):
        Int("width", 100, multiple_of=8)


@pytest.mark.parametrize("value", [1.5, True, "20", None, [1]])
def test_int_param_rejects_other_kinds(value):
    code, message = Int("steps", 20).check(value)
    assert code == "wrong_kind" and "expected a whole number" in message


def test_float_param_accepts_integers_but_not_booleans_or_nan():
    p = Float("cfg", 8.0, min=0.0)
    assert p.check(7) is None and p.check(7.5) is None
    assert p.check(True)[0] == "wrong_kind"
    assert p.check(float("nan"))[0] == "wrong_kind"


def test_string_and_boolean_params_check_their_kind():
    assert String("text").check("x") is None
    assert String("text").check(3)[0] == "wrong_kind"
    assert Boolean("on").check(False) is None
    assert Boolean("on").check(0)[0] == "wrong_kind"


def test_combo_rejects_a_value_outside_its_choices_and_suggests_the_closest():
    p = Combo("sampler_name", ["euler", "heun", "dpmpp_2m"])
    code, message = p.check("eulr")
    assert code == "bad_choice"
    assert "euler, heun, dpmpp_2m" in message and "did you mean 'euler'" in message


def test_combo_default_is_the_first_choice():
    assert Combo("s", ["a", "b"]).default == "a"


def test_choices_provider_is_called_with_the_run_options_each_time():
    seen = []

    def provider(options):
        seen.append(options)
        return [f"{options.device}-{len(seen)}"]

    p = Combo("ckpt", provider)
    opts = RunOptions(device="cpu")
    assert p.resolve_choices(opts) == ("cpu-1",)
    assert p.resolve_choices(opts) == ("cpu-2",)
    assert p.check("cpu-3", opts) is None  # evaluated again at check time


def test_zero_argument_choices_provider_is_accepted():
    assert Combo("x", lambda: ["a"]).resolve_choices() == ("a",)


@pytest.mark.parametrize("make, words", [
    (lambda: Int("n", 0, min=5), "default 0 is invalid"),
    (lambda: Int("n", 0, min=3, max=1), "min 3 is above max 1"),
    (lambda: ParamSpec("x", "FLOAT", 0.0, control_after_run="fixed"), "only for INT"),
    (lambda: Int("seed", 0, control_after_run="sometimes"), "not one of fixed"),
    (lambda: Combo("c", None), "needs choices"),
])
def test_invalid_param_definitions_are_rejected_with_the_reason(make, words):
    with pytest.raises(RegistryError, match=words):
        make()


def test_node_decorator_builds_a_spec_with_the_docstring_as_description():
    @node("Neg", category="math", inputs={"x": "INT"}, outputs={"y": "INT"})
    def neg(x):
        """Negate a number."""
        return -x

    assert isinstance(neg, NodeSpec)
    assert neg.description == "Negate a number." and neg.display_name == "Neg"
    assert neg(x=3) == -3  # a spec stays callable
    assert neg.inputs == (InputSpec("x", "INT"),) and [o.name for o in neg.outputs] == ["y"]


def test_spec_knows_whether_its_function_takes_the_context():
    @node("A")
    def a():
        return None

    @node("B")
    def b(ctx):
        return None

    assert not a.takes_context and b.takes_context


def test_input_and_param_names_must_not_clash():
    with pytest.raises(RegistryError, match="used twice"):
        NodeSpec("X", lambda x: x, inputs=(InputSpec("x", "INT"),), params=(Int("x"),))


def test_spec_to_json_is_plain_json_with_every_field(registry):
    data = registry["KSampler"].to_json()
    json.dumps(data)
    assert data["type"] == "KSampler"
    seed = next(p for p in data["params"] if p["name"] == "seed")
    assert seed == {"name": "seed", "kind": "INT", "default": 0, "description": "",
                    "min": 0, "max": 2**64 - 1, "control_after_run": "randomize"}
    sampler = next(p for p in data["params"] if p["name"] == "sampler_name")
    assert sampler["choices"][:2] == ["euler", "euler_ancestral"]
    assert data["inputs"] == [{"name": "model", "type": "BLOB", "optional": True,
                               "description": ""}]


def test_failing_choices_provider_does_not_break_listing():
    def broken(options):
        raise OSError("models folder missing")

    data = Combo("ckpt", broken).to_json()
    assert data["choices"] == [] and "models folder missing" in data["choices_error"]


def test_third_party_ids_are_namespaced_by_pack_and_builtin_ids_are_bare():
    reg = Registry()
    spec = NodeSpec("Thing", lambda: None)
    assert reg.add_node(spec, "mypack").type_id == "mypack.Thing"
    assert reg.add_node(spec, "builtin").type_id == "Thing"
    assert reg["mypack.Thing"].pack == "mypack"


def test_registering_the_same_id_twice_is_an_error_naming_both_packs():
    reg = Registry()
    reg.add_node(NodeSpec("Thing", lambda: None), "builtin")
    with pytest.raises(RegistryError, match="both pack 'builtin' and pack 'other'"):
        reg.add_node(NodeSpec("Thing", lambda: None, pack="other"))


def test_a_node_using_an_unregistered_socket_type_is_rejected():
    with pytest.raises(RegistryError, match="socket type 'WIDGET'.*nodegraph_register_types"):
        Registry().add_node(NodeSpec("X", lambda w: w, inputs={"w": "WIDGET"}))


def test_socket_types_have_colours_and_any_connects_to_everything():
    reg = Registry()
    reg.add_type(SocketType("IMAGE", "#64b5f6"))
    assert reg.color("IMAGE") == "#64b5f6"
    assert reg.compatible("IMAGE", "IMAGE") and reg.compatible("IMAGE", "*")
    assert reg.compatible("*", "INT") and not reg.compatible("IMAGE", "INT")


def test_registering_a_socket_type_again_keeps_the_first_definition():
    reg = Registry()
    reg.add_type(SocketType("IMAGE", "#111111"))
    reg.add_type(SocketType("IMAGE", "#222222"))
    assert reg.color("IMAGE") == "#111111"


def test_unknown_type_lookup_says_which_pack_would_provide_it():
    reg = Registry()
    reg.packs.append(PackInfo("broken", "folder x", "folder", status="failed", error="ImportError: y"))
    reg.add_node(NodeSpec("KSampler", lambda: None))
    with pytest.raises(UnknownNodeType, match="not installed"):
        reg["absent.Node"]
    assert "failed to load (ImportError: y)" in reg.unknown_type_message("broken.Node")
    assert "did you mean 'KSampler'" in reg.unknown_type_message("KSampler2")


def test_default_params_fill_every_param(registry):
    assert registry.default_params("Seeded") == {"seed": 0, "steps": 20}
