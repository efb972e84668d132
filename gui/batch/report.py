"""The sentences the Batch dialog shows: the stats line of a running batch, and how it ended —
its exit code (:mod:`nodegraph.exitcodes`) and what ``nodegraph batch`` said — in one sentence."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from nodegraph.exitcodes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK

if TYPE_CHECKING:
    from .state import BatchState


def format_duration(seconds: float | None) -> str:
    """``0:42``, ``12:05``, ``1:02:03``; ``?`` when unknown."""
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def stats_text(state: BatchState) -> str:
    """``12/24 done · 2.04 items/s · ETA 0:06 · 0 retried · 0 failed`` (``took 0:12`` instead of
    the ETA once finished)."""
    parts = [f"{state.done}/{state.total} done"]
    if state.skipped:
        parts.append(f"{state.skipped} done before")
    parts.append(f"{state.items_per_s:.2f} items/s")
    parts.append(f"took {format_duration(state.elapsed_s)}" if state.finished
                 else f"ETA {format_duration(state.eta_s)}")
    parts += [f"{state.retries} retried", f"{state.failed} failed"]
    return " · ".join(parts)


def cli_message(stderr_lines: Sequence[str]) -> str:
    """What ``nodegraph batch`` said about why it stopped: its ``nodegraph batch: …`` lines, else
    the last lines of stderr (graph problems; a traceback's last line)."""
    lines = [line.strip() for line in stderr_lines
             if line.strip() and not line.strip().startswith("stopping:")]
    said = [line.removeprefix("nodegraph batch: ") for line in lines
            if line.startswith("nodegraph batch: ")]
    return "\n".join((said or lines)[-6:])


def exit_summary(code: int | None, state: BatchState, stderr_lines: Sequence[str] = (), *,
                 crashed: bool = False, killed: bool = False,
                 stopped: bool = False) -> tuple[str, str]:
    """(level, text) for the end of a batch: level ``ok``, ``warn`` or ``error``. ``crashed``: the
    process died of a signal — ``killed`` by the dialog, or ``stopped`` (a Stop that came before
    the batch could handle it, e.g. while Python was still starting)."""
    counts = f"{state.done}/{state.total} done, {state.failed} failed"
    remaining = max(state.total - state.done - state.failed, 0)
    resume = (f" The folder is resumable: Start again with Resume to do the remaining {remaining}."
              if state.started and remaining else "")
    said = cli_message(state.error or stderr_lines)
    if crashed or code is None:
        if killed or stopped:
            return ("error" if killed else "warn"), \
                f"{'Killed' if killed else 'Stopped'}: {counts}.{resume}"
        return "error", f"The batch process crashed: {counts}.{resume}" + (f"\n{said}" if said else "")
    if code == EXIT_OK:
        before = f" ({state.skipped} done before)" if state.skipped else ""
        return "ok", f"Done: {state.done}/{state.total} items{before}."
    if code == EXIT_INTERRUPTED:
        return "warn", f"Interrupted: {counts}.{resume}"
    if code == EXIT_INVALID:
        return "error", f"Not started — nodegraph batch refused the request:\n{said or '(no message)'}"
    if code == EXIT_FAILED:
        if state.failed and state.finished:
            return "error", (f"Finished with failures: {counts}. See errors.jsonl in the folder "
                             "(the failed items are not retried on resume).")
        return "error", f"The batch stopped: {said or '(no message)'}\n{counts}.{resume}"
    return "error", f"nodegraph batch exited with code {code}: {said or '(no message)'}\n{counts}."
