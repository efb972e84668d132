"""The exit codes of the ``nodegraph`` commands, in one place.

Every sub-command (``run``, ``validate``, ``batch``, ``import-comfy``, ``export-comfy``, …) returns
one of these, and clients that start a command in a child process (the editor's Batch dialog)
read them back. What ``EXIT_FAILED`` means in detail is for each command's help to say.
"""
from __future__ import annotations

EXIT_OK = 0
"""Everything asked for was done."""
EXIT_FAILED = 1
"""The request was valid but did not all succeed: a node failed while running (``run``), some
items failed or the batch was aborted (``batch``)."""
EXIT_INVALID = 2
"""Nothing was done: unreadable file, validation errors, bad arguments."""
EXIT_INTERRUPTED = 130
"""Stopped by Ctrl-C / SIGINT (the shell's 128 + 2); what finished is kept."""
