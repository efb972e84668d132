"""Running a command as a user without root's powers over files (imported by tests as ``unprivileged``).

Read-only and unreadable folders only stop a process that lacks root's file capabilities. Tests of
those cases run the command as it would run for an ordinary user: as is when the suite is not root,
else under ``setpriv`` with CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH and CAP_FOWNER removed, so that
file modes apply to it as to anyone.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

_CAPS = "-dac_override,-dac_read_search,-fowner"


def command(*args: str) -> list[str]:
    """``python -m nodegraph ARGS`` as an ordinary user would run it."""
    return python("-m", "nodegraph", *args)


def python(*args: str) -> list[str]:
    """``python ARGS`` (a script, ``-c``, ``-m``) as an ordinary user would run it."""
    cmd = [sys.executable, *args]
    if os.geteuid() != 0:
        return cmd
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv (util-linux): cannot drop root's file powers")
    return [setpriv, f"--bounding-set={_CAPS}", f"--inh-caps={_CAPS}", "--", *cmd]


def run(*args: str, cwd: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``nodegraph ARGS`` without root's file powers; text output captured, never raises."""
    full_env = dict(os.environ, OMP_NUM_THREADS="1", NODEGRAPH_TESTING="1", **(env or {}))
    return subprocess.run(command(*args), cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=300)
