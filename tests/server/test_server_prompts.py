"""POST /prompt and the websocket: a prompt runs and is followed message by message in ComfyUI's
order and shapes; invalid prompts get ComfyUI's error and node_errors structures."""
from __future__ import annotations

import json

from serverkit import Client, const_sink, run


def test_a_prompt_runs_and_the_socket_follows_it_in_comfyuis_order(server):
    async def scenario():
        async with Client(server.url) as c:
            ws = await c.socket("me")
            status, reply = await c.post("/prompt", {"prompt": const_sink(3), "client_id": "me"})
            assert status == 200
            assert set(reply) == {"prompt_id", "number", "node_errors"}
            assert reply["node_errors"] == {} and reply["number"] == 0
            return reply["prompt_id"], await ws.follow(reply["prompt_id"])

    pid, seen = run(scenario())
    types = [t for t in seen.types() if t != "status"]
    assert types == ["execution_start", "execution_cached", "executing", "executing", "executed",
                     "execution_success", "executing"]
    assert [d["node"] for d in seen.of("executing")] == ["1", "2", None]
    assert seen.of("executed") == [{"node": "2", "display_node": "2", "output": {"values": [3]},
                                    "prompt_id": pid}]
    assert seen.of("execution_cached")[0]["nodes"] == []
    start, success = seen.of("execution_start")[0], seen.of("execution_success")[0]
    assert start["prompt_id"] == success["prompt_id"] == pid
    assert start["timestamp"] <= success["timestamp"]
    assert seen.of("status")[-1] == {"status": {"exec_info": {"queue_remaining": 0}}}
    assert seen.types()[-2:] == ["status", "executing"]


def test_the_history_has_the_run_in_comfyuis_shape(server):
    async def scenario():
        async with Client(server.url) as c:
            ws = await c.socket("me")
            pid = await c.queue(const_sink(5), "me", extra_data={"extra_pnginfo": {"workflow": {"x": 1}}})
            await ws.follow(pid)
            return pid, await c.get(f"/history/{pid}"), await c.get("/history")

    pid, (status, one), (_, every) = run(scenario())
    assert status == 200 and list(one) == [pid] and every == one
    entry = one[pid]
    number, prompt_id, prompt, extra_data, outputs = entry["prompt"]
    assert (number, prompt_id, prompt, outputs) == (0, pid, const_sink(5), ["2"])
    assert extra_data["client_id"] == "me" and extra_data["extra_pnginfo"] == {"workflow": {"x": 1}}
    assert isinstance(extra_data["create_time"], int)
    assert entry["outputs"] == {"2": {"values": [5]}}
    assert entry["status"]["status_str"] == "success" and entry["status"]["completed"] is True
    assert [m[0] for m in entry["status"]["messages"]] == ["execution_start", "execution_cached",
                                                            "execution_success"]
    assert entry["meta"] == {"2": {"node_id": "2", "display_node": "2", "parent_node": None,
                                   "real_node_id": "2"}}


def test_a_second_identical_prompt_comes_from_the_cache(server):
    async def scenario():
        async with Client(server.url) as c:
            ws = await c.socket("me")
            await ws.follow(await c.queue(const_sink(4), "me"))
            return await ws.follow(await c.queue(const_sink(4), "me"))

    seen = run(scenario())
    assert [t for t in seen.types() if t != "status"] == ["execution_start", "execution_cached", "executed",
                                                          "execution_success", "executing"]
    assert seen.of("execution_cached")[0]["nodes"] == ["1", "2"]
    assert [d["node"] for d in seen.of("executing")] == [None]
    assert seen.of("executed")[0]["output"] == {"values": [4]}  # cached outputs are shown again


def test_a_client_chosen_prompt_id_and_number_are_kept(server):
    async def scenario():
        async with Client(server.url) as c:
            ws = await c.socket("me")
            _, reply = await c.post("/prompt", {"prompt": const_sink(), "client_id": "me",
                                                "prompt_id": "my-id", "number": 7.5})
            await ws.follow("my-id")
            return reply, await c.get("/history/my-id")

    reply, (_, hist) = run(scenario())
    assert reply == {"prompt_id": "my-id", "number": 7.5, "node_errors": {}}
    assert hist["my-id"]["prompt"][0] == 7.5


def test_widget_values_are_converted_to_the_inputs_type_as_comfyui_does(server):
    async def scenario():
        async with Client(server.url) as c:
            ws = await c.socket("me")
            prompt = {"1": {"class_type": "Const", "inputs": {"value": "12"}},
                      "2": {"class_type": "Scale", "inputs": {"x": ["1", 0], "factor": 2}},
                      "3": {"class_type": "Sink", "inputs": {"value": ["2", 0]}}}
            return await ws.follow(await c.queue(prompt, "me"))

    assert run(scenario()).of("executed")[0]["output"] == {"values": [24.0]}


def refused(server, body):
    async def scenario():
        async with Client(server.url) as c:
            return await c.post("/prompt", body)

    status, reply = run(scenario())
    assert status == 400, reply
    return reply


def test_an_unknown_node_type_is_refused_as_comfyui_does(server):
    reply = refused(server, {"prompt": {"5": {"class_type": "NoSuchNode", "inputs": {},
                                              "_meta": {"title": "Mystery"}}}})
    error = reply["error"]
    assert error["type"] == "missing_node_type"
    assert error["message"].startswith("Node 'Mystery' not found.")
    assert error["details"] == "Node ID '#5'"
    assert error["extra_info"] == {"node_id": "5", "class_type": "NoSuchNode", "node_title": "Mystery"}
    assert reply["node_errors"] == {}


def test_a_node_without_class_type_is_refused(server):
    reply = refused(server, {"prompt": {"1": {"inputs": {}}}})
    assert reply["error"]["type"] == "missing_node_type"
    assert reply["error"]["extra_info"]["class_type"] is None


def test_a_body_without_prompt_and_a_prompt_without_outputs_are_refused(server):
    assert refused(server, {"client_id": "x"})["error"]["type"] == "no_prompt"
    no_outputs = {"1": {"class_type": "Const", "inputs": {"value": 1}}}
    assert refused(server, {"prompt": no_outputs})["error"]["type"] == "prompt_no_outputs"


def node_error(reply, node_id):
    (error,) = reply["node_errors"][node_id]["errors"]
    return error


def test_a_missing_required_input_is_reported_on_its_node(server):
    reply = refused(server, {"prompt": {"2": {"class_type": "Sink", "inputs": {}}}})
    assert reply["error"]["type"] == "prompt_outputs_failed_validation"
    assert reply["error"]["message"] == "Prompt outputs failed validation"
    assert reply["node_errors"]["2"]["class_type"] == "Sink"
    assert reply["node_errors"]["2"]["dependent_outputs"] == ["2"]
    error = node_error(reply, "2")
    assert error["type"] == "required_input_missing"
    assert error["message"] == "Required input is missing"
    assert error["details"].startswith("value: ")
    assert error["extra_info"]["input_name"] == "value"


def test_values_out_of_range_name_the_bound(server):
    prompt = const_sink()
    prompt["1"]["inputs"]["value"] = 5000
    error = node_error(refused(server, {"prompt": prompt}), "1")
    assert error["type"] == "value_bigger_than_max"
    assert error["message"] == "Value 5000 bigger than max of 1000"
    assert error["extra_info"]["received_value"] == 5000
    assert error["extra_info"]["input_config"] == ["INT", {"default": 0, "min": -1000, "max": 1000}]
    prompt["1"]["inputs"]["value"] = -5000
    assert node_error(refused(server, {"prompt": prompt}), "1")["type"] == "value_smaller_than_min"


def test_a_value_not_among_the_choices_is_value_not_in_list(server):
    prompt = {"1": {"class_type": "Pick", "inputs": {"which": "fourth"}},
              "2": {"class_type": "Sink", "inputs": {"value": ["1", 0]}}}
    error = node_error(refused(server, {"prompt": prompt}), "1")
    assert error["type"] == "value_not_in_list" and error["message"] == "Value not in list"
    assert error["extra_info"]["input_config"][0] == ["first", "second", "third"]
    assert "fourth" in error["details"]


def test_a_link_of_the_wrong_type_is_return_type_mismatch(server):
    prompt = {"1": {"class_type": "Const", "inputs": {"value": 2}},
              "2": {"class_type": "Scale", "inputs": {"x": ["1", 0], "factor": 1.5}},
              "3": {"class_type": "Double", "inputs": {"x": ["2", 0]}},
              "4": {"class_type": "Sink", "inputs": {"value": ["3", 0]}}}
    error = node_error(refused(server, {"prompt": prompt}), "3")
    assert error["type"] == "return_type_mismatch"
    assert error["extra_info"]["received_value"] == ["2", "value"]


def test_a_value_that_does_not_convert_is_invalid_input_type(server):
    prompt = const_sink()
    prompt["1"]["inputs"]["value"] = "twelve"
    error = node_error(refused(server, {"prompt": prompt}), "1")
    assert error["type"] == "invalid_input_type"
    assert error["message"] == "Failed to convert an input value to a INT value"


def test_a_link_to_a_missing_node_is_a_bad_linked_input(server):
    prompt = {"2": {"class_type": "Sink", "inputs": {"value": ["99", 0]}}}
    assert node_error(refused(server, {"prompt": prompt}), "2")["type"] == "bad_linked_input"


def test_only_outputs_with_errors_upstream_are_dropped_and_the_others_run(server):
    prompt = {"1": {"class_type": "Const", "inputs": {"value": 2}},
              "2": {"class_type": "Sink", "inputs": {"value": ["1", 0]}},
              "3": {"class_type": "Const", "inputs": {"value": 9999}},
              "4": {"class_type": "Sink", "inputs": {"value": ["3", 0]}},
              "5": {"class_type": "Const", "inputs": {"value": "not even checked"}}}

    async def scenario():
        async with Client(server.url) as c:
            ws = await c.socket("me")
            status, reply = await c.post("/prompt", {"prompt": prompt, "client_id": "me"})
            return status, reply, await ws.follow(reply["prompt_id"])

    status, reply, seen = run(scenario())
    assert status == 200
    assert list(reply["node_errors"]) == ["3"]
    assert reply["node_errors"]["3"]["dependent_outputs"] == ["4"]
    assert [d["node"] for d in seen.of("executed")] == ["2"]


def test_partial_execution_targets_choose_the_outputs(server):
    prompt = {**const_sink(1), "3": {"class_type": "Sink", "inputs": {"value": ["1", 0]}}}

    async def scenario():
        async with Client(server.url) as c:
            ws = await c.socket("me")
            pid = await c.queue(prompt, "me", partial_execution_targets=["3"])
            return await ws.follow(pid)

    assert [d["node"] for d in run(scenario()).of("executed")] == ["3"]


def test_bodies_that_are_not_json_too_deep_or_too_big_are_refused(make_server):
    srv = make_server(max_json_mb=0.001)

    async def scenario():
        async with Client(srv.url) as c:
            not_json = await c.post("/prompt", data=b"{nope", headers={"Content-Type": "application/json"})
            deep = await c.post("/prompt", data=("[" * 100 + "]" * 100).encode())
            big = await c.post("/prompt", {"prompt": const_sink(), "pad": "x" * 5000})
            return not_json, deep, big

    (s1, r1), (s2, r2), (s3, r3) = run(scenario())
    assert s1 == 400 and "not valid JSON" in r1["error"]["message"]
    assert s2 == 400 and "nested more than 64" in r2["error"]["message"]
    assert s3 == 413 and "larger than" in r3["error"]["message"]


def test_a_refused_prompt_leaves_nothing_in_the_queue_or_history(server):
    refused(server, {"prompt": {"2": {"class_type": "Sink", "inputs": {}}}})
    assert server.engine.queue.remaining() == 0
    assert len(server.engine.queue.history) == 0


def test_the_exact_error_body_is_json_serialisable_and_complete(server):
    reply = refused(server, {"prompt": {"2": {"class_type": "Sink", "inputs": {}}}})
    assert set(reply) == {"error", "node_errors"}
    assert set(reply["error"]) == {"type", "message", "details", "extra_info"}
    assert set(reply["node_errors"]["2"]) == {"errors", "dependent_outputs", "class_type"}
    json.dumps(reply)
