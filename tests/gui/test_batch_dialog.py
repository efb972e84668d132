"""The editor's Batch… dialog: the command line it builds from its table, the item count and
errors it shows, and real ``nodegraph batch`` runs (torch-free ``batchtest`` nodes from
tests/batch/packs) followed to the end, stopped, resumed and closed. Its Qt-free parts (sweep
rows, command line, progress reading, state, sentences) are tested in tests/batch/test_dialog_*.py."""
from __future__ import annotations

import json
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

from gui.batch.command import build_argv
from gui.batch.dialog import BatchDialog, show_batch_dialog
from gui.batch.sweeps import SweepRow
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
