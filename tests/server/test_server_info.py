"""What the server says it has: /object_info in ComfyUI's schema, /models, /embeddings, /system_stats."""
from __future__ import annotations

from nodegraph import RunOptions
from serverkit import Client, run


def get(server, path, **params):
    async def scenario():
        async with Client(server.url) as c:
            return await c.get(path, **params)

    return run(scenario())


def test_object_info_describes_every_servable_node_in_comfyuis_schema(server):
    status, info = get(server, "/object_info")
    assert status == 200
    assert sorted(info) == sorted(server.engine.registry.nodes)
    steps = info["Steps"]
    assert steps["input"] == {
        "required": {"steps": ["INT", {"default": 5, "min": 1}], "sleep": ["FLOAT", {"default": 0.0}]},
        "optional": {"x": ["*"]}}
    assert steps["input_order"] == {"required": ["steps", "sleep"], "optional": ["x"]}
    assert (steps["output"], steps["output_name"], steps["output_is_list"]) == (["INT"], ["value"], [False])
    assert (steps["name"], steps["display_name"], steps["category"]) == ("Steps", "Steps", "debug")
    assert steps["output_node"] is False and info["Sink"]["output_node"] is True
    assert steps["python_module"] == "nodes"


def test_object_info_gives_choices_seeds_and_text_widgets_their_options(server):
    _, info = get(server, "/object_info")
    assert info["Pick"]["input"]["required"]["which"] == [["first", "second", "third"], {"default": "first"}]
    seed = info["KSampler"]["input"]["required"]["seed"]
    assert seed == ["INT", {"default": 0, "min": 0, "max": 2**64 - 1, "control_after_generate": True}]
    assert info["Text"]["input"]["required"]["text"] == ["STRING", {"default": "hello", "multiline": True}]
    assert info["Upper"]["input"]["required"]["enabled"] == ["BOOLEAN", {"default": True}]
    assert info["Text"]["description"] == ""


def test_object_info_of_one_class_and_of_an_unknown_one(server):
    status, one = get(server, "/object_info/Const")
    assert status == 200 and list(one) == ["Const"]
    assert get(server, "/object_info/NoSuchNode") == (200, {})


def test_every_endpoint_is_also_under_api(server):
    assert get(server, "/api/object_info/Const") == get(server, "/object_info/Const")
    assert get(server, "/api/prompt") == (200, {"exec_info": {"queue_remaining": 0}})


def test_models_and_embeddings_list_the_model_folders(make_server, tmp_path):
    models = tmp_path / "models"
    (models / "checkpoints" / "sub").mkdir(parents=True)
    (models / "checkpoints" / "sub" / "mine.safetensors").write_bytes(b"")
    (models / "embeddings").mkdir()
    (models / "embeddings" / "EasyNegative.pt").write_bytes(b"")
    srv = make_server(options=RunOptions(device="cpu", output_dir=tmp_path / "out", models_dirs=(models,)))
    status, kinds = get(srv, "/models")
    assert status == 200 and {"checkpoints", "loras", "vae", "embeddings", "upscale_models"} <= set(kinds)
    status, checkpoints = get(srv, "/models/checkpoints")
    assert status == 200 and "sub/mine.safetensors" in checkpoints
    assert "demo-shapes.safetensors" in checkpoints  # the packaged demo model is always listed
    assert get(srv, "/embeddings") == (200, ["EasyNegative"])
    status, reply = get(srv, "/models/no_such_folder")
    assert status == 404 and reply["error"]["type"] == "not_found"


def test_system_stats_describe_the_machine_without_the_token(make_server):
    srv = make_server(token="s3cret")

    async def scenario():
        async with Client(srv.url, token="s3cret") as c:
            return await c.get("/system_stats")

    status, stats = run(scenario())
    assert status == 200
    system = stats["system"]
    assert system["ram_total"] >= system["ram_free"] > 0
    assert system["nodegraph_version"] and system["python_version"] and system["pytorch_version"]
    (device,) = stats["devices"]
    assert device["type"] == "cpu" and device["vram_total"] == system["ram_total"]
    assert "s3cret" not in str(stats)


def test_the_root_says_what_the_server_is(server):
    status, body = get(server, "/")
    assert status == 200 and body["name"] == "NodeGraph"
