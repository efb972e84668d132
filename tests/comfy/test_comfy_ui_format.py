"""Importing ComfyUI's UI workflow format: node for node, widget values in ComfyUI's order, links, groups,
modes, Reroute and Primitive nodes, notes, placeholders, version 1."""
from __future__ import annotations

import copy

import pytest
from comfykit import template

from nodegraph import GraphLoadError
from nodegraph.comfy.common import COMFY_KEY, is_placeholder
from nodegraph.comfy.ui_format import from_workflow
from nodegraph.format import dumps, loads


def imported(data, specs):
    graph, report = from_workflow(data, specs)
    return graph


def workflow(nodes, links=(), **extra):
    """A small 0.4 workflow from node dicts (sockets given as lists of (name, type, link))."""
    out = []
    for n in nodes:
        n = dict(n)
        n.setdefault("pos", [0, 0])
        n.setdefault("mode", 0)
        n["inputs"] = [dict(name=a, type=t, link=lk) for a, t, lk in n.get("inputs", [])]
        n["outputs"] = [dict(name=a, type=t, links=lks) for a, t, lks in n.get("outputs", [])]
        out.append(n)
    data = {"last_node_id": 99, "last_link_id": 99, "nodes": out, "links": [list(lk) for lk in links],
            "groups": [], "version": 0.4}
    data.update(extra)
    return data


# -- the default workflow, node for node ----------------------------------------------------------------
def test_the_default_workflow_keeps_ids_types_and_every_param(specs):
    graph = imported(template("default"), specs)
    assert {n.id: n.type for n in graph.nodes.values()} == {
        "3": "KSampler", "4": "CheckpointLoaderSimple", "5": "EmptyLatentImage", "6": "CLIPTextEncode",
        "7": "CLIPTextEncode", "8": "VAEDecode", "9": "SaveImage",
        "11": "MarkdownNote", "13": "MarkdownNote", "14": "MarkdownNote", "15": "MarkdownNote"}
    assert graph.nodes["3"].params == {"seed": 685468484323813, "steps": 20, "cfg": 8,
                                       "sampler_name": "euler", "scheduler": "normal", "denoise": 1}
    assert graph.nodes["4"].params == {"ckpt_name": "v1-5-pruned-emaonly-fp16.safetensors"}
    assert graph.nodes["5"].params == {"width": 512, "height": 512, "batch_size": 1}
    assert graph.nodes["7"].params == {"text": "text, watermark"}
    assert graph.nodes["9"].params == {"filename_prefix": "SD1.5"}


def test_the_control_after_generate_value_becomes_the_seeds_control_after_run(specs):
    graph = imported(template("default"), specs)
    assert graph.nodes["3"].control_after_run == {"seed": "randomize"}
    refiner = imported(template("sdxl_refiner_prompt_example"), specs).nodes["11"]
    assert refiner.params["noise_seed"] == 0 and refiner.control_after_run == {"noise_seed": "fixed"}
    assert refiner.params["steps"] == 25 and refiner.params["return_with_leftover_noise"] == "disable"


def test_links_name_our_outputs_and_inputs(specs):
    graph = imported(template("default"), specs)
    links = {(lk.src, lk.output, lk.dst, lk.input) for lk in graph.links}
    assert links == {("4", "MODEL", "3", "model"), ("6", "CONDITIONING", "3", "positive"),
                     ("7", "CONDITIONING", "3", "negative"), ("5", "LATENT", "3", "latent_image"),
                     ("4", "CLIP", "6", "clip"), ("4", "CLIP", "7", "clip"), ("3", "LATENT", "8", "samples"),
                     ("4", "VAE", "8", "vae"), ("8", "IMAGE", "9", "images")}


def test_positions_sizes_titles_colours_and_groups_are_kept(specs):
    data = template("default")
    raw = {str(n["id"]): n for n in data["nodes"]}
    graph = imported(data, specs)
    note = graph.nodes["15"]
    assert note.pos == tuple(raw["15"]["pos"]) and note.size == tuple(raw["15"]["size"])
    assert note.title == "Note: Prompt" and note.color == raw["15"]["color"]
    assert note.extra[COMFY_KEY]["bgcolor"] == raw["15"]["bgcolor"]
    assert [(g.title, g.rect, g.color) for g in graph.groups] == [
        (g["title"], tuple(g["bounding"]), g["color"]) for g in data["groups"]]


def test_notes_stay_notes_with_their_text(specs):
    data = template("sdxl_refiner_prompt_example")
    graph = imported(data, specs)
    raw = {str(n["id"]): n for n in data["nodes"]}
    assert graph.nodes["48"].type == "Note"
    assert graph.nodes["48"].params == {"text": raw["48"]["widgets_values"][0]}
    assert graph.nodes["49"].type == "MarkdownNote"


def test_the_import_survives_saving_and_loading(specs):
    graph = imported(template("sdxl_simple_example"), specs)
    assert loads(dumps(graph)) == graph


# -- widget values --------------------------------------------------------------------------------------
def ksampler(widgets, **kw):
    return dict(id=3, type="KSampler", widgets_values=widgets,
                inputs=[("model", "MODEL", None), ("positive", "CONDITIONING", None),
                        ("negative", "CONDITIONING", None), ("latent_image", "LATENT", None)], **kw)


def test_a_workflow_from_before_control_after_generate_maps_without_shifting(specs):
    graph = imported(workflow([ksampler([7, 30, 6.5, "dpmpp_2m", "karras", 0.5])]), specs)
    assert graph.nodes["3"].params == {"seed": 7, "steps": 30, "cfg": 6.5, "sampler_name": "dpmpp_2m",
                                       "scheduler": "karras", "denoise": 0.5}
    assert graph.nodes["3"].control_after_run == {}


def test_missing_trailing_values_take_defaults_and_are_reported(specs):
    graph, report = from_workflow(workflow([ksampler([7, "fixed", 30])]), specs)
    assert graph.nodes["3"].params == {"seed": 7, "steps": 30}  # cfg... take their defaults
    assert any("no value for cfg, sampler_name, scheduler, denoise" in n for n in report.notes)


def test_values_beyond_our_params_are_kept_and_reported(specs):
    graph, report = from_workflow(workflow([ksampler([7, "fixed", 30, 6.5, "euler", "normal", 1.0, "new"])]),
                                  specs)
    assert graph.nodes["3"].extra[COMFY_KEY]["widgets_values"] == ["new"]
    assert any("node 3 (KSampler): 1 widget value(s)" in n for n in report.notes)


def test_known_extra_widgets_are_kept_by_name(specs):
    data = template("image2image")
    graph = imported(data, specs)
    assert graph.nodes["10"].params == {"image": "image2image_input_image.jpg"}
    assert graph.nodes["10"].extra[COMFY_KEY]["inputs"] == {"upload": "image"}


def test_widgets_values_stored_by_name_map_by_name(specs):
    node = dict(id=5, type="EmptyLatentImage", widgets_values={"height": 320, "width": 640, "batch_size": 2})
    graph = imported(workflow([node]), specs)
    assert graph.nodes["5"].params == {"width": 640, "height": 320, "batch_size": 2}


def test_square_brackets_in_prompts_are_escaped_to_keep_comfyuis_meaning(specs):
    node = dict(id=6, type="CLIPTextEncode", widgets_values=["a [red] fox, (b:1.2), \\[x"],
                inputs=[("clip", "CLIP", None)])
    assert imported(workflow([node]), specs).nodes["6"].params["text"] == "a \\[red\\] fox, (b:1.2), \\\\[x"


# -- primitives, reroutes -------------------------------------------------------------------------------
def test_primitive_nodes_are_written_into_every_param_they_feed(specs):
    graph = imported(template("sdxl_simple_example"), specs)
    assert not any(n.type == "PrimitiveNode" for n in graph.nodes.values())
    base, refiner = graph.nodes["10"], graph.nodes["11"]
    assert (base.params["steps"], base.params["end_at_step"]) == (25, 20)
    assert (refiner.params["steps"], refiner.params["start_at_step"]) == (25, 20)
    assert graph.nodes["6"].params["text"] == graph.nodes["15"].params["text"] == (
        "evening sunset scenery blue sky nature, glass bottle with a galaxy in it")
    assert not any(lk.input in ("steps", "text", "end_at_step") for lk in graph.links)


def test_a_primitive_feeding_a_seed_brings_its_control_mode(specs):
    data = workflow([
        dict(id=1, type="PrimitiveNode", widgets_values=[1234, "increment"], outputs=[("INT", "INT", [1])]),
        ksampler([5, "randomize", 20, 8, "euler", "normal", 1],
                 ) | {"inputs": [("seed", "INT", 1)]},
    ], links=[[1, 1, 0, 3, 0, "INT"]])
    data["nodes"][1]["inputs"][0]["widget"] = {"name": "seed"}
    node = imported(data, specs).nodes["3"]
    assert node.params["seed"] == 1234 and node.control_after_run == {"seed": "increment"}


def reroute_chain_workflow():
    """Loader → Reroute 20 → Reroute 21 → VAEDecode.vae."""
    return workflow([
        dict(id=4, type="CheckpointLoaderSimple", widgets_values=["a.safetensors"],
             outputs=[("MODEL", "MODEL", []), ("CLIP", "CLIP", []), ("VAE", "VAE", [1])]),
        dict(id=20, type="Reroute", pos=[100, 50], size=[75, 26], inputs=[("", "*", 1)],
             outputs=[("", "VAE", [2])]),
        dict(id=21, type="Reroute", pos=[200, 60], size=[75, 26], inputs=[("", "*", 2)],
             outputs=[("", "VAE", [3])]),
        dict(id=8, type="VAEDecode", inputs=[("samples", "LATENT", None), ("vae", "VAE", 3)],
             outputs=[("IMAGE", "IMAGE", [])]),
    ], links=[[1, 4, 2, 20, 0, "VAE"], [2, 20, 0, 21, 0, "VAE"], [3, 21, 0, 8, 1, "VAE"]])


def test_reroute_nodes_become_points_on_a_direct_link(specs):
    graph = imported(reroute_chain_workflow(), specs)
    assert set(graph.nodes) == {"4", "8"}
    (link,) = graph.links
    assert (link.src, link.output, link.dst, link.input) == ("4", "VAE", "8", "vae")
    assert link.extra["reroutes"] == [[138, 63], [238, 73]]  # the reroutes' centres, origin first


def test_version_1_links_as_objects_and_native_reroutes_give_the_same_graph(specs):
    old = reroute_chain_workflow()
    new = copy.deepcopy(old)
    new["version"] = 1
    new["state"] = {"lastNodeId": 21, "lastLinkId": 3, "lastGroupId": 0, "lastRerouteId": 1}
    new["links"] = [dict(zip(("id", "origin_id", "origin_slot", "target_id", "target_slot", "type"), lk))
                    for lk in old["links"]]
    del new["last_node_id"], new["last_link_id"]
    assert imported(new, specs).links == imported(old, specs).links
    # a native reroute (version 1: top-level "reroutes", the link's parentId) adds a point
    new["reroutes"] = [{"id": 1, "pos": [50, 40], "linkIds": [1]}]
    new["links"][0]["parentId"] = 1
    (link,) = imported(new, specs).links
    assert link.extra["reroutes"] == [[50, 40], [138, 63], [238, 73]]


def test_a_reroute_without_a_source_leaves_the_input_unconnected_and_says_so(specs):
    data = reroute_chain_workflow()
    data["nodes"][1]["inputs"][0]["link"] = None
    graph, report = from_workflow(data, specs)
    assert graph.links == []
    assert any("node 8 (VAEDecode) input 'vae'" in n and "no source" in n for n in report.notes)


# -- modes ----------------------------------------------------------------------------------------------
def test_muted_and_bypassed_modes_are_kept(specs):
    data = template("hiresfix_latent_workflow")
    for n in data["nodes"]:
        n["mode"] = {10: 4, 18: 2}.get(n["id"], n["mode"])
    graph = imported(data, specs)
    assert graph.nodes["10"].mode == "bypassed" and graph.nodes["18"].mode == "muted"
    assert graph.nodes["3"].mode == "normal"


def test_a_bypassed_unknown_node_is_wired_through_as_comfyui_does_and_kept_muted(specs):
    data = workflow([
        dict(id=5, type="EmptyLatentImage", widgets_values=[64, 64, 1], outputs=[("LATENT", "LATENT", [1])]),
        dict(id=6, type="SomeLatentFilter", mode=4, widgets_values=[0.5],
             inputs=[("strength_map", "MASK", None), ("samples", "LATENT", 1)],
             outputs=[("LATENT", "LATENT", [2])]),
        ksampler([1, "fixed", 20, 8, "euler", "normal", 1]) | {
            "inputs": [("latent_image", "LATENT", 2)]},
    ], links=[[1, 5, 0, 6, 1, "LATENT"], [2, 6, 0, 3, 0, "LATENT"]])
    graph, report = from_workflow(data, specs)
    assert graph.link_into("3", "latent_image").src == "5"
    filt = graph.nodes["6"]
    assert filt.mode == "muted" and is_placeholder(filt) and filt.extra[COMFY_KEY]["mode"] == 4
    assert graph.link_into("6", "samples").src == "5"  # its own input link is kept


# -- unknown types ----------------------------------------------------------------------------------------
def test_unknown_types_become_placeholders_keeping_their_data(specs):
    data = template("gligen_textbox_example")
    graph, report = from_workflow(data, specs)
    raw = {str(n["id"]): n for n in data["nodes"]}
    placeholders = {n.id: n for n in graph.nodes.values() if is_placeholder(n)}
    assert {n.type for n in placeholders.values()} == {"GLIGENLoader", "GLIGENTextBoxApply"}
    assert report.unknown == {"GLIGENLoader": 1, "GLIGENTextBoxApply": 2}
    for node_id, node in placeholders.items():
        assert node.extra[COMFY_KEY]["widgets_values"] == raw[node_id]["widgets_values"]
        kept_outputs = [s["name"] for s in node.extra[COMFY_KEY]["outputs"]]
        assert kept_outputs == [o["name"] for o in raw[node_id]["outputs"]]
    into_apply = {(lk.src, lk.output, lk.input) for lk in graph.inputs_of("27").values()}
    assert into_apply == {("21", "CONDITIONING", "conditioning_to"), ("4", "CLIP", "clip"),
                          ("10", "GLIGEN", "gligen_textbox_model")}
    assert graph.link_into("3", "positive").output == "CONDITIONING"  # the placeholder's own output names
    assert loads(dumps(graph)) == graph


def test_a_subgraph_instance_is_a_placeholder_named_after_its_definition(specs):
    data = template("01_qwen_t2i_subgraphed")
    graph, report = from_workflow(data, specs)
    sub = [n for n in graph.nodes.values() if n.extra.get(COMFY_KEY, {}).get("subgraph")]
    assert sub and all(is_placeholder(n) for n in sub)


@pytest.mark.parametrize("data, message", [
    ({"nodes": "x", "links": []}, "not a ComfyUI workflow"),
    ({"nodes": [{"id": 1}], "links": []}, "nodes\\[0\\] is not a ComfyUI node"),
    ({"nodes": [{"id": 1, "type": "A"}, {"id": 1, "type": "B"}], "links": []}, "node id 1 is used twice"),
    ({"nodes": [], "links": [[1, 2]]}, "links\\[0\\] is not a ComfyUI link"),
])
def test_data_that_is_not_a_workflow_is_a_load_error(specs, data, message):
    with pytest.raises(GraphLoadError, match=message) as exc:
        from_workflow(data, specs)
    assert exc.value.problems[0].code == "bad_comfyui"


def test_a_whole_workflow_in_version_1_imports_as_its_version_0_4_twin(specs):
    old = template("default")
    new = {k: v for k, v in old.items() if k not in ("last_node_id", "last_link_id", "links", "version")}
    new.update(version=1, state={"lastNodeId": old["last_node_id"], "lastLinkId": old["last_link_id"],
                                 "lastGroupId": 0, "lastRerouteId": 0},
               links=[dict(zip(("id", "origin_id", "origin_slot", "target_id", "target_slot", "type"), lk))
                      for lk in old["links"]])
    a, b = imported(old, specs), imported(new, specs)
    assert b.meta["imported_from"].endswith("(UI format 1)")
    b.meta = a.meta
    assert a == b


def test_prompts_naming_textual_inversion_embeddings_are_reported(specs):
    graph, report = from_workflow(template("embedding_example"), specs)
    assert "embedding:SDA768.pt" in graph.nodes["6"].params["text"]  # kept as written
    assert any(n.startswith("node 6 (CLIPTextEncode) param text:") and "SDA768.pt" in n for n in report.notes)


def test_the_newer_frontends_increment_wrap_control_is_read_as_increment(specs):
    graph = imported(workflow([ksampler([7, "increment-wrap", 30, 6.5, "euler", "normal", 1.0])]), specs)
    assert graph.nodes["3"].params["steps"] == 30 and graph.nodes["3"].control_after_run == {"seed": "increment"}
