"""The server's safety defaults: loopback by default, the token on every request and the websocket,
no CORS unless asked, cross-origin and foreign-host requests refused, files never outside their folders."""
from __future__ import annotations

import argparse
import os

import aiohttp
import pytest

from nodegraph.server.cli import add_parser
from nodegraph.server.config import ServerConfig, token_from_env
from nodegraph.server.routes import redacted_argv
from nodegraph.server.safety import clean_parts
from serverkit import const_sink, run


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    return parser.parse_args(["serve", *argv])


def test_the_server_listens_on_loopback_unless_told_otherwise(server):
    assert ServerConfig().host == "127.0.0.1"
    assert parse().listen == "127.0.0.1"
    assert parse("--listen").listen == "0.0.0.0"
    assert parse("--listen", "192.168.1.5").listen == "192.168.1.5"
    assert server.url.startswith("http://127.0.0.1:")


def test_the_token_comes_from_the_option_or_the_environment(monkeypatch):
    monkeypatch.delenv("NODEGRAPH_TOKEN", raising=False)
    assert token_from_env(None) is None
    monkeypatch.setenv("NODEGRAPH_TOKEN", "from-env")
    assert token_from_env(None) == "from-env"
    assert token_from_env("given") == "given"


def test_every_request_needs_the_token(make_server):
    srv = make_server(token="s3cret")

    async def scenario():
        async with aiohttp.ClientSession() as s:
            results = {}
            for name, kw in [("none", {}), ("wrong", {"headers": {"Authorization": "Bearer nope"}}),
                             ("header", {"headers": {"Authorization": "Bearer s3cret"}}),
                             ("query", {"params": {"token": "s3cret"}})]:
                async with s.get(srv.url + "/queue", **kw) as r:
                    results[name] = r.status
            async with s.post(srv.url + "/prompt", json={"prompt": const_sink()}) as r:
                results["post"] = r.status
            return results

    assert run(scenario()) == {"none": 401, "wrong": 401, "header": 200, "query": 200, "post": 401}
    assert srv.engine.queue.remaining() == 0 and len(srv.engine.queue.history) == 0


def test_the_websocket_needs_the_token_too(make_server):
    srv = make_server(token="s3cret")

    async def scenario():
        async with aiohttp.ClientSession() as s:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await s.ws_connect(srv.ws_url, params={"clientId": "x"})
            ws = await s.ws_connect(srv.ws_url, params={"clientId": "x", "token": "s3cret"})
            first = await ws.receive_json(timeout=10)
            await ws.close()
            return refused.value.status, first["type"]

    assert run(scenario()) == (401, "status")


def test_no_cors_header_by_default_and_cross_origin_requests_are_refused(server):
    async def scenario():
        async with aiohttp.ClientSession() as s:
            async with s.get(server.url + "/queue") as r:
                plain = (r.status, r.headers.get("Access-Control-Allow-Origin"))
            host = server.url.split("//", 1)[1]
            async with s.get(server.url + "/queue", headers={"Origin": f"http://{host}"}) as r:
                same = r.status
            async with s.post(server.url + "/prompt", json={"prompt": const_sink()},
                              headers={"Origin": "https://evil.example"}) as r:
                cross = r.status
            async with s.post(server.url + "/prompt", json={"prompt": const_sink()},
                              headers={"Origin": "null"}) as r:
                sandboxed = r.status
            return plain, same, cross, sandboxed

    assert run(scenario()) == ((200, None), 200, 403, 403)
    assert server.engine.queue.remaining() == 0 and len(server.engine.queue.history) == 0


def test_enable_cors_header_allows_the_named_origin(make_server):
    srv = make_server(cors_origin="https://app.example")

    async def scenario():
        async with aiohttp.ClientSession() as s:
            headers = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
            async with s.options(srv.url + "/prompt", headers=headers) as r:
                preflight = (r.status, r.headers.get("Access-Control-Allow-Origin"))
            async with s.get(srv.url + "/queue", headers={"Origin": "https://app.example"}) as r:
                get = (r.status, r.headers.get("Access-Control-Allow-Origin"))
            return preflight, get

    assert run(scenario()) == ((200, "https://app.example"), (200, "https://app.example"))


def test_a_loopback_server_refuses_other_host_names(server):
    async def scenario():
        async with aiohttp.ClientSession() as s:
            async with s.get(server.url + "/queue", headers={"Host": "attacker.example"}) as r:
                foreign = r.status
            port = server.url.rsplit(":", 1)[1]
            async with s.get(server.url + "/queue", headers={"Host": f"localhost:{port}"}) as r:
                local = r.status
            return foreign, local

    assert run(scenario()) == (403, 200)


@pytest.mark.parametrize("text, parts", [
    ("a.png", ["a.png"]), ("sub/dir/a.png", ["sub", "dir", "a.png"]), ("sub\\a.png", ["sub", "a.png"]),
    ("./a.png", ["a.png"]), ("", []),
    ("../a.png", None), ("sub/../../a", None), ("/etc/passwd", None), ("\\\\server\\share", None),
    ("C:\\Windows\\win.ini", None), ("c:a.png", None), ("a\x00.png", None), ("a\n.png", None),
    ("..\\..\\a.png", None),
])
def test_untrusted_path_parts_are_cleaned_or_refused(text, parts):
    assert clean_parts(text) == parts


def test_the_command_line_shown_by_system_stats_hides_the_token():
    assert redacted_argv(["nodegraph", "serve", "--token", "abc", "--port", "1", "--token=def"]) == [
        "nodegraph", "serve", "--token", "***", "--port", "1", "--token=***"]


def serve_without_listening(tmp_path, monkeypatch, *argv):
    """``nodegraph serve ARGV`` up to the point where it would listen."""
    from nodegraph.server import cli

    monkeypatch.delenv("NODEGRAPH_TOKEN", raising=False)
    monkeypatch.setattr(cli, "_serve", _no_serve)
    monkeypatch.setenv("NODEGRAPH_INPUT", str(tmp_path / "elsewhere"))
    args = parse(*argv, "--port", "0", "--input-dir", str(tmp_path / "in"),
                 "--output-dir", str(tmp_path / "out"))
    return cli.cmd_serve(args)


async def _no_serve(engine, config):
    engine.close()


def test_a_server_on_every_interface_without_a_token_warns(tmp_path, capsys, monkeypatch):
    assert serve_without_listening(tmp_path, monkeypatch, "--listen") == 0
    assert "listening on 0.0.0.0 without a token" in capsys.readouterr().err


def test_serve_puts_its_input_folder_first_among_loadimages_folders(tmp_path, monkeypatch):
    assert serve_without_listening(tmp_path, monkeypatch) == 0
    assert os.environ["NODEGRAPH_INPUT"].split(os.pathsep) == [str((tmp_path / "in").resolve()),
                                                              str(tmp_path / "elsewhere")]
