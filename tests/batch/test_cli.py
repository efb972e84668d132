"""``nodegraph batch`` on the command line (in-process, torch-free test nodes)."""
from __future__ import annotations

import json
import sys

from PIL import Image

from nodegraph.cli import main

from .conftest import output_files


def run(capsys, *argv):
    code = main(["batch", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_help_explains_specs_and_exit_codes(capsys):
    try:
        main(["batch", "--help"])
    except SystemExit:
        pass
    out = capsys.readouterr().out
    assert "0:1000:7" in out and "@file" in out and "last one varies fastest" in out
    assert "130  interrupted" in out


def test_json_progress_is_one_event_a_line_from_start_to_finish(capsys, graph_file, models, tmp_path):
    code, out, _ = run(capsys, str(graph_file), "--out", str(tmp_path / "o"), "--models", str(models),
                       "--sweep", "2.seed=0:3", "--workers", "0", "--progress", "json")
    assert code == 0
    events = [json.loads(line) for line in out.splitlines()]
    assert events[0]["event"] == "start" and events[0]["progress_version"] == 1
    assert events[0]["total"] == 3
    assert events[-1]["event"] == "finish" and events[-1]["done"] == 3
    assert [e["index"] for e in events if e["event"] == "item_done"] == [0, 1, 2]


def test_set_applies_to_every_item_and_is_embedded(capsys, graph_file, models, tmp_path):
    out_dir = tmp_path / "o"
    code, _, _ = run(capsys, str(graph_file), "--out", str(out_dir), "--models", str(models),
                     "--set", "Sampler.prompt=a heron", "--sweep", "2.seed=4,5", "--workers", "0")
    assert code == 0
    names = output_files(out_dir)
    assert len(names) == 2
    embedded = json.loads(Image.open(out_dir / names[1]).text["nodegraph"])
    assert embedded["nodes"]["2"]["params"]["prompt"] == "a heron"
    assert embedded["nodes"]["2"]["params"]["seed"] == 5


def test_a_bad_sweep_exits_2_naming_it(capsys, graph_file, models, tmp_path):
    code, _, err = run(capsys, str(graph_file), "--out", str(tmp_path / "o"), "--models", str(models),
                       "--sweep", "2.seed=a:b:c")
    assert code == 2 and "--sweep '2.seed=a:b:c'" in err
    assert not (tmp_path / "o").exists()


def test_with_json_progress_a_refusal_is_an_error_event_too(capsys, graph_file, models, tmp_path):
    code, out, err = run(capsys, str(graph_file), "--out", str(tmp_path / "o"), "--models", str(models),
                         "--sweep", "2.seed=a:b:c", "--progress", "json")
    (event,) = [json.loads(line) for line in out.splitlines()]
    assert code == 2 and event["event"] == "error" and event["kind"] == "invalid_request"
    assert event["exit_code"] == 2 and event["messages"] == err.splitlines()
    assert "--sweep '2.seed=a:b:c'" in event["messages"][0]


def test_with_json_progress_an_invalid_graph_lists_its_problems(capsys, graph_file, models, tmp_path):
    code, out, err = run(capsys, str(graph_file), "--out", str(tmp_path / "o"), "--models", str(models),
                         "--set", "2.width=0", "--progress", "json")
    (event,) = [json.loads(line) for line in out.splitlines()]
    assert code == 2 and event["kind"] == "invalid_graph"
    assert any("param width" in m and "below the minimum" in m for m in event["messages"])


def test_resume_without_graph_needs_a_batch_folder(capsys, tmp_path):
    code, _, err = run(capsys, "--out", str(tmp_path / "empty"), "--resume")
    assert code == 2 and "holds no batch" in err


def test_resume_without_graph_continues_from_the_manifest(capsys, graph_file, models, tmp_path):
    out_dir = tmp_path / "o"
    args = ["--out", str(out_dir), "--models", str(models), "--workers", "0"]
    assert run(capsys, str(graph_file), *args, "--sweep", "2.seed=0:3")[0] == 0
    (out_dir / output_files(out_dir)[1]).unlink()
    code, _, err = run(capsys, *args, "--resume")
    assert code == 0 and "2 already done" in err
    assert len(output_files(out_dir)) == 3


def test_without_ray_the_ray_option_says_how_to_install_it(capsys, graph_file, models, tmp_path,
                                                           monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray → ImportError
    code, _, err = run(capsys, str(graph_file), "--out", str(tmp_path / "o"), "--models", str(models),
                       "--ray", "127.0.0.1:6379")
    assert code == 2
    assert "pip install 'nodegraph[ray]'" in err and "Traceback" not in err


def test_negative_workers_are_refused(capsys, graph_file, tmp_path):
    code, _, err = run(capsys, str(graph_file), "--out", str(tmp_path / "o"), "--workers", "-1")
    assert code == 2 and "--workers" in err


def test_the_batch_modules_import_neither_torch_nor_ray():
    import subprocess

    code = ("import sys, nodegraph.cli, nodegraph.batch, nodegraph.batch.local, "
            "nodegraph.batch.ray_backend, nodegraph.batch.worker; "
            "print(sorted(m for m in ('torch', 'ray') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
