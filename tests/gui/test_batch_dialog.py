"""The editor's Batch… dialog: the command line it builds from its table, the item count and
errors from the engine's sweep parser, the JSON progress reader, and real ``nodegraph batch``
runs (torch-free ``batchtest`` nodes from tests/batch/packs) followed to the end, stopped,
resumed and closed."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from shiboken6 import isValid

from nodegraph.api import Session
from nodegraph.batch.sweeps import parse_sweep
from nodegraph.cli import build_parser
from nodegraph.context import RunOptions
from nodegraph.errors import UsageError
from nodegraph.graph import Graph
from nodegraph.plugins import load_registry

from gui.batch_dialog import (BatchDialog, BatchRequest, BatchState, LineBuffer, SweepRow,
                              build_argv, count_items, default_rows, exit_summary, parse_event,
                              range_size, show_batch_dialog, stats_text)
from gui.document import Document

PACKS = Path(__file__).resolve().parents[1] / "batch" / "packs"


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bt_registry():
    """The batch tests' torch-free pack (what the child process finds via NODEGRAPH_PLUGIN_PATH)."""
    return load_registry(builtin=True, entry_points=False, folders=[PACKS])


@pytest.fixture
def models(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    (root / "checkpoints").mkdir(parents=True)
    (root / "checkpoints" / "blob.safetensors").write_bytes(b"weights " * 512)
    return root


def blob_graph(delay: float = 0.0) -> Graph:
    """LoadBlob(1) → Render(2, titled "Sampler") → SavePNG(3)."""
    g = Graph()
    a = g.add_node("batchtest.LoadBlob", {"ckpt_name": "blob.safetensors"}, id="1", pos=(0, 0))
    b = g.add_node("batchtest.Render", {"seed": 0, "prompt": "a fox", "delay": delay}, id="2",
                   title="Sampler", pos=(200, 0))
    c = g.add_node("batchtest.SavePNG", {"filename_prefix": "bt"}, id="3", pos=(400, 0))
    g.connect(a, "BLOB", b, "blob")
    g.connect(b, "PIXELS", c, "pixels")
    return g


@pytest.fixture
def make_dialog(qtbot, bt_registry, models, tmp_path, monkeypatch):
    """make_dialog(graph) -> a shown BatchDialog on a document of that graph; the child process
    finds the test pack; closing answers "stop"."""
    monkeypatch.setenv("NODEGRAPH_PLUGIN_PATH", str(PACKS))
    dialogs = []

    def make(graph: Graph, path: Path | None = None, parent=None) -> BatchDialog:
        doc = Document(bt_registry, graph, path)
        session = Session(bt_registry, options=RunOptions(models_dirs=(models,),
                                                          output_dir=tmp_path / "output"))
        dlg = BatchDialog(doc, session, parent)
        dlg.confirm_close = lambda: "stop"
        if parent is None:  # a child is closed and deleted with its parent
            qtbot.addWidget(dlg)
        dlg.show()
        qtbot.waitExposed(dlg)
        dialogs.append(dlg)
        return dlg

    yield make
    for dlg in dialogs:
        if isValid(dlg):
            dlg.shutdown(5000)


def wait_finished(dlg: BatchDialog, qtbot, timeout: int = 60_000) -> None:
    qtbot.waitUntil(lambda: dlg.summary is not None, timeout=timeout)


def results(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# -- the command line --------------------------------------------------------------------------
def test_argv_runs_this_nodegraph_with_the_sweeps_in_table_order(tmp_path):
    request = BatchRequest(graph_file=tmp_path / "g.json", out_dir=tmp_path / "out",
                           sweeps=[SweepRow("2", "seed", "0:3"), SweepRow("2", "prompt", "a, b")],
                           workers=2)
    assert build_argv(request, python="/venv/bin/python") == [
        "/venv/bin/python", "-m", "nodegraph", "batch", str(tmp_path / "g.json"),
        "--out", str(tmp_path / "out"), "--sweep", "2.seed=0:3", "--sweep", "2.prompt=a, b",
        "--workers", "2", "--progress", "json"]


def test_argv_for_ray_resume_models_device_and_a_relative_values_file(tmp_path):
    request = BatchRequest(graph_file=tmp_path / "g.json", out_dir=tmp_path / "out",
                           sweeps=[SweepRow("6", "text", "@prompts.txt")], ray=" 10.0.0.1:6379 ",
                           resume=True, models_dirs=[tmp_path / "m"], device="cpu", dtype="fp32",
                           base_dir=tmp_path / "graphs")
    argv = build_argv(request, python="py")
    assert argv[5:] == ["--out", str(tmp_path / "out"),
                        "--sweep", f"6.text=@{tmp_path / 'graphs' / 'prompts.txt'}",
                        "--ray", "10.0.0.1:6379", "--resume", "--models", str(tmp_path / "m"),
                        "--device", "cpu", "--dtype", "fp32", "--progress", "json"]
    assert "--workers" not in argv  # Ray picks its own count


def test_the_cli_parser_reads_the_dialogs_table_back(make_dialog, tmp_path):
    dlg = make_dialog(blob_graph())
    dlg.add_row(SweepRow("2", "prompt", "a fox,an owl"))
    dlg.workers_spin.setValue(1)
    argv = build_argv(dlg.request(tmp_path / "snap.json"))
    args = build_parser().parse_args(argv[3:])
    assert args.command == "batch" and args.graph == str(tmp_path / "snap.json")
    assert args.sweeps == ["2.seed=0:8", "2.prompt=a fox,an owl"]
    assert args.workers == 1 and args.progress == "json" and not args.resume
    assert Path(args.out) == tmp_path / "output" / "batch-untitled"
    assert args.models == [str(dlg.session.options.models_dirs[0])]


# -- the table and the count -------------------------------------------------------------------
def test_a_graph_with_a_seed_starts_with_a_seed_sweep(bt_registry):
    assert default_rows(blob_graph(), bt_registry) == [SweepRow("2", "seed", "0:8")]
    no_seed = Graph()
    no_seed.add_node("batchtest.SavePNG", {}, id="9")
    assert default_rows(no_seed, bt_registry) == []


def test_the_dialog_lists_nodes_by_id_and_title_and_the_nodes_params(make_dialog):
    dlg = make_dialog(blob_graph())
    node_combo = dlg.table.cellWidget(0, 0)
    param_combo = dlg.table.cellWidget(0, 1)
    assert [node_combo.itemText(i) for i in range(node_combo.count())] == [
        "1 · LoadBlob", "2 · Sampler", "3 · SavePNG"]
    assert node_combo.currentData() == "2"
    assert [param_combo.itemData(i) for i in range(param_combo.count())] == [
        "seed", "prompt", "width", "height", "batch_size", "delay", "fail_seed", "crash_seed"]
    assert dlg.count_label.text() == "8 items" and dlg.start_button.isEnabled()
    node_combo.setCurrentIndex(2)  # SavePNG: its params replace the Render's
    assert [param_combo.itemData(i) for i in range(param_combo.count())] == ["filename_prefix"]


def test_the_count_multiplies_the_sweeps_in_order(bt_registry):
    rows = [SweepRow("2", "prompt", "a, b ,c"), SweepRow("Sampler", "seed", "0:8")]
    count = count_items(blob_graph(), bt_registry, rows)
    assert count.ok and count.sizes == [3, 8] and count.total == 24
    assert count.describe() == "24 items: 3 × 8"
    assert count_items(blob_graph(), bt_registry, []).describe().startswith("1 item")


def test_a_bad_spec_shows_the_parsers_message_and_disables_start(make_dialog, bt_registry):
    dlg = make_dialog(blob_graph())
    assert dlg.start_button.isEnabled()
    dlg.spec_edit(0).setText("0:x")
    dlg.recount()
    with pytest.raises(UsageError) as engine:
        parse_sweep(blob_graph(), bt_registry, "2.seed=0:x")
    assert dlg.count_label.text() == str(engine.value)
    assert "--sweep '2.seed=0:x'" in dlg.count_label.text()
    assert not dlg.start_button.isEnabled()
    assert dlg.spec_edit(0).toolTip() == str(engine.value)
    assert dlg.start() is False and dlg.process is None
    dlg.spec_edit(0).setText("-3:2")  # below the param's minimum (0)
    dlg.recount()
    assert "value '-3'" in dlg.count_label.text() and not dlg.start_button.isEnabled()
    dlg.spec_edit(0).setText("0:4:2")
    dlg.recount()
    assert dlg.count_label.text() == "2 items" and dlg.start_button.isEnabled()


def test_typing_recounts_after_a_pause(make_dialog, qtbot):
    dlg = make_dialog(blob_graph())
    dlg.spec_edit(0).setText("0:100:25")
    qtbot.waitUntil(lambda: dlg.count_label.text() == "4 items", timeout=3000)


def test_sweeping_one_param_twice_is_refused(bt_registry):
    count = count_items(blob_graph(), bt_registry,
                        [SweepRow("2", "seed", "0:2"), SweepRow("2", "seed", "5,6")])
    assert not count.ok and "2.seed is given twice" in count.error


def test_a_values_file_is_read_relative_to_the_graphs_folder(bt_registry, tmp_path):
    (tmp_path / "prompts.txt").write_text("a fox, at dusk\n\nan owl\n")
    count = count_items(blob_graph(), bt_registry, [SweepRow("2", "prompt", "@prompts.txt")],
                        base_dir=tmp_path)
    assert count.ok and count.total == 2
    missing = count_items(blob_graph(), bt_registry, [SweepRow("2", "prompt", "@nope.txt")],
                          base_dir=tmp_path)
    assert not missing.ok and "cannot read the values file" in missing.error


def test_a_huge_range_is_counted_without_listing_it_and_its_ends_are_checked(bt_registry):
    assert range_size("0:5000000") == (5_000_000, "0", "4999999")
    assert range_size("10:0:-3") == (4, "10", "1")
    assert range_size("0.5:2:0.25") == (6, "0.5", "1.75")
    assert range_size("0:0") is None and range_size("a,b") is None
    started = time.perf_counter()
    count = count_items(blob_graph(), bt_registry, [SweepRow("2", "seed", "0:5000000")])
    assert count.ok and count.total == 5_000_000
    assert time.perf_counter() - started < 2.0  # listing 5 M values through the parser takes ~8 s
    too_big = count_items(blob_graph(), bt_registry, [SweepRow("2", "width", "1:300000")])
    assert not too_big.ok and "value '299999'" in too_big.error


def test_a_folder_holding_a_batch_checks_resume_and_says_why(make_dialog, tmp_path):
    dlg = make_dialog(blob_graph())
    assert not dlg.resume_check.isChecked() and not dlg.resume_check.isEnabled()
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "manifest.json").write_text("{}")
    dlg.out_edit.setText(str(folder))
    assert dlg.resume_check.isChecked() and dlg.resume_check.isEnabled()
    assert "already holds a batch" in dlg.resume_note.text()
    assert "--resume" in build_argv(dlg.request(tmp_path / "g.json"))


def test_the_default_folder_is_named_after_the_graph_file(make_dialog, tmp_path):
    dlg = make_dialog(blob_graph(), path=tmp_path / "fox.json")
    assert dlg.out_dir() == tmp_path / "output" / "batch-fox"


def test_the_run_menu_opens_one_non_modal_dialog_per_window(make_window):
    import graphs

    g = Graph()
    graphs.pipeline(g, 0, 0)
    win = make_window(g)
    run_menu = next(a.menu() for a in win.menuBar().actions() if a.text() == "&Run")
    assert win.act_batch in run_menu.actions()
    win.act_batch.trigger()
    dlg = win.findChild(BatchDialog)
    assert dlg is not None and dlg.isVisible() and not dlg.isModal()
    sampler = next(n.id for n in g.nodes.values() if n.type == "testpack.Sampler")
    assert dlg.rows() == [SweepRow(sampler, "seed", "0:8")]
    assert show_batch_dialog(win) is dlg


# -- reading the progress ----------------------------------------------------------------------
EVENTS = [
    {"event": "start", "progress_version": 1, "total": 5, "skipped": 1, "todo": 4, "workers": 2,
     "backend": "local", "out": "/o", "resume": True},
    {"event": "worker_starting", "worker": "local-1", "replacement": False},
    {"event": "worker_starting", "worker": "local-2", "replacement": False},
    {"event": "worker_ready", "worker": "local-1", "pid": 101, "host": "vm", "threads": 2},
    {"event": "worker_ready", "worker": "local-2", "pid": 102, "host": "vm", "threads": 2},
    {"event": "item_started", "index": 1, "worker": "local-1", "attempt": 1},
    {"event": "item_started", "index": 2, "worker": "local-2", "attempt": 1},
    {"event": "item_done", "index": 1, "key": "k1", "worker": "local-1", "seconds": 0.5,
     "files": ["000001-k1-3-0.png"], "attempt": 1},
    {"event": "worker_lost", "worker": "local-2", "reason": "worker process 102 exited by signal 9",
     "index": 2},
    {"event": "retry", "index": 2, "attempt": 2, "reason": "its worker died"},
    {"event": "worker_starting", "worker": "local-3", "replacement": True},
    {"event": "item_started", "index": 3, "worker": "local-1", "attempt": 1},
    {"event": "item_failed", "index": 3, "key": "k3", "kind": "graph",
     "error": "seed 3 is the one this test graph refuses\nmore detail", "worker": "local-1",
     "attempt": 1},
    {"event": "progress", "total": 5, "done": 2, "done_this_run": 1, "skipped": 1, "failed": 1,
     "retries": 1, "items_per_s": 1.25, "eta_s": 1.6, "elapsed_s": 3.0,
     "workers": {"local-1": {"done": 1, "items_per_s": 0.5, "alive": True, "host": "vm"},
                 "local-2": {"done": 0, "items_per_s": 0.0, "alive": False, "host": "vm"}}},
    {"event": "finish", "total": 5, "done": 4, "done_this_run": 3, "skipped": 1, "failed": 1,
     "retries": 1, "items_per_s": 1.5, "eta_s": None, "elapsed_s": 4.2, "interrupted": False,
     "model_loads": 2, "workers_started": 3, "replacements": 1, "out": "/o",
     "workers": {"local-1": {"done": 2, "items_per_s": 0.6, "alive": True, "host": "vm"},
                 "local-2": {"done": 0, "items_per_s": 0.0, "alive": False, "host": "vm"},
                 "local-3": {"done": 1, "items_per_s": 0.4, "alive": True, "host": "vm"}}},
]
STREAM = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in EVENTS).encode()


def test_lines_split_anywhere_come_out_whole():
    buffer = LineBuffer()
    text = '{"event": "retry", "reason": "ü"}\r\nstderr-ish line\n{"event": "pro'.encode()
    got = []
    for i in range(len(text)):  # one byte at a time: "ü" arrives in two halves
        got += buffer.feed(text[i:i + 1])
    assert got == ['{"event": "retry", "reason": "ü"}', "stderr-ish line"]
    assert buffer.feed(b'gress"}') == [] and buffer.flush() == ['{"event": "progress"}']
    assert buffer.flush() == []


def test_only_json_objects_with_an_event_are_events():
    assert parse_event('{"event": "start", "total": 3}') == {"event": "start", "total": 3}
    assert parse_event("Traceback (most recent call last):") is None
    assert parse_event('{"total": 3}') is None and parse_event('{"event": ') is None
    assert parse_event("[1, 2]") is None


def feed_all(chunks: list[bytes]) -> BatchState:
    buffer, state = LineBuffer(), BatchState()
    for chunk in chunks:
        for line in buffer.feed(chunk):
            event = parse_event(line)
            if event is not None:
                state.apply(event)
    return state


def test_every_event_kind_updates_the_state():
    state = BatchState()
    log = []
    for event in EVENTS[:8]:
        log += state.apply(event)
    assert state.started and (state.total, state.skipped, state.todo) == (5, 1, 4)
    assert state.backend == "local" and state.resume and state.out == "/o"
    assert state.done == 2 and state.done_this_run == 1 and state.files == ["000001-k1-3-0.png"]
    w1, w2 = state.workers["local-1"], state.workers["local-2"]
    assert (w1.pid, w1.host, w1.threads, w1.done, w1.item) == (101, "vm", 2, 1, None)
    assert w2.item == 2 and w2.status() == "alive · item 2" and w1.status() == "alive · idle"
    assert log == ["batch of 5 item(s), 4 to do (1 done before); 2 local worker(s)"]

    assert state.apply(EVENTS[8]) == [
        "worker local-2 lost while running item 2: worker process 102 exited by signal 9"]
    assert not w2.alive and w2.status() == "lost" and w2.item is None
    assert state.apply(EVENTS[9]) == [
        "item 2 goes back to the queue (attempt 2): its worker died"]
    assert state.retries == 1
    assert state.apply(EVENTS[10]) == ["starting replacement worker local-3"]
    assert state.workers["local-3"].status() == "starting…"
    state.apply(EVENTS[11])
    assert state.apply(EVENTS[12]) == [
        "item 3 failed (graph): seed 3 is the one this test graph refuses"]
    assert state.failed == 1 and state.failures == {3: "seed 3 is the one this test graph refuses\n"
                                                       "more detail"}
    assert w1.item is None

    state.apply(EVENTS[13])
    assert (state.done, state.items_per_s, state.eta_s, state.elapsed_s) == (2, 1.25, 1.6, 3.0)
    assert w1.items_per_s == 0.5 and not w2.alive
    assert not state.finished
    assert state.apply(EVENTS[14]) == [
        "finished: 4/5 done, 1 failed, 1 retried, 2 model load(s), 0:04"]
    assert state.finished and not state.interrupted and state.eta_s is None
    assert state.workers["local-1"].status() == "stopped" and w2.status() == "lost"
    assert (state.model_loads, state.workers_started, state.replacements) == (2, 3, 1)
    assert state.workers["local-3"].done == 1 and state.workers["local-1"].done == 2
    assert len(state.log) == 6


def test_the_state_is_the_same_however_the_stream_is_cut():
    whole = feed_all([STREAM])
    for size in (1, 7, 64, 333):
        cut = feed_all([STREAM[i:i + size] for i in range(0, len(STREAM), size)])
        assert cut == whole, size
    assert whole.done == 4 and whole.failed == 1


def test_an_unknown_event_is_ignored_and_a_newer_format_is_noted():
    state = BatchState()
    assert state.apply({"event": "something_new", "x": 1}) == []
    message = state.apply({"event": "start", "progress_version": 2, "total": 1, "todo": 1})
    assert "version 2" in message[0]


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


# -- real batches ------------------------------------------------------------------------------
def test_a_batch_runs_to_the_end_and_its_files_are_in_the_folder(make_dialog, qtbot):
    dlg = make_dialog(blob_graph())
    dlg.spec_edit(0).setText("0:3")
    dlg.recount()
    assert dlg.count_label.text() == "3 items"
    out = dlg.out_dir()
    assert dlg.start()
    assert not dlg.start_button.isEnabled() and dlg.stop_button.isEnabled()
    assert not dlg.table.isEnabled()
    wait_finished(dlg, qtbot)
    assert dlg.exit_code == 0, dlg.log_lines()
    assert dlg.summary == ("ok", "Done: 3/3 items.")
    assert dlg.progress.maximum() == 3 and dlg.progress.value() == 3
    assert dlg.status_label.isVisible() and dlg.status_label.text() == "Done: 3/3 items."
    lines = results(out)
    assert sorted(r["index"] for r in lines) == [0, 1, 2]
    assert sorted(r["overrides"][0] for r in lines) == [["2", "seed", s] for s in range(3)]
    names = [f["path"] for r in lines for f in r["files"]]
    assert len(names) == 3 and all((out / n).is_file() for n in names)
    assert sorted(dlg.state.files) == sorted(names)
    assert (out / "manifest.json").is_file()
    assert dlg.worker_table.rowCount() == 1
    assert [dlg.worker_table.item(0, c).text() for c in (0, 2)] == ["local-1", "3"]
    assert dlg.start_button.isEnabled() and not dlg.stop_button.isEnabled()
    assert dlg.open_button.isEnabled() and dlg.resume_check.isChecked()
    opened = []
    dlg.open_url = opened.append
    dlg.open_button.click()
    assert [u.toLocalFile() for u in opened] == [str(out)]
    worker = dlg.state.workers["local-1"].pid
    qtbot.waitUntil(lambda: not alive(worker), timeout=10_000)


def test_a_changed_graph_is_refused_on_resume_and_the_dialog_says_why(make_dialog, qtbot,
                                                                      bt_registry, models):
    from nodegraph.batch import run_batch

    dlg = make_dialog(blob_graph())
    dlg.spec_edit(0).setText("0:2")
    dlg.recount()
    run_batch(blob_graph(), dlg.out_dir(), ["2.seed=0:2"], workers=0, handle_sigint=False,
              session=Session(bt_registry, options=RunOptions(models_dirs=(models,))))
    dlg._check_folder()
    assert dlg.resume_check.isChecked()
    dlg.doc.graph.set_param("2", "prompt", "an owl")
    assert dlg.start()
    wait_finished(dlg, qtbot)
    assert dlg.exit_code == 2
    level, text = dlg.summary
    assert level == "error" and text.startswith("Not started")
    assert "the graph changed since the batch started" in text
    assert "node 2 param prompt: 'a fox' → 'an owl'" in text
    assert dlg.status_label.text() == text
    assert len(results(dlg.out_dir())) == 2  # nothing was touched


def test_stop_lets_running_items_finish_and_resume_does_the_rest(make_dialog, qtbot):
    dlg = make_dialog(blob_graph(delay=0.4))
    dlg.spec_edit(0).setText("0:6")
    dlg.recount()
    out = dlg.out_dir()
    assert dlg.start()
    qtbot.waitUntil(lambda: dlg.state.done_this_run >= 1, timeout=30_000)
    dlg.stop()
    assert dlg.stop_button.text() == "Kill"
    wait_finished(dlg, qtbot)
    assert dlg.stop_button.text() == "Stop" and not dlg.stop_button.isEnabled()
    assert dlg.exit_code == 130, dlg.log_lines()
    first = dlg.state.done
    assert dlg.state.interrupted and 1 <= first < 6
    assert dlg.summary[0] == "warn" and f"remaining {6 - first}" in dlg.summary[1]
    assert (out / "manifest.json").is_file() and len(results(out)) == first
    assert dlg.resume_check.isChecked()

    dlg.doc.graph.update_node("2", pos=(500, 300))  # moving a node keeps the batch resumable
    assert dlg.start()
    wait_finished(dlg, qtbot)
    assert dlg.exit_code == 0, dlg.log_lines()
    assert dlg.state.skipped == first and dlg.state.done_this_run == 6 - first
    assert dlg.progress.value() == dlg.progress.maximum() == 6
    assert sorted(r["index"] for r in results(out)) == list(range(6))


def test_closing_the_dialog_or_its_window_while_running_asks_then_stops_everything(
        make_dialog, qtbot):
    from PySide6.QtWidgets import QWidget

    window = QWidget()
    qtbot.addWidget(window)
    window.show()
    dlg = make_dialog(blob_graph(delay=0.4), parent=window)
    dlg.spec_edit(0).setText("0:50")
    dlg.recount()
    assert dlg.start()
    coordinator = dlg.process.processId()
    qtbot.waitUntil(lambda: any(w.pid for w in dlg.state.workers.values()), timeout=30_000)
    worker = dlg.state.workers["local-1"].pid
    asked = []
    dlg.confirm_close = lambda: asked.append("asked") or "cancel"
    dlg.close()
    assert asked == ["asked"] and dlg.isVisible() and dlg.running
    window.close()
    assert asked == ["asked"] * 2 and window.isVisible() and dlg.running
    dlg.confirm_close = lambda: "stop"
    window.close()
    assert not window.isVisible() and not dlg.running
    assert dlg.exit_code == 130 and dlg.state.interrupted
    assert not alive(coordinator)
    qtbot.waitUntil(lambda: not alive(worker), timeout=10_000)


def test_a_second_stop_kills_the_batch_and_its_workers_die_with_it(make_dialog, qtbot):
    dlg = make_dialog(blob_graph(delay=5.0))
    dlg.spec_edit(0).setText("0:4")
    dlg.recount()
    assert dlg.start()
    qtbot.waitUntil(lambda: any(w.item is not None for w in dlg.state.workers.values()),
                    timeout=30_000)
    worker = dlg.state.workers["local-1"].pid
    dlg.stop()
    dlg.stop()
    wait_finished(dlg, qtbot, timeout=10_000)
    assert dlg.exit_code is None and dlg.summary[1].startswith("Killed: 0/4 done")
    assert (dlg.out_dir() / "manifest.json").is_file()  # resumable
    qtbot.waitUntil(lambda: not alive(worker), timeout=10_000)


def test_remove_takes_the_row_being_edited_else_the_last(make_dialog, qtbot):
    dlg = make_dialog(blob_graph())
    dlg.add_row(SweepRow("2", "prompt", "a,b"))
    dlg.add_row(SweepRow("2", "width", "8,16"))
    assert dlg.count_label.text() == "32 items: 8 × 2 × 2"
    dlg.spec_edit(1).setFocus()
    qtbot.waitUntil(lambda: dlg.spec_edit(1).hasFocus(), timeout=2000)
    dlg.remove_button.click()
    assert [r.param for r in dlg.rows()] == ["seed", "width"]
    dlg.out_edit.setFocus()
    qtbot.waitUntil(lambda: dlg.out_edit.hasFocus(), timeout=2000)
    dlg.remove_button.click()
    assert [r.param for r in dlg.rows()] == ["seed"]
    assert dlg.count_label.text() == "8 items"
