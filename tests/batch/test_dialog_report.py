"""The editor's Batch dialog, Qt-free: the stats line and how a batch ended, in one sentence
(gui.batch.report)."""
from __future__ import annotations

from gui.batch.report import exit_summary, stats_text
from gui.batch.state import BatchState


def test_the_stats_line_shows_rate_eta_retries_and_failures():
    state = BatchState(started=True, total=24, done=12, items_per_s=2.04, eta_s=6.2, retries=1)
    assert stats_text(state) == "12/24 done · 2.04 items/s · ETA 0:06 · 1 retried · 0 failed"
    state.skipped, state.eta_s = 3, None
    assert stats_text(state) == ("12/24 done · 3 done before · 2.04 items/s · ETA ? · 1 retried · "
                                 "0 failed")
    state.finished, state.elapsed_s = True, 3725
    assert "took 1:02:05" in stats_text(state) and "ETA" not in stats_text(state)


# -- the end of a batch ------------------------------------------------------------------------
def finished_state(**counts) -> BatchState:
    state = BatchState(started=True, finished=True, total=10)
    for name, value in counts.items():
        setattr(state, name, value)
    return state


def test_exit_codes_become_one_clear_sentence():
    assert exit_summary(0, finished_state(done=10, skipped=4)) == (
        "ok", "Done: 10/10 items (4 done before).")
    level, text = exit_summary(130, finished_state(done=3, interrupted=True))
    assert level == "warn" and text == ("Interrupted: 3/10 done, 0 failed. The folder is resumable: "
                                        "Start again with Resume to do the remaining 7.")
    level, text = exit_summary(1, finished_state(done=8, failed=2))
    assert level == "error" and "Finished with failures: 8/10 done, 2 failed" in text
    assert "errors.jsonl" in text
    level, text = exit_summary(2, BatchState(), [
        "nodegraph batch: cannot resume /o: the graph changed since the batch started (node 2 "
        "param prompt: 'a fox' → 'an owl')."])
    assert level == "error" and text.startswith("Not started")
    assert "cannot resume /o: the graph changed" in text and "nodegraph batch:" not in text
    level, text = exit_summary(1, BatchState(started=True, total=10, done=2), [
        "stopping: …", "nodegraph batch: every worker died before it was ready"])
    assert "The batch stopped: every worker died before it was ready" in text
    level, text = exit_summary(None, BatchState(started=True, total=10, done=2), crashed=True,
                               killed=True)
    assert level == "error" and text.startswith("Killed: 2/10 done") and "resumable" in text
    level, text = exit_summary(None, BatchState(), crashed=True, stopped=True)
    assert level == "warn" and text == "Stopped: 0/0 done, 0 failed."
    level, text = exit_summary(None, BatchState(), ["Segmentation fault"], crashed=True)
    assert level == "error" and text.startswith("The batch process crashed") and "Segmentation" in text


def test_the_error_event_says_why_without_reading_stderr():
    state = BatchState()
    state.apply({"event": "error", "kind": "invalid_request", "exit_code": 2,
                 "messages": ["nodegraph batch: --sweep '3.seed=a:b': 'a' is not a whole number"]})
    level, text = exit_summary(2, state, [])
    assert level == "error" and text == ("Not started — nodegraph batch refused the request:\n"
                                         "--sweep '3.seed=a:b': 'a' is not a whole number")
