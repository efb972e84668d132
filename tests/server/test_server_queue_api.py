"""GET/POST /queue, /interrupt, /history over a real server: order, delete and clear, interrupting,
two clients at once, and a failing node that does not stop the server."""
from __future__ import annotations

import asyncio

from serverkit import GATES, Client, const_sink, gate_prompt, run, steps_prompt


async def wait_running(c: Client, prompt_id: str) -> None:
    for _ in range(2000):
        _, queue = await c.get("/queue")
        if queue["queue_running"] and queue["queue_running"][0][1] == prompt_id:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"{prompt_id} never started")


def test_the_queue_lists_running_and_pending_items_in_run_order(server):
    async def scenario():
        async with Client(server.url) as c:
            held = await c.queue(gate_prompt("g"), "me")
            await wait_running(c, held)
            a = await c.queue(const_sink(1), "me")
            b = await c.queue(const_sink(2), "me")
            front = await c.queue(const_sink(3), "me", front=True)
            status, queue = await c.get("/queue")
            _, prompt = await c.get("/prompt")
            GATES["g"].set()
            return held, [a, b, front], status, queue, prompt

    held, (a, b, front), status, queue, prompt = run(scenario())
    assert status == 200
    assert [e[1] for e in queue["queue_running"]] == [held]
    assert [e[1] for e in queue["queue_pending"]] == [front, a, b]
    _, pid, prompt_json, extra_data, outputs = queue["queue_pending"][1]
    assert (pid, prompt_json, outputs, extra_data["client_id"]) == (a, const_sink(1), ["2"], "me")
    assert queue["queue_pending"][0][0] < 0 < queue["queue_pending"][1][0] < queue["queue_pending"][2][0]
    assert prompt == {"exec_info": {"queue_remaining": 4}}


def test_queue_delete_and_clear_remove_pending_prompts_only(server):
    async def scenario():
        async with Client(server.url) as c:
            ws = await c.socket("me")
            held = await c.queue(gate_prompt("g"), "me")
            await wait_running(c, held)
            a, b, d = [await c.queue(const_sink(v), "me") for v in (1, 2, 3)]
            assert (await c.post("/queue", {"delete": [b, held]}))[0] == 200
            _, after_delete = await c.get("/queue")
            assert (await c.post("/queue", {"clear": True}))[0] == 200
            _, after_clear = await c.get("/queue")
            GATES["g"].set()
            await ws.follow(held)
            _, history = await c.get("/history")
            return held, [a, d], after_delete, after_clear, history

    held, (a, d), after_delete, after_clear, history = run(scenario())
    assert [e[1] for e in after_delete["queue_pending"]] == [a, d]
    assert [e[1] for e in after_delete["queue_running"]] == [held]
    assert after_clear["queue_pending"] == [] and len(after_clear["queue_running"]) == 1
    assert list(history) == [held]


def test_interrupt_stops_the_running_prompt_and_reports_it(server):
    async def scenario():
        async with Client(server.url) as c:
            ws = await c.socket("me")
            pid = await c.queue(steps_prompt(100_000), "me")
            await ws.until(lambda kind, data: kind == "progress")
            assert (await c.post("/interrupt", {"prompt_id": "some-other-prompt"}))[0] == 200
            await asyncio.sleep(0.05)
            assert server.engine.queue.running() is not None  # another prompt's id: no effect
            assert (await c.post("/interrupt"))[0] == 200
            seen = await ws.follow(pid)
            return pid, seen, await c.get(f"/history/{pid}")

    pid, seen, (_, history) = run(scenario())
    (interrupted,) = seen.of("execution_interrupted")
    assert (interrupted["prompt_id"], interrupted["node_id"], interrupted["node_type"]) == (pid, "2", "Steps")
    assert "1" in interrupted["executed"]
    assert seen.types()[-1] == "executing" and "execution_success" not in seen.types()
    status = history[pid]["status"]
    assert (status["status_str"], status["completed"]) == ("error", False)
    assert status["messages"][-1][0] == "execution_interrupted"


def test_history_delete_and_clear(server):
    async def scenario():
        async with Client(server.url) as c:
            ws = await c.socket("me")
            ids = [await c.queue(const_sink(v), "me") for v in (1, 2, 3)]
            for pid in ids:
                await ws.follow(pid)
            _, last_two = await c.get("/history", max_items=2)
            assert (await c.post("/history", {"delete": [ids[1]]}))[0] == 200
            _, after_delete = await c.get("/history")
            _, missing = await c.get(f"/history/{ids[1]}")
            assert (await c.post("/history", {"clear": True}))[0] == 200
            _, after_clear = await c.get("/history")
            return ids, last_two, after_delete, missing, after_clear

    ids, last_two, after_delete, missing, after_clear = run(scenario())
    assert list(last_two) == ids[1:]
    assert list(after_delete) == [ids[0], ids[2]]
    assert missing == {} and after_clear == {}


def test_two_clients_at_once_each_see_their_own_progress(server):
    async def bob_until_the_queue_is_empty(bob, pb):
        seen = await bob.follow(pb)
        while True:  # alice's run comes after bob's: bob must see nothing of it
            kind, data = await bob.next()
            if kind != "status":
                seen.others.append((kind, data))
            elif data["status"]["exec_info"]["queue_remaining"] == 0:
                return seen

    async def scenario():
        async with Client(server.url) as c:
            alice, bob = await c.socket("alice"), await c.socket("bob")
            pb = await c.queue(steps_prompt(7, value=2), "bob")  # runs first, while alice watches
            pa = await c.queue(steps_prompt(5, value=1), "alice")
            return pa, pb, *(await asyncio.gather(alice.follow(pa), bob_until_the_queue_is_empty(bob, pb)))

    pa, pb, seen_a, seen_b = run(scenario())
    assert [(d["value"], d["max"]) for d in seen_a.of("progress")] == [(i, 5) for i in range(1, 6)]
    assert [(d["value"], d["max"]) for d in seen_b.of("progress")] == [(i, 7) for i in range(1, 8)]
    assert {d["prompt_id"] for d in seen_a.of("progress")} == {pa}
    assert {d["prompt_id"] for d in seen_b.of("progress")} == {pb}
    assert seen_a.others == [] and seen_b.others == []  # neither saw a message of the other's run
    assert seen_a.of("execution_success") and seen_b.of("execution_success")


def test_the_server_keeps_serving_after_a_node_fails(server):
    failing = {"1": {"class_type": "Fail", "inputs": {"fail": True}},
               "2": {"class_type": "Sink", "inputs": {"value": ["1", 0]}}}

    async def scenario():
        async with Client(server.url) as c:
            ws = await c.socket("me")
            bad = await c.queue(failing, "me")
            seen_bad = await ws.follow(bad)
            good = await c.queue(const_sink(6), "me")
            seen_good = await ws.follow(good)
            return bad, seen_bad, seen_good, await c.get(f"/history/{bad}")

    bad, seen_bad, seen_good, (_, history) = run(scenario())
    (error,) = seen_bad.of("execution_error")
    assert (error["prompt_id"], error["node_id"], error["node_type"]) == (bad, "1", "Fail")
    assert error["exception_type"] == "RuntimeError"
    assert error["exception_message"] == "boom: the test node failed on purpose"
    assert any("raise RuntimeError" in line for line in error["traceback"])
    assert error["current_inputs"] == {"fail": [True]}
    assert seen_good.of("executed")[0]["output"] == {"values": [6]}
    assert history[bad]["status"]["status_str"] == "error"
    assert history[bad]["status"]["messages"][-1][0] == "execution_error"


def test_a_socket_reconnecting_during_its_run_is_told_the_running_node(server):
    async def scenario():
        async with Client(server.url) as c:
            first = await c.socket("me")
            pid = await c.queue(gate_prompt("g"), "me")
            await first.until(lambda kind, data: kind == "executing" and data["node"] == "1")
            await first.close()
            again = await c.session.ws_connect(server.ws_url, params={"clientId": "me"})
            messages = [await again.receive_json(timeout=10) for _ in range(2)]
            GATES["g"].set()
            await again.close()
            return pid, messages

    pid, (status, executing) = run(scenario())
    assert status["type"] == "status" and status["data"]["sid"] == "me"
    assert executing == {"type": "executing", "data": {"node": "1", "display_node": "1", "prompt_id": pid}}


def test_a_prompt_queued_without_client_id_is_followed_by_every_socket(server):
    async def scenario():
        async with Client(server.url) as c:
            ws = await c.socket("watcher")
            pid = await c.queue(const_sink(2))
            return await ws.follow(pid)

    assert run(scenario()).of("execution_success")


def test_free_drops_cached_outputs_between_runs(server):
    async def scenario():
        async with Client(server.url) as c:
            ws = await c.socket("me")
            await ws.follow(await c.queue(const_sink(8), "me"))
            cached_before = len(server.engine.session.executor.cache)
            status, _ = await c.post("/free", {"unload_models": True, "free_memory": True})
            server.engine.queue.wait_idle(10)
            return cached_before, status, len(server.engine.session.executor.cache)

    before, status, after = run(scenario())
    assert (before, status, after) == (2, 200, 0)
