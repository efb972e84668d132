"""Node packs: discovery (built-in, entry points, plugin folders, NODEGRAPH_PLUGIN_PATH, user
folder), namespacing, and failure isolation."""
from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from nodegraph import BUILTIN_PACK, NodeSpec, SocketType, hookimpl, node
from nodegraph.plugins import REPO_PLUGINS, discover, load_registry, plugin_folders, user_plugin_dir

GOOD = """
from nodegraph import hookimpl, node, Int, SocketType

@node("Thing", params=[Int("n", 1)], outputs={"out": "WIDGET"}, output_node=True)
def thing(n):
    return n

@hookimpl
def nodegraph_register_types():
    return [SocketType("WIDGET", "#abcdef")]

@hookimpl
def nodegraph_register_nodes():
    return [thing]
"""


def write_pack(folder: Path, name: str, code: str, files: dict[str, str] | None = None) -> Path:
    pack = folder / name
    pack.mkdir(parents=True)
    (pack / "__init__.py").write_text(textwrap.dedent(code))
    for fname, text in (files or {}).items():
        (pack / fname).write_text(textwrap.dedent(text))
    return pack


def load(folder: Path, **kw):
    return load_registry(builtin=False, entry_points=False, folders=[folder], **kw)


def status(reg) -> dict[str, str]:
    return {p.name: p.status for p in reg.packs}


def test_the_example_pack_and_the_builtin_pack_load_through_the_hooks():
    reg = load_registry(entry_points=False, folders=[REPO_PLUGINS])
    builtin = reg.pack(BUILTIN_PACK)
    assert builtin.status == "loaded" and builtin.kind == "builtin"
    assert "IMAGE" in builtin.socket_types and reg.color("LATENT") != "#8c8c8c"
    example = reg.pack("example_pack")
    assert example.status == "loaded", example.traceback
    assert set(example.node_types) == {"example_pack.PromptTemplate", "example_pack.InvertImage",
                                       "example_pack.SaveText"}
    assert reg["example_pack.SaveText"].pack == "example_pack"


def test_a_folder_pack_registers_types_and_namespaced_nodes(tmp_path):
    write_pack(tmp_path, "widgets", GOOD)
    reg = load(tmp_path)
    assert list(reg.nodes) == ["widgets.Thing"] and reg.color("WIDGET") == "#abcdef"
    assert reg.pack("widgets").socket_types == ["WIDGET"]


def test_a_pack_can_use_relative_imports(tmp_path):
    write_pack(tmp_path, "rel", "from .impl import nodegraph_register_nodes\n",
               {"impl.py": """
                from nodegraph import hookimpl, node
                @node("R", output_node=True)
                def r():
                    return None
                @hookimpl
                def nodegraph_register_nodes():
                    return [r]
                """})
    assert list(load(tmp_path).nodes) == ["rel.R"]


def test_a_pack_that_fails_to_import_is_recorded_with_its_traceback_and_the_rest_load(tmp_path):
    write_pack(tmp_path, "aaa_broken", "import not_a_real_module_xyz\n")
    write_pack(tmp_path, "good", GOOD)
    reg = load(tmp_path)
    assert status(reg) == {"aaa_broken": "failed", "good": "loaded"}
    broken = reg.pack("aaa_broken")
    assert broken.error.startswith("import failed: ModuleNotFoundError")
    assert "not_a_real_module_xyz" in broken.traceback and "Traceback" in broken.traceback
    assert "good.Thing" in reg


def test_a_pack_with_a_syntax_error_or_sys_exit_is_isolated(tmp_path):
    write_pack(tmp_path, "syntax", "def broken(:\n")
    write_pack(tmp_path, "quitter", "import sys\nsys.exit(3)\n")
    write_pack(tmp_path, "good", GOOD)
    assert status(load(tmp_path)) == {"good": "loaded", "quitter": "failed", "syntax": "failed"}


def test_a_pack_whose_hook_raises_registers_nothing(tmp_path):
    write_pack(tmp_path, "half", """
        from nodegraph import hookimpl, node
        @node("Fine", output_node=True)
        def fine():
            return None
        @hookimpl
        def nodegraph_register_nodes():
            yield fine
            raise RuntimeError("second node broke")
        """)
    reg = load(tmp_path)
    assert reg.nodes == {} and "second node broke" in reg.pack("half").error


def test_a_pack_returning_something_that_is_not_a_spec_fails_with_a_clear_error(tmp_path):
    write_pack(tmp_path, "wrong", """
        from nodegraph import hookimpl
        @hookimpl
        def nodegraph_register_nodes():
            return ["KSampler"]
        """)
    assert "expected a NodeSpec" in load(tmp_path).pack("wrong").error


def test_a_pack_using_an_unregistered_socket_type_fails(tmp_path):
    write_pack(tmp_path, "typo", """
        from nodegraph import hookimpl, node
        @node("T", inputs={"x": "IMAGEE"}, output_node=True)
        def t(x):
            return None
        @hookimpl
        def nodegraph_register_nodes():
            return [t]
        """)
    assert "socket type 'IMAGEE'" in load(tmp_path).pack("typo").error


def test_a_pack_implementing_an_unknown_hook_fails_and_names_the_real_hooks(tmp_path):
    write_pack(tmp_path, "typo_hook", """
        from nodegraph import hookimpl
        @hookimpl
        def nodegraph_register_node():
            return []
        """)
    error = load(tmp_path).pack("typo_hook").error
    assert "unknown hook(s) nodegraph_register_node" in error and "nodegraph_register_nodes" in error


def test_two_packs_with_the_same_name_is_an_error_naming_both(tmp_path):
    write_pack(tmp_path / "one", "widgets", GOOD)
    write_pack(tmp_path / "two", "widgets", GOOD)
    reg = load_registry(builtin=False, entry_points=False, folders=[tmp_path / "one", tmp_path / "two"])
    first, second = reg.packs
    assert first.status == "loaded" and second.status == "failed"
    assert str(tmp_path / "one" / "widgets") in second.error and "already used" in second.error
    assert reg["widgets.Thing"]


def test_a_pack_registering_the_same_id_twice_fails(tmp_path):
    write_pack(tmp_path, "twice", """
        from nodegraph import hookimpl, node
        @node("T", output_node=True)
        def t():
            return None
        @hookimpl
        def nodegraph_register_nodes():
            return [t, t]
        """)
    assert "registered twice by pack 'twice'" in load(tmp_path).pack("twice").error


def test_pack_objects_can_be_registered_from_python():
    class Pack:
        @hookimpl
        def nodegraph_register_types(self):
            return [SocketType("GIZMO")]

        @hookimpl
        def nodegraph_register_nodes(self):
            @node("G", outputs={"g": "GIZMO"}, output_node=True)
            def g():
                return 1
            return [g]

    reg = load_registry(builtin=False, entry_points=False, folders=[], extra={"inline": Pack()})
    assert list(reg.nodes) == ["inline.G"] and reg.pack("inline").kind == "object"


def test_packs_are_found_in_nodegraph_plugin_path_folders(tmp_path, monkeypatch):
    write_pack(tmp_path / "many", "p1", GOOD)
    single = write_pack(tmp_path, "p2", GOOD.replace("WIDGET", "WIDGET2"))
    monkeypatch.setenv("NODEGRAPH_PLUGIN_PATH", f"{tmp_path / 'many'}{os.pathsep}{single}")
    assert plugin_folders()[1:] == [tmp_path / "many", single]
    names = [s.name for s in discover(builtin=False, entry_points=False)]
    assert names[-2:] == ["p1", "p2"]


def test_entry_points_in_the_nodegraph_group_are_loaded(tmp_path, monkeypatch):
    site = tmp_path / "site"
    write_pack(site, "ep_pack_mod", GOOD)
    dist = site / "ep_pack-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-pack\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[nodegraph]\nfancy = ep_pack_mod\n")
    monkeypatch.syspath_prepend(str(site))
    reg = load_registry(builtin=False, folders=[])
    fancy = reg.pack("fancy")
    assert fancy.kind == "entry point" and fancy.status == "loaded", fancy.traceback
    assert "from ep-pack 1.0" in fancy.source and "fancy.Thing" in reg


def test_the_user_plugin_folder_is_skipped_while_testing(monkeypatch):
    monkeypatch.setenv("NODEGRAPH_TESTING", "1")
    assert user_plugin_dir() is None
    monkeypatch.setenv("NODEGRAPH_TESTING", "0")
    monkeypatch.delenv("NODEGRAPH_NO_USER_PLUGINS", raising=False)
    path = user_plugin_dir()
    assert path is not None and path.name == "plugins" and "nodegraph" in str(path).lower()
    monkeypatch.setenv("NODEGRAPH_NO_USER_PLUGINS", "1")
    assert user_plugin_dir() is None


def test_folders_that_are_not_packages_or_are_hidden_are_ignored(tmp_path):
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / ".git").mkdir()
    write_pack(tmp_path, "good", GOOD)
    assert [s.name for s in discover(builtin=False, entry_points=False, folders=[tmp_path])] == ["good"]


def test_a_folder_without_init_py_is_reported_as_failed(tmp_path):
    (tmp_path / "notapack").mkdir()
    (tmp_path / "notapack" / "nodes.py").write_text("")
    assert "has no __init__.py" in load(tmp_path).pack("notapack").error


def test_the_builtin_pack_can_be_switched_off():
    reg = load_registry(builtin=False, entry_points=False, folders=[])
    assert reg.packs == [] and isinstance(reg.get("nothing"), type(None))


def test_specs_from_packs_keep_their_function():
    spec = NodeSpec("X", lambda: 3, output_node=True)
    reg = load_registry(builtin=False, entry_points=False, folders=[],
                        extra={"p": type("P", (), {"nodegraph_register_nodes":
                                                   hookimpl(staticmethod(lambda: [spec]))})()})
    assert reg["p.X"].function() == 3 and reg["p.X"].token.endswith(spec.token.rsplit("#")[1])


@pytest.mark.parametrize("bad", ["a.b", "sp ace", ""])
def test_pack_names_must_be_usable_as_id_prefixes(bad):
    reg = load_registry(builtin=False, entry_points=False, folders=[], extra={bad: object()})
    assert reg.packs[0].status == "failed" and "may only use letters" in reg.packs[0].error


def test_model_locators_of_every_pack_find_files_first_answer_first(tmp_path):
    from nodegraph import RunOptions

    (tmp_path / "a.bin").write_bytes(b"a")
    (tmp_path / "b.bin").write_bytes(b"b")

    def pack(found: dict[str, Path]):
        class Pack:
            @hookimpl
            def nodegraph_model_locators(self):
                return [lambda name, options: found.get(name)]
        return Pack()

    reg = load_registry(builtin=False, entry_points=False, folders=[], extra={
        "first": pack({"a": tmp_path / "a.bin"}), "second": pack({"a": tmp_path / "b.bin",
                                                                  "b": tmp_path / "b.bin"})})
    options = RunOptions()
    assert reg.locate_model("a", options) == tmp_path / "a.bin"
    assert reg.locate_model("b", options) == tmp_path / "b.bin"
    assert reg.locate_model("c", options) is None


def test_a_pack_whose_model_locators_are_not_functions_fails_and_registers_no_nodes(tmp_path):
    write_pack(tmp_path, "badloc", GOOD + """
@hookimpl
def nodegraph_model_locators():
    return ["models/"]
""")
    reg = load(tmp_path)
    assert reg.pack("badloc").status == "failed" and "nodegraph_model_locators" in reg.pack("badloc").error
    assert reg.model_locators == [] and not [t for t in reg.nodes if t.startswith("badloc.")]


def test_the_builtin_pack_locates_model_files_in_every_category(tmp_path):
    from nodegraph import RunOptions

    (tmp_path / "loras").mkdir()
    (tmp_path / "loras" / "style.safetensors").write_bytes(b"x")
    reg = load_registry(builtin=True, entry_points=False, folders=[], user=False)
    options = RunOptions(models_dirs=(tmp_path,))
    assert reg.locate_model("style.safetensors", options) == tmp_path / "loras" / "style.safetensors"
    assert reg.locate_model("absent.safetensors", options) is None
