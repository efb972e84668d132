"""What the built-in nodes share when they compute: model files, the model manager, precision, progress.

Loaded models and model-folder listings belong to the session that runs the graph (its
``nodegraph.resources.Resources``, which the run's options carry); a node function reaches them
through ``ctx.options``.

- ``model_param(name, category, what)``: a COMBO param choosing a model file: its choices are the files
  found in the run's model folders (``model_choices``), and a missing file is explained by the folders
  searched and the files found (``model_unlisted``).
- ``model_file(options, category, name)``: the file behind a model param and its identity, looked up
  once per run (``find_model`` gives the path); ``model_fingerprint`` makes a loader node load again
  when that file changes.
- ``load_checkpoint(ctx, name, dtype)``, ``load_vae(ctx, name, dtype)``, ``load_model(ctx, file,
  read, *key)``: a model file read once while it is unchanged (and shared by every graph of the
  session); a real read is reported to the run's stats (``ctx.model_loaded()``).
- ``manager(options)``: the session's ``ModelManager`` for the run's device (``--device``);
  ``get_manager()`` / ``set_manager()``: the default session's.
- ``dtype_choice(options)``: the precision the run's ``--dtype`` resolves to (``auto`` policy in memory.py).
- ``on_device(options, *modules)``: a ``with`` block in which modules sit on the compute device.
- ``step_reporter(ctx)``: a sampler callback reporting each step (with its latent preview) to ``ctx``.
- ``locate_model(name, options)``: the model file a param value names in any category (the pack's
  ``nodegraph_model_locators`` hook).

Importing this module does not import torch; the functions do when they are called.
"""
from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from nodegraph.context import RunContext, RunOptions
from nodegraph.registry import Combo, ParamSpec
from nodegraph.resources import default_resources, resources_for
from nodes.folders import FoldersCache, ModelFolders, ModelNotFound

if TYPE_CHECKING:
    from nodes.sd.checkpoint import LoadedCheckpoint, ModelManager
    from nodes.sd.memory import DtypeChoice
    from nodes.sd.vae import VAE

T = TypeVar("T")

MANAGER = "nodes.model_manager"
FOLDERS = "nodes.model_folders"
"""The keys of the session resources this pack keeps: its ModelManager and its FoldersCache."""


def _roots(options: RunOptions | None) -> tuple[Path, ...]:
    return tuple(options.models_dirs) if options is not None else ()


def model_folders(options: RunOptions | None) -> ModelFolders:
    """The model folders of a run: its ``--models`` roots first, then the default ones (the session
    keeps their listings)."""
    return resources_for(options).get(FOLDERS, FoldersCache).folders(_roots(options))


def model_choices(category: str) -> Callable[[RunOptions], list[str]]:
    """Choices provider of a model param: the files of ``category`` in the run's model folders."""

    def provider(options: RunOptions) -> list[str]:
        return model_folders(options).list(category)

    provider.__name__ = f"list_{category}"
    return provider


def model_unlisted(category: str) -> Callable[[Any, RunOptions | None], str | None]:
    """``check_unlisted`` of a model param: the "not found" message naming the folders searched and
    the files found there (None if the file turns up after all, e.g. written a moment ago)."""

    def check(value: Any, options: RunOptions | None) -> str | None:
        if not isinstance(value, str):
            return f"{value!r} is not a file name; choose one of the {category} files"
        try:
            model_folders(options).find(category, value)
        except ModelNotFound as exc:
            return str(exc)
        return None

    return check


def model_param(name: str, category: str, what: str) -> ParamSpec:
    """A COMBO param choosing a model file of ``category`` (choices, and the explanation of a missing file)."""
    return Combo(name, model_choices(category), "", check_unlisted=model_unlisted(category),
                 description=f"{what} file in a '{category}' models folder")


@dataclass(frozen=True)
class ModelFile:
    """A model file a param names: the path found, and ``identity`` (resolved path, size,
    modification time in ns), which changes when the file is replaced or edited."""

    path: Path
    identity: tuple[str, int, int]


def model_file(options: RunOptions, category: str, name: str) -> ModelFile:
    """The file behind model ``name`` of ``category`` (raises ModelNotFound listing where it looked).
    During a run the answer is kept, so that the loader's fingerprint and the loader itself see the
    same file: a name is looked up, and its file stat'ed, once per run."""
    resources = resources_for(options)
    key = ("nodes.model_file", _roots(options), category, name)
    memo = resources.run_memo
    found = memo.get(key) if memo is not None else None
    if found is None:
        path = model_folders(options).find(category, name)
        resolved = path.resolve()
        st = resolved.stat()
        found = ModelFile(path, (str(resolved), st.st_size, st.st_mtime_ns))
        if memo is not None:
            memo[key] = found
    return found


def find_model(options: RunOptions, category: str, name: str) -> Path:
    """The path of model ``name`` of ``category`` (raises ModelNotFound listing where it looked)."""
    return model_file(options, category, name).path


def locate_model(name: str, options: RunOptions) -> Path | None:
    """The model file a param value names, in any category of the run's model folders, or None
    (the built-in pack's ``nodegraph_model_locators`` hook)."""
    return model_folders(options).locate(name)


def model_fingerprint(category: str, param: str) -> Callable[[dict[str, Any], RunOptions], str]:
    """Fingerprint of a model loader node: the file's path, size and modification time, so that a
    file replaced on disk is loaded again instead of coming from the output cache."""

    def fingerprint(params: dict[str, Any], options: RunOptions) -> str:
        return "|".join(map(str, model_file(options, category, params[param]).identity))

    return fingerprint


# -- loading ----------------------------------------------------------------------------------------
def load_checkpoint(ctx: RunContext, name: str, dtype: DtypeChoice) -> LoadedCheckpoint:
    """Checkpoint ``name`` in the precision ``dtype`` (see ``ModelManager.load_checkpoint``)."""
    file = model_file(ctx.options, "checkpoints", name)
    return manager(ctx.options).load_checkpoint(file.path, dtype=dtype, identity=file.identity,
                                                on_load=_load_reporter(ctx))


def load_vae(ctx: RunContext, name: str, dtype: Any) -> VAE:
    """Standalone VAE ``name`` with weights in ``dtype`` (see ``ModelManager.load_vae``)."""
    file = model_file(ctx.options, "vae", name)
    return manager(ctx.options).load_vae(file.path, dtype=dtype, identity=file.identity,
                                         on_load=_load_reporter(ctx))


def load_model(ctx: RunContext, file: ModelFile, read: Callable[[Path], T], *key: Hashable) -> T:
    """``read(path)`` of a model file (:func:`model_file`), read once while the file is unchanged
    (``key``: what tells this kind of load apart from others of the same file, e.g. a dtype)."""
    return manager(ctx.options).load(file.path, lambda: read(file.path), *key,
                                     identity=file.identity, on_load=_load_reporter(ctx))


def _load_reporter(ctx: Any) -> Callable[[], None] | None:
    """What to call when a model file is really read: the run context's ``model_loaded`` (a
    test's stand-in context without one counts nothing)."""
    return getattr(ctx, "model_loaded", None)


def manager(options: RunOptions) -> ModelManager:
    """The session's ModelManager, on the device the run asks for (a new manager if it changed)."""
    from nodes.sd.checkpoint import ModelManager
    from nodes.sd.memory import choose_device

    device = choose_device(options.device)
    resources = resources_for(options)
    current = resources.get(MANAGER, lambda: ModelManager(device=device))
    if current.device != device:
        current = ModelManager(device=device)
        resources.replace(MANAGER, current)
    return current


def get_manager() -> ModelManager:
    """The default session's ModelManager (made on first use, on the automatic device)."""
    from nodes.sd.checkpoint import ModelManager

    return default_resources().get(MANAGER, ModelManager)


def set_manager(manager: ModelManager | None) -> ModelManager | None:
    """Replace the default session's ModelManager (e.g. with another device); returns the previous one."""
    return default_resources().replace(MANAGER, manager)


def dtype_choice(options: RunOptions) -> DtypeChoice:
    """The precision of each model component for this run (``--dtype``; ``auto`` is memory.py's policy)."""
    from nodes.sd.memory import choose_dtype

    return choose_dtype(options.dtype, manager(options).device)


@contextmanager
def on_device(options: RunOptions, *modules: Any) -> Iterator[Any]:
    """Keep ``modules`` on the run's compute device for the block (the manager may offload others)."""
    with manager(options).use(*modules) as device:
        yield device


def step_reporter(ctx: RunContext) -> Callable[[Any], None]:
    """A sampler callback: reports step ``i+1`` of ``total`` with the cheap latent preview, and raises
    Interrupted from inside the loop when the run is stopped (so a stop takes effect within one step)."""

    def report(info: Any) -> None:
        ctx.progress(info.step + 1, info.total, info.preview())

    return report
