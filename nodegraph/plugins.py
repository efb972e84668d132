"""Find node packs, load them through pluggy, and fill a Registry — one broken pack never stops
the others.

Where packs come from, in this order (the first pack to claim a name keeps it):

1. the built-in pack (the ``nodes`` package), name ``builtin``, ids not namespaced;
2. installed distributions' entry points in the group ``nodegraph`` (name = pack name,
   value = the module or object holding the hook implementations);
3. each sub-folder of the repository's ``plugins/`` folder (folder name = pack name);
4. each folder in ``NODEGRAPH_PLUGIN_PATH`` (os.pathsep-separated): a folder holding an
   ``__init__.py`` is a pack itself, any other folder is searched for pack sub-folders;
5. the user's plugin folder ``<user data dir>/plugins`` (platformdirs), skipped when
   ``NODEGRAPH_TESTING=1`` or ``NODEGRAPH_NO_USER_PLUGINS=1``.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import re
import sys
import traceback
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pluggy

from . import hookspecs
from .errors import os_error_reason
from .registry import BUILTIN_PACK, NodeSpec, PackInfo, Registry, RegistryError, SocketType

ENTRY_POINT_GROUP = "nodegraph"
BUILTIN_MODULE = "nodes"
REPO_PLUGINS = Path(__file__).resolve().parent.parent / "plugins"
_PACK_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")
_PARENT_MODULE = "nodegraph_packs"


@dataclass(frozen=True)
class PackSource:
    """A pack found during discovery, not imported yet."""

    name: str
    kind: str  # "builtin", "entry point", "folder", "object"
    source: str  # human-readable origin
    load: Callable[[], Any]
    skipped: str = ""  # why this source cannot be loaded at all (e.g. an unreadable folder)


def testing() -> bool:
    return os.environ.get("NODEGRAPH_TESTING") == "1"


def user_plugin_dir() -> Path | None:
    """The user's plugin folder, or None when tests run or it is switched off."""
    if testing() or os.environ.get("NODEGRAPH_NO_USER_PLUGINS") == "1":
        return None
    import platformdirs

    return platformdirs.user_data_path("nodegraph", appauthor=False) / "plugins"


def plugin_folders(user: bool | None = None) -> list[Path]:
    """Folders searched for pack sub-folders: the repo's plugins/, NODEGRAPH_PLUGIN_PATH, user dir."""
    folders = [REPO_PLUGINS]
    for entry in os.environ.get("NODEGRAPH_PLUGIN_PATH", "").split(os.pathsep):
        if entry.strip():
            folders.append(Path(entry.strip()).expanduser())
    if user is None or user:
        u = user_plugin_dir()
        if u is not None:
            folders.append(u)
    return folders


def _folder_packs(folder: Path) -> list[PackSource]:
    try:
        if not folder.is_dir():
            return []
        if (folder / "__init__.py").is_file():
            candidates = [folder]
        else:
            candidates = sorted(p for p in folder.iterdir()
                                if p.is_dir() and not p.name.startswith((".", "_")))
    except OSError as exc:  # e.g. a folder the user may not read: list it as skipped, go on
        reason = (f"cannot read the plugin folder: {os_error_reason(exc)}; its packs are not "
                  "loaded")
        return [PackSource(folder.name, "folder", str(folder), lambda: None, skipped=reason)]
    return [PackSource(p.name, "folder", str(p), _folder_loader(p)) for p in candidates]


def _folder_loader(path: Path) -> Callable[[], Any]:
    return lambda: import_folder(path)


def import_folder(path: Path) -> types.ModuleType:
    """Import a pack folder as the package ``nodegraph_packs.<name>`` (relative imports work;
    importing the same folder again returns the module already loaded)."""
    path = path.resolve()
    init = path / "__init__.py"
    if not init.is_file():
        raise ImportError(f"{path} has no __init__.py; a pack folder is a Python package")
    safe = re.sub(r"\W", "_", path.name)
    modname = f"{_PARENT_MODULE}.{safe}"
    existing = sys.modules.get(modname)
    if existing is not None and Path(getattr(existing, "__file__", "") or "").resolve() == init:
        return existing
    if _PARENT_MODULE not in sys.modules:
        parent = types.ModuleType(_PARENT_MODULE, "Node packs loaded from plugin folders.")
        parent.__path__ = []
        sys.modules[_PARENT_MODULE] = parent
    spec = importlib.util.spec_from_file_location(modname, init,
                                                  submodule_search_locations=[str(path)])
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {init}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        for name in [n for n in sys.modules if n == modname or n.startswith(modname + ".")]:
            del sys.modules[name]
        raise
    return module


def _entry_point_packs() -> list[PackSource]:
    found = []
    for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = getattr(ep, "dist", None)
        where = f" (from {dist.name} {dist.version})" if dist is not None else ""
        found.append(PackSource(ep.name, "entry point", f"entry point {ep.name} = {ep.value}{where}",
                                ep.load))
    return found


def discover(*, builtin: bool = True, entry_points: bool = True,
             folders: Sequence[Path] | None = None, user: bool | None = None) -> list[PackSource]:
    """Every pack source, in load order (see the module docstring). ``folders`` replaces the
    default plugin folders."""
    sources: list[PackSource] = []
    if builtin:
        sources.append(PackSource(BUILTIN_PACK, "builtin", f"module {BUILTIN_MODULE}",
                                  lambda: importlib.import_module(BUILTIN_MODULE)))
    if entry_points:
        sources.extend(_entry_point_packs())
    for folder in (plugin_folders(user) if folders is None else folders):
        sources.extend(_folder_packs(Path(folder)))
    return sources


def load_registry(*, builtin: bool = True, entry_points: bool = True,
                  folders: Sequence[Path] | None = None, user: bool | None = None,
                  extra: Mapping[str, Any] | None = None) -> Registry:
    """Discover packs and register them. ``extra`` maps pack names to already-imported pack
    objects (modules or instances with hook implementations), loaded after the others."""
    sources = discover(builtin=builtin, entry_points=entry_points, folders=folders, user=user)
    for name, obj in (extra or {}).items():
        sources.append(PackSource(name, "object", f"object {type(obj).__name__}", lambda o=obj: o))
    return register_packs(sources)


def register_packs(sources: Iterable[PackSource], registry: Registry | None = None) -> Registry:
    """Import each source, register its hooks, then collect socket types, node types and model
    locators pack by pack. A pack that fails anywhere is recorded (with traceback) and contributes
    no nodes."""
    registry = registry if registry is not None else Registry()
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    claimed: dict[str, str] = {}  # pack name -> the source that has it
    loaded = [info for src in sources
              if (info := _import_pack(src, registry, pm, claimed)) is not None]
    for info in loaded:
        _register_types(pm, registry, info)
    for info in loaded:
        if info.status == "loaded":
            _register_nodes(pm, registry, info)
    return registry


def _import_pack(src: PackSource, registry: Registry, pm: pluggy.PluginManager,
                 claimed: dict[str, str]) -> PackInfo | None:
    """Import one pack and register its hook implementations; None if it failed (recorded)."""
    info = PackInfo(src.name, src.source, src.kind)
    registry.packs.append(info)
    if src.skipped:
        info.status, info.error = "skipped", src.skipped
        return None
    if not _PACK_NAME.match(src.name):
        _failed(info, f"pack name {src.name!r} may only use letters, digits, '_' and '-' "
                "(it becomes the prefix of its type ids); rename it")
        return None
    if src.name in claimed:
        _failed(info, f"pack name {src.name!r} is already used by {claimed[src.name]}; "
                "remove or rename one of them")
        return None
    claimed[src.name] = src.source
    try:
        obj = src.load()
    except (Exception, SystemExit) as exc:
        _failed(info, f"import failed: {type(exc).__name__}: {exc}", traceback.format_exc())
        return None
    try:
        pm.register(obj, name=src.name)
        known = _hook_names()
        unknown = [n for n in dir(obj) if hasattr(getattr(obj, n, None), "nodegraph_impl")
                   and n not in known]
        if unknown:
            pm.unregister(name=src.name)
            raise RegistryError(f"unknown hook(s) {', '.join(unknown)}; the hooks are "
                                + ", ".join(_hook_names()))
    except Exception as exc:
        _failed(info, f"registration failed: {exc}", traceback.format_exc())
        return None
    return info


def _register_types(pm: pluggy.PluginManager, registry: Registry, info: PackInfo) -> None:
    try:
        for item in _call(pm, "nodegraph_register_types", info.name):
            if not isinstance(item, SocketType):
                raise RegistryError("nodegraph_register_types must return SocketType objects, "
                                    f"got {type(item).__name__}")
            registry.add_type(item)
            info.socket_types.append(item.name)
    except Exception as exc:
        _failed(info, f"nodegraph_register_types failed: {exc}", traceback.format_exc())
        pm.unregister(name=info.name)


def _register_nodes(pm: pluggy.PluginManager, registry: Registry, info: PackInfo) -> None:
    """A pack's node types and model locators, all or (if anything is wrong) none."""
    hook = "nodegraph_register_nodes"
    try:
        specs = _pack_nodes(pm, registry, info.name)
        hook = "nodegraph_model_locators"
        locators = _call(pm, hook, info.name)
        if not all(callable(item) for item in locators):
            raise RegistryError("nodegraph_model_locators must return functions "
                                "locate(name, options) -> Path | None")
    except Exception as exc:
        _failed(info, f"{hook} failed: {exc}", traceback.format_exc())
        pm.unregister(name=info.name)
        return
    for spec in specs:
        registry.nodes[spec.type_id] = spec
        info.node_types.append(spec.type_id)
    registry.model_locators.extend(locators)


def _pack_nodes(pm: pluggy.PluginManager, registry: Registry, pack: str) -> list[NodeSpec]:
    """One pack's node types, checked (RegistryError if any is invalid or registered twice)."""
    specs: list[NodeSpec] = []
    seen: set[str] = set()
    for item in _call(pm, "nodegraph_register_nodes", pack):
        spec = registry.check_node(item, pack)
        if spec.type_id in seen:
            raise RegistryError(f"node type {spec.type_id!r} is registered twice by pack {pack!r}")
        seen.add(spec.type_id)
        specs.append(spec)
    return specs


def _call(pm: pluggy.PluginManager, hook: str, plugin_name: str) -> list[Any]:
    """Call one pack's implementation of a hook; returns its items as a list."""
    out: list[Any] = []
    for impl in getattr(pm.hook, hook).get_hookimpls():
        if impl.plugin_name == plugin_name:
            result = impl.function()
            if result is not None:
                if isinstance(result, (str, bytes)) or not isinstance(result, Iterable):
                    raise RegistryError(f"{hook} must return a list, got {type(result).__name__}")
                out.extend(result)
    return out


def _failed(info: PackInfo, error: str, tb: str = "") -> None:
    info.status = "failed"
    info.error = error.splitlines()[0] if error else "failed"
    info.traceback = tb


def pack_warnings(registry: Registry) -> list[str]:
    """One line per pack that failed to load or was skipped, for a command to print at start."""
    lines = []
    for pack in registry.packs:
        if pack.status == "failed":
            lines.append(f"warning: node pack {pack.name!r} failed to load: {pack.error} "
                         "(details: nodegraph plugins)")
        elif pack.status == "skipped":
            lines.append(f"warning: skipped {pack.source}: {pack.error}")
    return lines


def _hook_names() -> list[str]:
    return sorted(n for n in dir(hookspecs) if n.startswith("nodegraph_"))
