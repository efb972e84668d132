"""docs/server.md lists every endpoint, websocket message and error type the server has."""
from __future__ import annotations

import re

from nodegraph.server.prompts import ERROR_TYPES
from serverkit import ROOT

DOC = (ROOT / "docs" / "server.md").read_text(encoding="utf-8")
SERVER = ROOT / "nodegraph" / "server"


def test_every_endpoint_is_documented():
    routes = re.findall(r'\("(GET|POST)", "(/[^"]*)"', (SERVER / "routes.py").read_text())
    assert len(routes) >= 20
    missing = [f"{m} {p}" for m, p in routes if f"`{m} {p}" not in DOC]
    assert missing == []


def test_every_websocket_message_is_documented():
    sent = set(re.findall(r'_send\([^,]+, "(\w+)"', (SERVER / "hub.py").read_text()))
    sent |= set(re.findall(r'return "(execution_\w+)"', (SERVER / "shapes.py").read_text()))
    sent |= {"status"}
    assert {"executing", "progress", "executed", "execution_start", "execution_error"} <= sent
    assert [m for m in sorted(sent) if f"`{m}`" not in DOC] == []


def test_every_error_type_is_documented():
    types = {kind for kind, _ in ERROR_TYPES.values()}
    types |= {"missing_node_type", "prompt_no_outputs", "prompt_outputs_failed_validation"}
    assert [t for t in sorted(types) if f"`{t}`" not in DOC] == []


def test_the_readme_names_the_command():
    assert "nodegraph serve" in (ROOT / "README.md").read_text(encoding="utf-8")
