"""Run directory state and faults (issue 19.2 and 19.3): damaged state is named in one line,
a live run is never attached to twice, concurrent starts never collide, filesystem errors are one
line (exit 2, or 1 for a full disk with ``failed`` recorded), and signals always end in
``interrupted`` with exit 130 -- whatever library was running.
"""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import _demo_experiment as demo
from conftest import SRC, read_results
from mlmyths import cli, files, myths, runs
from mlmyths.errors import UserError

DEMO_CLI = Path(__file__).with_name("_demo_cli.py")


@pytest.fixture
def demo_registered(monkeypatch):
    monkeypatch.setitem(myths.MYTHS, "demo", myths.MythInfo("demo", "_demo_experiment", "A demo myth.", "Nobody"))


def default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_demo(*args: str, sleep_s: float = 60.0) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=f"{SRC}{os.pathsep}{Path(__file__).parent}", DEMO_SLEEP_S=str(sleep_s))
    return subprocess.Popen([sys.executable, str(DEMO_CLI), *args], env=env, preexec_fn=default_sigint,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(pattern: str, root: Path, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and not list(root.glob(pattern)):
        time.sleep(0.05)
    assert list(root.glob(pattern)), f"nothing matched {pattern} within {timeout}s"


def one_line(capsys, argv, code=2) -> str:
    status = cli.main(argv)
    err = capsys.readouterr().err
    assert status == code, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


# -- damaged state ----------------------------------------------------------------------------------


def interrupted_run(tmp_path: Path) -> Path:
    """A demo run recorded as interrupted after its first task."""
    run_dir = runs.new_run_dir(tmp_path / "demo", 0)
    ctx = runs.RunContext(run_dir)
    ctx.task("train-0", lambda: {"accuracy": 0.5})
    files.atomic_write_json(run_dir / "config.json", {"myth": "demo", "scale": "smoke", "seed": 0, "device": "cpu",
                                                      "threads": 1, "config": {"tasks": 2, "epochs": 1}})
    files.atomic_write_json(run_dir / "results.json", {"schema": 2, "myth": "demo", "run_id": run_dir.name,
                                                       "status": "interrupted", "started": "2026-01-01"})
    return run_dir


@pytest.mark.parametrize("damage,message", [
    (lambda d: (d / "config.json").write_text('{"myth": "de'), "its config.json is damaged"),
    (lambda d: (d / "config.json").unlink(), "its config.json is missing"),
    (lambda d: (d / "config.json").write_text("[1, 2]"), "lacks config/scale/seed"),
    (lambda d: (d / "config.json").write_text('{"scale": "smoke", "seed": 0, "config": {"epochs": "many"}}'),
     "its saved config is not valid"),
    (lambda d: (d / "config.json").write_text('{"scale": "smoke", "seed": 0, "config": {"lr": null}}'),
     "its saved config is not valid"),
])
def test_resume_names_damaged_state_in_one_line(tmp_path, capsys, demo_registered, damage, message):
    run_dir = interrupted_run(tmp_path)
    damage(run_dir)
    err = one_line(capsys, ["run", "demo", "--resume", "--out", str(tmp_path), "--quiet"])
    assert message in err and str(run_dir) in err


def test_a_results_file_that_is_not_an_object_is_not_resumed(tmp_path, capsys, demo_registered):
    run_dir = interrupted_run(tmp_path)
    (run_dir / "results.json").write_text("[]")
    assert "no unfinished run of 'demo'" in one_line(capsys, ["run", "demo", "--resume", "--out", str(tmp_path)])


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e999999", "NaN"])
def test_non_finite_numbers_are_rejected_at_set(capsys, demo_registered, value):
    err = one_line(capsys, ["run", "demo", "--set", f"lr={value}"])
    assert f"config key 'lr' expects a finite number, got '{value}'" in err


# -- one process per run directory --------------------------------------------------------------------


def test_resume_refuses_a_run_that_is_still_alive_and_takes_over_a_stale_lock(tmp_path, capsys, demo_registered):
    proc = start_demo("run", "demo", "--scale", "smoke", "--out", str(tmp_path), "--set", "tasks=3", "--quiet")
    try:
        wait_for("demo/*/checkpoints/tasks/train-0.npz", tmp_path)
        run_dir = next(tmp_path.glob("demo/*"))
        assert (run_dir / ".lock").read_text().split()[0] == str(proc.pid)
        err = one_line(capsys, ["run", "demo", "--resume", "--out", str(tmp_path), "--quiet"])
        assert f"is in use by process {proc.pid}" in err
    finally:
        proc.kill()  # killed hard: the record stays 'running', the lock stays behind, stale
        proc.communicate()
    assert json.loads((run_dir / "results.json").read_text())["status"] == "running"
    assert (run_dir / ".lock").exists()
    assert cli.main(["run", "demo", "--resume", "--out", str(tmp_path), "--quiet"]) == 0
    record = read_results(tmp_path, "demo")
    assert record["status"] == "completed" and record["tasks_completed"] == ["train-0", "train-1", "train-2"]
    assert not (run_dir / ".lock").exists()


def test_runs_started_in_the_same_second_get_their_own_directories(tmp_path, monkeypatch):
    monkeypatch.setattr(runs, "new_run_id", lambda seed: "20261206-120000-s0")
    made: list[Path] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        made.append(runs.new_run_dir(tmp_path, 0))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(made)) == 8 and all(p.is_dir() for p in made)


# -- filesystem errors ---------------------------------------------------------------------------------


def test_out_that_is_a_file_or_too_long_is_one_line(tmp_path, capsys, demo_registered):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert "cannot write the run under" in one_line(capsys, ["run", "demo", "--scale", "smoke", "--out", str(afile)])
    long = tmp_path / ("x" * 300)
    err = one_line(capsys, ["run", "demo", "--scale", "smoke", "--out", str(long)])
    assert "File name too long" in err


def test_read_only_filesystem_is_one_line_exit_2(tmp_path, capsys, demo_registered, monkeypatch):
    real_mkdir = Path.mkdir

    def read_only(self, *args, **kwargs):
        if str(self).startswith(str(tmp_path)):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    err = one_line(capsys, ["run", "demo", "--scale", "smoke", "--out", str(tmp_path / "runs"), "--quiet"])
    assert "Read-only file system" in err and "choose another --out" in err


def test_a_full_disk_records_failed_where_it_can_and_exits_1(tmp_path, capsys, demo_registered, monkeypatch):
    real = files.atomic_write_bytes
    calls = {"n": 0}

    def filling(path, data):
        if Path(path).suffix == ".npz":  # the first task's value: the disk is full from here on
            calls["n"] += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, data)

    monkeypatch.setattr(files, "atomic_write_bytes", filling)
    status = cli.main(["run", "demo", "--scale", "smoke", "--out", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err
    assert status == 1 and "Traceback" not in err and "No space left on device" in err
    record = read_results(tmp_path, "demo")
    assert record["status"] == "failed" and "No space left on device" in record["error"]
    assert calls["n"] == 1


# -- signals -------------------------------------------------------------------------------------------


def test_sigterm_during_start_up_exits_130_and_claims_nothing_saved(tmp_path):
    proc = start_demo("run", "demo", "--scale", "smoke", "--out", str(tmp_path), "--quiet")
    time.sleep(0.6)  # inside main: importing torch and the experiment, no run directory yet
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    if list(tmp_path.glob("demo/*/results.json")):
        pytest.skip("the machine was fast enough to start the run before the signal; nothing to test")
    assert proc.returncode == 130, err
    assert err.strip() == "mlmyths: interrupted" and "saved" not in err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_a_run_records_interrupted_and_exits_130(tmp_path, sig):
    proc = start_demo("run", "demo", "--scale", "smoke", "--out", str(tmp_path), "--set", "tasks=3", "--quiet")
    wait_for("demo/*/checkpoints/tasks/train-0.npz", tmp_path)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted; what finished is saved in" in err and "Traceback" not in err
    assert read_results(tmp_path, "demo")["status"] == "interrupted"


def test_a_swallowed_interrupt_still_stops_the_run_at_the_next_task(tmp_path):
    """A library that catches KeyboardInterrupt (as jax's callbacks can) cannot hide the signal:
    the run stops at the next task boundary and is recorded as interrupted."""
    def swallowing_library() -> dict:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1.0)
        except KeyboardInterrupt:
            pass  # swallowed
        return {"done": 1}

    ran = []

    class Experiment:
        CLAIM = demo.CLAIM

        @staticmethod
        def run(cfg, ctx):
            ctx.task("first", swallowing_library)
            ran.append("second")
            ctx.task("second", lambda: {"done": 2})
            raise AssertionError("unreachable")

    with pytest.raises(runs.RunInterrupted):
        runs.execute("demo", Experiment, demo.config("smoke"), out=tmp_path)
    record = read_results(tmp_path, "demo")
    assert record["status"] == "interrupted" and record["tasks_completed"] == []
    assert ran == []  # stopped before the second task started


def test_ignored_sigint_stays_ignored_and_sigterm_still_stops(tmp_path):
    """A background job (or nohup) starts with SIGINT ignored; the CLI keeps it so, as documented."""
    env = dict(os.environ, PYTHONPATH=f"{SRC}{os.pathsep}{Path(__file__).parent}", DEMO_SLEEP_S="60")
    proc = subprocess.Popen([sys.executable, str(DEMO_CLI), "run", "demo", "--scale", "smoke", "--out", str(tmp_path),
                             "--set", "tasks=3", "--quiet"], env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for("demo/*/checkpoints/tasks/train-0.npz", tmp_path)
    proc.send_signal(signal.SIGINT)
    time.sleep(1.0)
    assert proc.poll() is None  # still running
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and read_results(tmp_path, "demo")["status"] == "interrupted"


def test_user_error_inside_a_run_keeps_what_was_computed(tmp_path):
    class Experiment:
        CLAIM = demo.CLAIM

        @staticmethod
        def run(cfg, ctx):
            ctx.task("first", lambda: {"x": 1})
            raise UserError("bad input found after the first task")

    with pytest.raises(UserError):
        runs.execute("demo", Experiment, demo.config("smoke"), out=tmp_path)
    record = read_results(tmp_path, "demo")
    assert record["status"] == "failed" and record["tasks_completed"] == ["first"]


def test_an_interrupt_a_library_turns_into_another_exception_is_still_interrupted(tmp_path):
    def converting_library() -> dict:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1.0)
        except KeyboardInterrupt:
            raise RuntimeError("the library's own error while stopping") from None
        return {}

    class Experiment:
        CLAIM = demo.CLAIM

        @staticmethod
        def run(cfg, ctx):
            ctx.task("first", converting_library)

    with pytest.raises(runs.RunInterrupted):
        runs.execute("demo", Experiment, demo.config("smoke"), out=tmp_path)
    record = read_results(tmp_path, "demo")
    assert record["status"] == "interrupted" and record["error"] == "interrupted before completion"
