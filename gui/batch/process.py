"""One ``nodegraph batch … --progress json`` in a child process (QProcess), followed to its end.

The JSON events on stdout update :attr:`BatchProcess.state`; other stdout lines and every stderr
line become log lines. Stop sends SIGINT (running items finish, the folder stays resumable); a
second Stop kills the batch (its local workers die with it). At the end, the exit code and what
the batch said become one sentence (:func:`~gui.batch.report.exit_summary`).
"""
from __future__ import annotations

import os
import signal
import sys

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, Signal

from .report import exit_summary
from .state import BatchState
from .stream import LineBuffer, parse_event

WARNING_EVENTS = ("worker_lost", "item_failed", "retry")
"""Events whose log messages are shown as warnings."""


class BatchProcess(QObject):
    """``argv`` run with ``env``. Signals: ``log(text, style)`` with style "", "warn" or "dim";
    ``changed()`` after events updated ``state``; ``ended((level, text))`` once, at the end
    (also when the program could not start). ``rename = (old, new)`` replaces a path in stderr
    lines (problems name the graph, not its snapshot)."""

    log = Signal(str, str)
    changed = Signal()
    ended = Signal(object)

    def __init__(self, argv: list[str], env: dict[str, str], rename: tuple[str, str] = ("", ""),
                 parent: QObject | None = None):
        super().__init__(parent)
        self.state = BatchState()
        self.stderr_lines: list[str] = []
        self.exit_code: int | None = None
        self.summary: tuple[str, str] | None = None
        self.stop_requested = False
        self.killed = False
        self._rename = rename
        self._stdout, self._stderr = LineBuffer(), LineBuffer()
        self.process = QProcess(self)
        environment = QProcessEnvironment()
        for key, value in env.items():
            environment.insert(key, value)
        self.process.setProcessEnvironment(environment)
        self.process.setProgram(argv[0])
        self.process.setArguments(argv[1:])
        self.process.readyReadStandardOutput.connect(self._read_stdout)
        self.process.readyReadStandardError.connect(self._read_stderr)
        self.process.finished.connect(self._finished)
        self.process.errorOccurred.connect(self._process_error)

    @property
    def running(self) -> bool:
        return self.process.state() != QProcess.NotRunning

    def start(self) -> None:
        self.process.start()

    # -- stopping ------------------------------------------------------------------------------
    def stop(self) -> None:
        """First call: SIGINT (running items finish, nothing new starts, the folder stays
        resumable). Second call: kill the batch."""
        if not self.running:
            return
        if self.stop_requested:
            self.kill()
            return
        self.stop_requested = True
        self.log.emit("stopping: running items finish, no new ones start (Stop again to kill)", "")
        if not _interrupt(self.process):
            self.kill()

    def kill(self) -> None:
        if self.running:
            self.killed = True
            self.log.emit("killing the batch", "")
            self.process.kill()

    def kill_now(self) -> None:
        """The application quits: no batch outlives it."""
        if self.running:
            self.killed = True
            self.process.kill()
            self.process.waitForFinished(5000)

    def shutdown(self, timeout_ms: int) -> None:
        """Stop the batch and wait for it: SIGINT, then kill after ``timeout_ms``."""
        if not self.running:
            return
        if not self.stop_requested:
            self.stop()
        if not self.process.waitForFinished(timeout_ms):
            self.kill()
            self.process.waitForFinished(5000)

    # -- reading -------------------------------------------------------------------------------
    def _read_stdout(self) -> None:
        self._handle_stdout(self._stdout.feed(bytes(self.process.readAllStandardOutput().data())))

    def _handle_stdout(self, lines: list[str]) -> None:
        changed = False
        for line in lines:
            event = parse_event(line)
            if event is None:
                if line.strip():
                    self.log.emit(line, "")
                continue
            style = "warn" if event["event"] in WARNING_EVENTS else ""
            for message in self.state.apply(event):
                self.log.emit(message, style)
            changed = True
        if changed:
            self.changed.emit()

    def _read_stderr(self) -> None:
        self._handle_stderr(self._stderr.feed(bytes(self.process.readAllStandardError().data())))

    def _handle_stderr(self, lines: list[str]) -> None:
        old, new = self._rename
        for line in lines:
            if line.strip():
                line = line.replace(old, new) if old else line
                self.stderr_lines.append(line)
                self.log.emit(line, "dim")

    # -- the end -------------------------------------------------------------------------------
    def _finished(self, code: int, status: QProcess.ExitStatus) -> None:
        self._read_stdout()
        self._read_stderr()
        self._handle_stdout(self._stdout.flush())
        self._handle_stderr(self._stderr.flush())
        crashed = status == QProcess.CrashExit
        self.exit_code = None if crashed else code
        self._end(exit_summary(self.exit_code, self.state, self.stderr_lines, crashed=crashed,
                               killed=self.killed, stopped=self.stop_requested))

    def _process_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.FailedToStart:
            self._end(("error", f"Could not start {self.process.program()}: "
                                f"{self.process.errorString()}"))

    def _end(self, summary: tuple[str, str]) -> None:
        if self.summary is None:
            self.summary = summary
            self.ended.emit(summary)


def _interrupt(process: QProcess) -> bool:
    """Send SIGINT to a running process (POSIX); False where that is not possible."""
    pid = process.processId()
    if not pid or sys.platform == "win32":
        return False
    try:
        os.kill(pid, signal.SIGINT)
    except OSError:
        return False
    return True
