import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import _demo_experiment as demo
from mlmyths import report, runs
from mlmyths.errors import DataError

SCHEMA_KEYS = {"schema", "myth", "run_id", "scale", "seed", "status", "verdict", "claim", "metrics", "tables",
               "figures", "config", "env", "started", "duration_s"}


def execute(tmp_path, cfg=None, **kw):
    return runs.execute("demo", demo, cfg or demo.config("smoke"), out=tmp_path, **kw)


# -- atomic writes -------------------------------------------------------------------------------


def test_atomic_write_failure_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    runs.atomic_write_json(path, {"v": 1})

    def broken_fsync(fd):
        raise KeyboardInterrupt  # the writer dies after writing, before the rename

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(KeyboardInterrupt):
        runs.atomic_write_json(path, {"v": 2, "big": list(range(1000))})
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_atomic_write_gives_files_the_usual_permissions(tmp_path):
    runs.atomic_write_text(tmp_path / "index.html", "<html></html>")
    assert (tmp_path / "index.html").stat().st_mode & 0o777 == 0o666 & ~runs._UMASK  # not mkstemp's 0600


def test_killed_writer_never_leaves_a_partial_file(tmp_path):
    """SIGKILL a process that rewrites a 20 MB JSON file in a loop: every read parses."""
    path = tmp_path / "results.json"
    runs.atomic_write_json(path, {"n": -1})
    script = (
        "import sys; from pathlib import Path; from mlmyths.runs import atomic_write_json\n"
        "payload = list(range(2_000_000))\n"
        "for n in range(10**6): atomic_write_json(Path(sys.argv[1]), {'n': n, 'payload': payload})\n"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1] / "src"))
    proc = subprocess.Popen([sys.executable, "-c", script, str(path)], env=env)
    try:
        deadline = time.time() + 30
        while time.time() < deadline and json.loads(path.read_text())["n"] < 1:
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    record = json.loads(path.read_text())  # complete JSON, old or new
    assert record["n"] >= 1 and len(record["payload"]) == 2_000_000


def test_jsonable_turns_nonfinite_into_null_and_numpy_into_python():
    out = runs.jsonable({"a": float("nan"), "b": np.float32(1.5), "c": torch.tensor([1, 2]), "d": (1, np.inf)})
    assert out == {"a": None, "b": 1.5, "c": [1, 2], "d": [1, None]}
    json.dumps(out, allow_nan=False)


def test_state_round_trip_keeps_arrays_and_nesting(tmp_path):
    value = {"counts": np.arange(5, dtype=np.int64), "w": torch.ones(2, 3), "nested": [{"x": 1.5, "s": "a"}, None],
             "nan": float("nan"), "flag": True}
    runs.save_state(tmp_path / "s.npz", value)
    back = runs.load_state(tmp_path / "s.npz")
    np.testing.assert_array_equal(back["counts"], np.arange(5))
    assert back["counts"].dtype == np.int64
    np.testing.assert_array_equal(back["w"], np.ones((2, 3), dtype=np.float32))
    assert back["nested"] == [{"x": 1.5, "s": "a"}, None] and back["flag"] is True and np.isnan(back["nan"])
    with pytest.raises(TypeError, match="cannot store a value of type object"):
        runs.save_state(tmp_path / "bad.npz", {"x": object()})


def test_verdict_rejects_unknown_outcome_and_empty_reason():
    with pytest.raises(ValueError, match="verdict outcome must be one of"):
        runs.Verdict("proven", "x")
    with pytest.raises(ValueError, match="needs a reason"):
        runs.Verdict("refuted", " ")


# -- execute -------------------------------------------------------------------------------------


def test_completed_run_writes_the_schema(tmp_path):
    record = execute(tmp_path, seed=3)
    run_dir = tmp_path / "demo" / record["run_id"]
    on_disk = json.loads((run_dir / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(record))
    assert SCHEMA_KEYS <= set(on_disk)
    assert on_disk["schema"] == 1 and on_disk["status"] == "completed" and on_disk["seed"] == 3
    assert on_disk["verdict"]["outcome"] in ("refuted", "supported")
    assert "mean test accuracy" in on_disk["verdict"]["reason"]
    assert on_disk["claim"] == {"myth": "A demo myth.", "paper": "Nobody, 2026", "paper_result": "accuracy above 0.5"}
    assert set(on_disk["env"]) >= {"python", "torch", "numpy", "device", "mlmyths", "git_commit"}
    assert on_disk["figures"] == ["figures/loss.png"] and (run_dir / "figures/loss.png").stat().st_size > 1000
    assert on_disk["config"]["tasks"] == 2 and on_disk["tasks_completed"] == ["train-0", "train-1"]
    assert json.loads((run_dir / "config.json").read_text())["config"] == on_disk["config"]
    assert "Verdict:" in (run_dir / "report.md").read_text()
    assert "starting demo" in (run_dir / "log.txt").read_text()
    # finished tasks keep their values; training checkpoints are removed
    assert sorted(p.name for p in (run_dir / "checkpoints" / "tasks").iterdir()) == ["train-0.npz", "train-1.npz"]
    assert not list((run_dir / "checkpoints").glob("*.pt"))


def test_same_seed_repeats_bit_for_bit_and_other_seed_differs(tmp_path):
    a = execute(tmp_path / "a", seed=5)
    b = execute(tmp_path / "b", seed=5)
    c = execute(tmp_path / "c", seed=6)
    assert a["metrics"] == b["metrics"]
    assert a["metrics"]["weight_sum"] != c["metrics"]["weight_sum"]


def test_failure_is_recorded_with_error_and_log(tmp_path):
    record = execute(tmp_path, demo.config("smoke", fail=True))
    run_dir = tmp_path / "demo" / record["run_id"]
    assert record["status"] == "failed" and record["verdict"] is None
    assert record["error"] == "RuntimeError: demo failure after the first task"
    assert record["tasks_completed"] == ["train-0"]
    assert "Traceback" in (run_dir / "log.txt").read_text()
    assert json.loads((run_dir / "results.json").read_text())["status"] == "failed"


def test_user_error_before_any_task_leaves_no_run_directory(tmp_path):
    with pytest.raises(DataError):
        execute(tmp_path, demo.config("smoke", dataset="mnist"))
    assert not list((tmp_path / "demo").iterdir())


def test_interrupt_then_resume_continues_after_finished_tasks(tmp_path, monkeypatch):
    calls = []
    original = runs.RunContext.task

    def interrupting_task(self, key, fn):
        if key == "train-1" and not self.resuming:
            raise KeyboardInterrupt
        calls.append((key, self.resuming))
        return original(self, key, fn)

    monkeypatch.setattr(runs.RunContext, "task", interrupting_task)
    cfg = demo.config("smoke", tasks=3)
    with pytest.raises(KeyboardInterrupt):
        execute(tmp_path, cfg, seed=1)
    run_dir = runs.find_resumable(tmp_path, "demo")
    interrupted = json.loads((run_dir / "results.json").read_text())
    assert interrupted["status"] == "interrupted" and interrupted["tasks_completed"] == ["train-0"]
    assert interrupted["verdict"] is None
    record = execute(tmp_path, cfg, seed=1, resume_dir=run_dir)
    assert record["status"] == "completed" and record["run_id"] == run_dir.name
    assert record["tasks_completed"] == ["train-0", "train-1", "train-2"]
    assert "task train-0: done in an earlier attempt" in (run_dir / "log.txt").read_text()
    assert runs.find_resumable(tmp_path, "demo") is None
    monkeypatch.undo()
    fresh = execute(tmp_path / "fresh", cfg, seed=1)
    assert fresh["metrics"] == record["metrics"]  # resuming changes nothing


# -- report over runs ----------------------------------------------------------------------------


def test_report_over_finished_interrupted_and_failed_runs(tmp_path, monkeypatch):
    execute(tmp_path)
    execute(tmp_path, demo.config("smoke", fail=True))

    def interrupted_run(cfg, ctx):
        ctx.task("first", lambda: {"x": 1})
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "run", interrupted_run)
    with pytest.raises(KeyboardInterrupt):
        execute(tmp_path)
    monkeypatch.undo()
    summary, index = report.write_summary(tmp_path)
    page = index.read_text()
    assert page.count('class="run"') == 3
    for status in ("failed", "interrupted", "refuted" if "refuted" in page else "supported"):
        assert status in page
    assert "data:image/png;base64," in page  # figures embedded: the page is self-contained
    assert "src=\"figures/" not in page
    text = summary.read_text()
    assert "| tensors | TensorFlow is a tensor manipulation library. | not run |" in text
    assert "RuntimeError: demo failure after the first task" in text
    assert text.count("\n---\n") == 3


def test_report_renders_nulls_and_large_numbers():
    assert report.fmt(None) == "—" and report.fmt(0.123456) == "0.1235" and report.fmt(1.5e-6) == "1.500e-06"
    md = report.render_run_markdown({"myth": "x", "status": "failed", "error": "boom", "tables": {"t": [{"a": None}]}})
    assert "**No verdict** (failed): boom" in md and "| — |" in md
