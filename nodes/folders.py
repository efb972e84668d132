"""Model folders: where the built-in nodes look for checkpoints, VAEs, upscale models, LoRAs, ...

A *models root* is a folder with one sub-folder per category (``checkpoints/``, ``vae/``,
``upscale_models/``, ``loras/``, ``embeddings/``, ...). Roots are searched in this order:

1. ``--models DIR`` (``configure(models_dirs=...)``) and then the folders of ``NODEGRAPH_MODELS``
   (``os.pathsep``-separated), searched first;
2. the folders of sections marked ``is_default: true`` in ``extra_model_paths.yaml``;
3. the user data folder's ``models/`` (``platformdirs.user_data_dir("NodeGraph")``);
4. ``models/`` next to the app (the folder that holds the ``nodes`` package: a source checkout's root);
5. the other folders named in the user config folder's ``extra_model_paths.yaml``
   (ComfyUI's format, so an existing ComfyUI or A1111 install can be used as it is);
6. the demo models packaged inside ``nodes/models/`` (always listed, searched last so that a
   user's own file of the same name wins).

Under ``NODEGRAPH_TESTING=1`` the real user folders (3, 4, 5) are skipped unless asked for, so
tests never read the machine's models.

Listings are cached per category and refreshed when a folder's modification time changes.
"""
from __future__ import annotations

import difflib
import functools
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from nodegraph.errors import InputError, NodeError

APP_NAME = "NodeGraph"
ENV_MODELS = "NODEGRAPH_MODELS"
ENV_TESTING = "NODEGRAPH_TESTING"
CONFIG_FILE_NAME = "extra_model_paths.yaml"

MODEL_EXTENSIONS: frozenset[str] = frozenset({".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".sft"})
"""File extensions listed in every model category (compared case-insensitively)."""

CATEGORIES: tuple[str, ...] = (
    "checkpoints", "vae", "upscale_models", "loras", "embeddings",
    "clip", "clip_vision", "controlnet", "diffusion_models", "hypernetworks", "configs",
)
"""Categories NodeGraph knows by name; any other category name works too (same extensions)."""

PACKAGE_MODELS_DIR = Path(__file__).resolve().parent / "models"
APP_MODELS_DIR = Path(__file__).resolve().parent.parent / "models"

# A folder modified this recently may still change within the same timestamp tick, so its listing
# is not trusted from the cache (the "racily clean" rule git uses for its index).
_RACY_SECONDS = 2.0


class ModelNotFound(NodeError, FileNotFoundError):
    """A model file named by a graph is not in any folder of its category."""

    def __init__(self, category: str, name: str, searched: Sequence[Path], found: Sequence[str], hint: str = ""):
        self.category, self.name = category, name
        self.searched, self.found = list(searched), list(found)
        self.hint = hint
        super().__init__(self._message())

    def _message(self) -> str:
        lines = [f"{self.category} model {self.name!r} was not found." + (f" {self.hint}" if self.hint else "")]
        lines.append("Folders searched, in order:")
        for folder in self.searched:
            lines.append(f"  {folder}" + ("" if folder.is_dir() else "  (does not exist)"))
        if not self.searched:
            lines.append("  (none)")
        if self.found:
            shown = self.found[:20]
            more = len(self.found) - len(shown)
            lines.append(f"Files found in those folders ({len(self.found)}, closest first): " + ", ".join(shown)
                         + (f", ... and {more} more" if more else ""))
        else:
            lines.append(f"No {self.category} files were found in those folders.")
        lines.append(f"Put the file in one of those folders (under a '{self.category}' sub-folder of a models "
                     f"root), or add a models root with --models DIR or the {ENV_MODELS} environment variable.")
        return "\n".join(lines)


class ModelPathsConfigError(NodeError, ValueError):
    """``extra_model_paths.yaml`` cannot be read or does not have ComfyUI's shape."""


@dataclass(frozen=True)
class ExtraPaths:
    """The folders one ``extra_model_paths.yaml`` adds, per category."""

    default_first: dict[str, list[Path]] = field(default_factory=dict)  # from sections with is_default
    last: dict[str, list[Path]] = field(default_factory=dict)


def read_extra_model_paths(path: str | os.PathLike[str]) -> ExtraPaths:
    """Read a ComfyUI ``extra_model_paths.yaml``.

    Each top-level section has an optional ``base_path`` (``~`` and environment variables expanded;
    a relative base is taken from the YAML file's folder), an optional ``is_default`` and category
    keys whose values are one path per line (a YAML ``|`` block) or a single path. Relative paths
    resolve against ``base_path``, or the YAML file's folder when there is none.
    """
    import yaml  # PyYAML; imported here so that listing models does not pay for it

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ModelPathsConfigError(f"{path}: cannot read the model paths file ({exc.strerror or exc}).") from exc
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        raise ModelPathsConfigError(f"{path}:{where} is not valid YAML ({getattr(exc, 'problem', exc)}). "
                                    f"Fix it or remove the file; see ComfyUI's extra_model_paths.yaml.example "
                                    f"for the format.") from exc
    out = ExtraPaths()
    if config is None:
        return out
    if not isinstance(config, dict):
        raise ModelPathsConfigError(f"{path}: expected sections such as 'comfyui:' or 'a1111:' at the top level, "
                                    f"found a {type(config).__name__}.")
    yaml_dir = path.resolve().parent
    for section, conf in config.items():
        if conf is None:
            continue
        if not isinstance(conf, dict):
            raise ModelPathsConfigError(f"{path}: section {section!r} must map categories to folders, "
                                        f"found a {type(conf).__name__}.")
        conf = dict(conf)
        base = conf.pop("base_path", None)
        is_default = bool(conf.pop("is_default", False))
        base_dir: Path | None = None
        if base:
            base_dir = Path(os.path.expandvars(os.path.expanduser(str(base))))
            if not base_dir.is_absolute():
                base_dir = yaml_dir / base_dir
        target = out.default_first if is_default else out.last
        for category, value in conf.items():
            for line in _path_lines(value, path, section, category):
                folder = Path(os.path.expandvars(os.path.expanduser(line)))
                if not folder.is_absolute():
                    folder = (base_dir or yaml_dir) / folder
                target.setdefault(str(category), []).append(Path(os.path.normpath(folder)))
    return out


def _path_lines(value: object, path: Path, section: object, category: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        items: Iterable[object] = value.split("\n")
    elif isinstance(value, list):
        items = value
    else:
        raise ModelPathsConfigError(f"{path}: {section}.{category} must be a folder path or one path per line, "
                                    f"found {value!r}.")
    lines = []
    for item in items:
        if not isinstance(item, str):
            raise ModelPathsConfigError(f"{path}: {section}.{category} contains {item!r}, which is not a path.")
        if item.strip():
            lines.append(item.strip())
    return lines


def user_models_dir() -> Path:
    """The user data folder's ``models/`` (it may not exist)."""
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)) / "models"


def user_config_file() -> Path:
    """Where NodeGraph looks for ``extra_model_paths.yaml`` (it may not exist)."""
    import platformdirs

    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / CONFIG_FILE_NAME


@dataclass
class _Listing:
    files: dict[str, Path]  # relative name -> full path, first folder wins
    dir_mtimes: dict[str, int]  # every folder walked -> st_mtime_ns
    missing: tuple[str, ...]  # category folders that did not exist
    trusted: bool  # False when a folder changed too recently to trust its mtime


class ModelFolders:
    """The ordered model folders of each category, with cached listings.

    Build one from explicit parts in tests::

        folders = ModelFolders(models_dirs=[tmp_path], env={}, include_user_dirs=False)

    ``env`` defaults to ``os.environ`` (for ``NODEGRAPH_MODELS`` and ``NODEGRAPH_TESTING``).
    ``include_user_dirs`` (the user data folder, the app folder and the user's
    ``extra_model_paths.yaml``) defaults to on, off when ``NODEGRAPH_TESTING=1``.
    ``extra_config`` names an ``extra_model_paths.yaml`` to read in any case.
    """

    def __init__(
        self,
        models_dirs: Sequence[str | os.PathLike[str]] = (),
        *,
        extra_config: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        include_user_dirs: bool | None = None,
        include_package: bool = True,
    ) -> None:
        env = os.environ if env is None else env
        if include_user_dirs is None:
            include_user_dirs = env.get(ENV_TESTING, "") not in ("1", "true", "yes")
        first = [Path(d).expanduser() for d in models_dirs]
        first += [Path(p).expanduser() for p in env.get(ENV_MODELS, "").split(os.pathsep) if p.strip()]
        configs = [Path(extra_config)] if extra_config is not None else []
        if include_user_dirs and user_config_file().is_file():
            configs.append(user_config_file())
        extras = [read_extra_model_paths(c) for c in configs]

        self.first_roots: list[Path] = first
        self.user_roots: list[Path] = [user_models_dir(), APP_MODELS_DIR] if include_user_dirs else []
        self.package_root: Path | None = PACKAGE_MODELS_DIR if include_package else None
        self.config_files: list[Path] = configs
        self._extra_first: dict[str, list[Path]] = {}
        self._extra_last: dict[str, list[Path]] = {}
        for extra in extras:
            for cat, dirs in extra.default_first.items():
                self._extra_first.setdefault(cat, []).extend(dirs)
            for cat, dirs in extra.last.items():
                self._extra_last.setdefault(cat, []).extend(dirs)
        self._cache: dict[str, _Listing] = {}
        self._lock = threading.Lock()

    # -- folders ---------------------------------------------------------------------------
    def roots(self) -> list[Path]:
        """The models roots (folders holding category sub-folders), in search order."""
        roots = self.first_roots + self.user_roots
        return roots + ([self.package_root] if self.package_root else [])

    def folders(self, category: str) -> list[Path]:
        """Every folder searched for ``category``, in order, without duplicates."""
        _check_category(category)
        order = [r / category for r in self.first_roots]
        order += self._extra_first.get(category, [])
        order += [r / category for r in self.user_roots]
        order += self._extra_last.get(category, [])
        if self.package_root:
            order.append(self.package_root / category)
        seen: set[str] = set()
        unique = []
        for folder in order:
            key = os.path.normcase(os.path.abspath(folder))
            if key not in seen:
                seen.add(key)
                unique.append(folder)
        return unique

    # -- listing ---------------------------------------------------------------------------
    def list(self, category: str, extensions: Iterable[str] | None = None) -> list[str]:
        """Relative names (``/``-separated, sub-folders included) of the model files of ``category``,
        sorted; a name found in several folders is listed once (the first folder wins)."""
        names = self._listing(category).files
        if extensions is None:
            return sorted(names)
        exts = {e.lower() for e in extensions}
        return sorted(n for n in names if os.path.splitext(n)[1].lower() in exts)

    def refresh(self) -> None:
        """Forget every cached listing (the next ``list`` walks the folders again)."""
        with self._lock:
            self._cache.clear()

    def _listing(self, category: str) -> _Listing:
        folders = self.folders(category)
        with self._lock:
            cached = self._cache.get(category)
            if cached is not None and _still_valid(cached):
                return cached
            listing = _scan(folders)
            self._cache[category] = listing
            return listing

    # -- lookup ----------------------------------------------------------------------------
    def find(self, category: str, name: str) -> Path:
        """The full path of model ``name`` (as ``list`` gives it; ``\\`` accepted for ``/``).

        Raises ``ModelNotFound`` listing the folders searched and the files found (closest first).
        """
        rel = _safe_relative_name(category, name)
        folders = self.folders(category)
        if rel is not None:
            for folder in folders:
                candidate = folder.joinpath(*rel.split("/"))
                if candidate.is_file():
                    return candidate
        found = sorted(self._listing(category).files)
        hint = "" if rel is not None else ("A model name must be a relative path inside the model folders "
                                           "(no '..', no drive or absolute path).")
        raise ModelNotFound(category, str(name), folders, _closest_first(str(name), found), hint)


    def locate(self, name: str) -> Path | None:
        """The file ``name`` names in any category — those NodeGraph knows, then the other
        sub-folders of the roots — or None (how a batch finds the model files a graph names)."""
        for category in self.categories():
            try:
                return self.find(category, name)
            except (ModelNotFound, ValueError):
                continue
        return None

    def categories(self) -> list[str]:
        """The categories NodeGraph knows, then the other sub-folders of the roots (sorted)."""
        found = list(CATEGORIES)
        for root in self.roots():
            if root.is_dir():
                found += sorted(p.name for p in root.iterdir()
                                if p.is_dir() and p.name not in found and not p.name.startswith("."))
        return found

    def find_anywhere(self, category: str, name: str, suffixes: Sequence[str] = ()) -> Path | None:
        """The file of ``category`` named ``name`` or ``name`` + one of ``suffixes``, directly in one of
        its folders or in any sub-folder (how ComfyUI looks up embeddings), or None. The shallowest
        match wins, then the folder order; a name that could point outside the folders finds nothing."""
        rel = _safe_relative_name(category, name)
        if rel is None:
            return None
        wanted = [rel, *(rel + suffix for suffix in suffixes)]
        best: tuple[tuple[int, int], Path] | None = None
        for found, path in self._listing(category).files.items():
            for i, want in enumerate(wanted):
                if found == want or found.endswith("/" + want):
                    rank = (found.count("/") - want.count("/"), i)
                    if best is None or rank < best[0]:
                        best = (rank, path)
        return None if best is None else best[1]


def _check_category(category: str) -> None:
    if not category or "/" in category or "\\" in category or category in (".", ".."):
        raise InputError(f"model category {category!r} is not a folder name (e.g. 'checkpoints').")


def _safe_relative_name(category: str, name: str) -> str | None:
    """``name`` as a clean relative path, or None when it could point outside the folders."""
    if not isinstance(name, str) or not name or "\x00" in name:
        return None
    rel = name.replace("\\", "/")
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if rel.startswith("/") or (len(rel) > 1 and rel[1] == ":") or ".." in parts or not parts:
        return None
    return "/".join(parts)


def _closest_first(name: str, found: list[str]) -> list[str]:
    key = name.replace("\\", "/").lower()
    base = key.rsplit("/", 1)[-1]
    lowered = {f.lower(): f for f in found}
    close = difflib.get_close_matches(key, list(lowered), n=10, cutoff=0.4)
    close += difflib.get_close_matches(base, [f.rsplit("/", 1)[-1].lower() for f in found], n=10, cutoff=0.4)
    ranked: list[str] = []
    for c in close:
        for f in found:
            if (f.lower() == c or f.rsplit("/", 1)[-1].lower() == c) and f not in ranked:
                ranked.append(f)
    return ranked + [f for f in found if f not in ranked]


def _scan(folders: Sequence[Path]) -> _Listing:
    started = time.time()
    files: dict[str, Path] = {}
    mtimes: dict[str, int] = {}
    missing = []
    trusted = True
    visited: set[tuple[int, int]] = set()  # (device, inode) of every folder listed: each real one once
    for folder in folders:
        if not folder.is_dir():
            missing.append(str(folder))
            continue
        for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
            try:
                st = os.stat(dirpath)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in visited:  # a link back to a folder already listed (a loop)
                dirnames[:] = []
                continue
            visited.add((st.st_dev, st.st_ino))
            mtimes[dirpath] = st.st_mtime_ns
            if started - st.st_mtime_ns / 1e9 < _RACY_SECONDS:
                trusted = False
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            rel_dir = os.path.relpath(dirpath, folder)
            for fname in filenames:
                if fname.startswith(".") or os.path.splitext(fname)[1].lower() not in MODEL_EXTENSIONS:
                    continue
                rel = fname if rel_dir == "." else f"{rel_dir}/{fname}".replace(os.sep, "/")
                files.setdefault(rel, Path(dirpath) / fname)
    return _Listing(files, mtimes, tuple(missing), trusted)


def _still_valid(listing: _Listing) -> bool:
    if not listing.trusted:
        return False
    for dirpath, mtime in listing.dir_mtimes.items():
        try:
            if os.stat(dirpath).st_mtime_ns != mtime:
                return False
        except OSError:
            return False
    return not any(os.path.isdir(m) for m in listing.missing)


# -- the process-wide instance ----------------------------------------------------------------
_default: ModelFolders | None = None
_default_lock = threading.Lock()


def configure(
    models_dirs: Sequence[str | os.PathLike[str]] = (),
    *,
    extra_config: str | os.PathLike[str] | None = None,
    include_user_dirs: bool | None = None,
) -> ModelFolders:
    """Replace the process-wide model folders (the CLI calls this with ``--models``)."""
    global _default
    folders = ModelFolders(models_dirs, extra_config=extra_config, include_user_dirs=include_user_dirs)
    with _default_lock:
        _default = folders
    return folders


def default_folders() -> ModelFolders:
    """The process-wide model folders (built from the environment on first use)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = ModelFolders()
        return _default


def list_models(category: str) -> list[str]:
    """``default_folders().list(category)``: what a model choice param offers."""
    return default_folders().list(category)


def find_model(category: str, name: str) -> Path:
    """``default_folders().find(category, name)``."""
    return default_folders().find(category, name)


class FoldersCache:
    """The model folders of runs by their extra roots (``RunOptions.models_dirs``), each kept with its
    cached listings; the ``size`` most recently used lists of roots are kept (a session owns one)."""

    def __init__(self, size: int = 16):
        self.size = size
        self._by_roots: OrderedDict[tuple[str, ...], ModelFolders] = OrderedDict()
        self._lock = threading.Lock()

    def folders(self, models_dirs: Sequence[str | os.PathLike[str]] = ()) -> ModelFolders:
        """``models_dirs`` searched first, then everything ``default_folders()`` searches; without
        ``models_dirs`` this is ``default_folders()``."""
        if not models_dirs:
            return default_folders()
        key = tuple(os.path.abspath(os.fspath(d)) for d in models_dirs)
        with self._lock:
            folders = self._by_roots.pop(key, None) or ModelFolders(key)
            self._by_roots[key] = folders
            while len(self._by_roots) > self.size:
                self._by_roots.popitem(last=False)
            return folders


def folder_resolver(models_dirs: Sequence[str | os.PathLike[str]] = ()) -> Callable[[str], Path | None]:
    """``name -> Path | None``: :meth:`ModelFolders.locate` in the folders ``models_dirs`` adds to
    the default ones, each name looked up once."""
    folders = ModelFolders(models_dirs)
    return functools.lru_cache(maxsize=None)(folders.locate)
