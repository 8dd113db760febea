import json

import pytest

import _demo_experiment as demo
from mlmyths import report, runs
from mlmyths.errors import DataError
from mlmyths.records import read_record

SCHEMA_KEYS = {"schema", "myth", "run_id", "scale", "seed", "status", "verdict", "claim", "claims", "metrics",
               "tables", "figures", "differences", "config", "env", "started", "duration_s"}
REGISTRY = {"demo": "A demo myth.", "tensors": "TensorFlow is a tensor manipulation library."}


def execute(tmp_path, cfg=None, **kw):
    return runs.execute("demo", demo, cfg or demo.config("smoke"), out=tmp_path, on_record=report.write_run_report,
                        **kw)


# -- execute -------------------------------------------------------------------------------------


def test_completed_run_writes_the_schema(tmp_path):
    record = execute(tmp_path, seed=3)
    run_dir = tmp_path / "demo" / record["run_id"]
    on_disk = json.loads((run_dir / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(record))
    assert SCHEMA_KEYS <= set(on_disk)
    assert on_disk["schema"] == 2 and on_disk["status"] == "completed" and on_disk["seed"] == 3
    assert read_record(run_dir / "results.json") == on_disk  # follows the shipped schema
    # the verdict is the rule applied to the recorded claims, whatever they say
    (claim,) = on_disk["claims"]
    assert claim["id"] == "accuracy" and claim["test"] == "at_least" and claim["threshold"] == 0.5
    low, high = claim["ci"]
    expected = "reproduced" if low >= 0.5 else "contradicted" if high < 0.5 else "inconclusive"
    assert claim["outcome"] == expected
    assert on_disk["verdict"]["outcome"] == {"reproduced": "refuted", "contradicted": "supported",
                                             "inconclusive": "inconclusive"}[expected]
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
    original = runs.RunContext._run_task

    def interrupting_task(self, key, fn):
        if key == "train-1" and not self.resuming:
            raise KeyboardInterrupt
        calls.append((key, self.resuming))
        return original(self, key, fn)

    monkeypatch.setattr(runs.RunContext, "_run_task", interrupting_task)
    cfg = demo.config("smoke", tasks=3)
    with pytest.raises(runs.RunInterrupted) as stopped:
        execute(tmp_path, cfg, seed=1)
    run_dir = runs.find_resumable(tmp_path, "demo")
    assert stopped.value.run_dir == run_dir
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
    done = execute(tmp_path)
    execute(tmp_path, demo.config("smoke", fail=True))

    def interrupted_run(cfg, ctx):
        ctx.task("first", lambda: {"x": 1})
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "run", interrupted_run)
    with pytest.raises(KeyboardInterrupt):
        execute(tmp_path)
    monkeypatch.undo()
    summary, index, bad = report.write_summary(tmp_path, REGISTRY)
    assert bad == []
    page = index.read_text()
    assert page.count('class="run"') == 3
    for status in ("failed", "interrupted", done["verdict"]["outcome"]):
        assert status in page
    assert "data:image/png;base64," in page  # figures embedded: the page is self-contained
    assert "src=\"figures/" not in page
    text = summary.read_text()
    assert "| tensors | TensorFlow is a tensor manipulation library. | not run |" in text
    assert "RuntimeError: demo failure after the first task" in text
    assert text.count("\n---\n") == 3


def test_schema_1_records_still_render(tmp_path):
    old = {"schema": 1, "myth": "demo", "run_id": "r1", "scale": "small", "seed": 0, "status": "completed",
           "verdict": {"outcome": "refuted", "reason": "an old rule said so"},
           "claim": {"myth": "A demo myth.", "paper": "Nobody", "paper_result": "x"}, "metrics": {"acc": 0.9},
           "tables": {}, "figures": [], "config": {}, "env": {}, "started": "2026-01-01T00:00:00", "duration_s": 1.0}
    (tmp_path / "demo" / "r1").mkdir(parents=True)
    (tmp_path / "demo" / "r1" / "results.json").write_text(json.dumps(old))
    summary, index, bad = report.write_summary(tmp_path, REGISTRY)
    assert bad == [] and "an old rule said so" in index.read_text() and "Claims" not in index.read_text()


def test_report_renders_nulls_and_large_numbers():
    assert report.fmt(None) == "—" and report.fmt(0.123456) == "0.1235" and report.fmt(1.5e-6) == "1.500e-06"
    md = report.render_run_markdown({"myth": "x", "status": "failed", "error": "boom", "tables": {"t": [{"a": None}]}})
    assert "**No verdict** (failed): boom" in md and "| — |" in md
