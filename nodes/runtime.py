"""What the built-in nodes share when they compute: model files, the model manager, precision, progress.

- ``model_param(name, category, what)``: a COMBO param choosing a model file: its choices are the files
  found in the run's model folders (``model_choices``), and a missing file is explained by the folders
  searched and the files found (``model_unlisted``).
- ``find_model(options, category, name)``: the file behind a model param; ``model_fingerprint`` makes a
  loader node load again when that file changes.
- ``manager(options)``: the process-wide ``ModelManager`` for the run's device (``--device``).
- ``dtype_choice(options)``: the precision the run's ``--dtype`` resolves to (``auto`` policy in memory.py).
- ``on_device(options, *modules)``: a ``with`` block in which modules sit on the compute device.
- ``step_reporter(ctx)``: a sampler callback reporting each step (with its latent preview) to ``ctx``.

Importing this module does not import torch; the functions do when they are called.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nodegraph.context import RunContext, RunOptions
from nodegraph.registry import Combo, ParamSpec
from nodes.folders import ModelNotFound, folders_for

if TYPE_CHECKING:
    from nodes.sd.memory import DtypeChoice, ModelManager


def _roots(options: RunOptions | None) -> tuple[Path, ...]:
    return tuple(options.models_dirs) if options is not None else ()


def model_choices(category: str) -> Callable[[RunOptions], list[str]]:
    """Choices provider of a model param: the files of ``category`` in the run's model folders."""

    def provider(options: RunOptions) -> list[str]:
        return folders_for(_roots(options)).list(category)

    provider.__name__ = f"list_{category}"
    return provider


def model_unlisted(category: str) -> Callable[[Any, RunOptions | None], str | None]:
    """``check_unlisted`` of a model param: the "not found" message naming the folders searched and
    the files found there (None if the file turns up after all, e.g. written a moment ago)."""

    def check(value: Any, options: RunOptions | None) -> str | None:
        if not isinstance(value, str):
            return f"{value!r} is not a file name; choose one of the {category} files"
        try:
            folders_for(_roots(options)).find(category, value)
        except ModelNotFound as exc:
            return str(exc)
        return None

    return check


def model_param(name: str, category: str, what: str) -> ParamSpec:
    """A COMBO param choosing a model file of ``category`` (choices, and the explanation of a missing file)."""
    return Combo(name, model_choices(category), "", check_unlisted=model_unlisted(category),
                 description=f"{what} file in a '{category}' models folder")


def find_model(options: RunOptions, category: str, name: str) -> Path:
    """The path of model ``name`` of ``category`` (raises ModelNotFound listing where it looked)."""
    return folders_for(_roots(options)).find(category, name)


def locate_model(name: str, options: RunOptions) -> Path | None:
    """The model file a param value names, in any category of the run's model folders, or None
    (the built-in pack's ``nodegraph_model_locators`` hook)."""
    return folders_for(_roots(options)).locate(name)


def model_fingerprint(category: str, param: str) -> Callable[[dict[str, Any], RunOptions], str]:
    """Fingerprint of a model loader node: the file's path, size and modification time, so that a
    file replaced on disk is loaded again instead of coming from the output cache."""

    def fingerprint(params: dict[str, Any], options: RunOptions) -> str:
        path = find_model(options, category, params[param])
        st = path.stat()
        return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"

    return fingerprint


def manager(options: RunOptions) -> ModelManager:
    """The process-wide ModelManager, on the device the run asks for (a new manager if it changed)."""
    from nodes.sd.memory import ModelManager, choose_device, get_manager, set_manager

    device = choose_device(options.device)
    current = get_manager()
    if current.device != device:
        current = ModelManager(device=device)
        set_manager(current)
    return current


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
