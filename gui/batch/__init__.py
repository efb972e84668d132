"""The editor's Batch dialog (:mod:`gui.batch.dialog`) and its parts.

Plain Python, no Qt (tested in tests/batch/test_dialog_*.py):

- :mod:`~gui.batch.sweeps` — a table row, and the grid's size computed with the engine's own sweep
  parser (``nodegraph.batch.sweeps``), errors per row;
- :mod:`~gui.batch.command` — the command line the dialog runs, the child's environment, the
  graph snapshot;
- :mod:`~gui.batch.stream` — bytes of a stream → complete lines → progress events;
- :mod:`~gui.batch.state` — the events → counters, workers and log messages;
- :mod:`~gui.batch.report` — the stats line, and the exit code (and what stderr said) → one
  sentence.

Qt: :mod:`~gui.batch.table` (the sweep table widget), :mod:`~gui.batch.run_view` (progress,
workers, log), :mod:`~gui.batch.process` (the child process, followed to its end),
:mod:`~gui.batch.dialog` (the dialog that puts them together).
"""
