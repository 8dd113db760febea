import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import SRC, read_results, run_cli
from mlmyths import cli, myths

DEMO_CLI = Path(__file__).with_name("_demo_cli.py")


def run_demo_cli(*args, **kw):
    env = dict(os.environ, PYTHONPATH=f"{SRC}{os.pathsep}{Path(__file__).parent}")
    return subprocess.run([sys.executable, str(DEMO_CLI), *args], env=env, capture_output=True, text=True,
                          timeout=300, **kw)


@pytest.fixture
def demo_registered(monkeypatch):
    monkeypatch.setitem(myths.MYTHS, "demo", myths.MythInfo("demo", "_demo_experiment", "A demo myth.",
                                                             "Nobody, 2026"))


def default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def one_line_error(capsys, argv, code=2):
    with pytest.raises(SystemExit) as exc:
        status = cli.main(argv)
        raise SystemExit(status)
    assert exc.value.code == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


def test_list_shows_the_seven_myths():
    proc = run_cli("list")
    assert proc.returncode == 0, proc.stderr
    for myth_id in ("tensors", "dataset-bias", "test-reuse", "forgetting", "fixup", "lightconv", "saliency"):
        assert myth_id in proc.stdout
    assert "Torralba" in proc.stdout


def test_unknown_id_unknown_flag_and_bad_values_are_one_line_exit_2(capsys, demo_registered):
    assert "unknown myth 'nope'; choose one of tensors" in one_line_error(capsys, ["run", "nope"])
    assert "unrecognized arguments: --bogus" in one_line_error(capsys, ["run", "demo", "--bogus"])
    assert "invalid choice: 'huge'" in one_line_error(capsys, ["run", "demo", "--scale", "huge"])
    err = one_line_error(capsys, ["run", "demo", "--set", "epochz=3"])
    assert "unknown config key 'epochz' for Config; valid keys: dataset, tasks, epochs" in err
    assert "config key 'epochs' expects a whole number, got 'three'" in one_line_error(capsys, ["run", "demo", "--set", "epochs=three"])
    assert "expected key=value, got 'epochs'" in one_line_error(capsys, ["run", "demo", "--set", "epochs"])
    assert "no unfinished run of 'demo'" in one_line_error(capsys, ["run", "demo", "--resume", "--out", "/nonexistent"])
    assert "--threads must be at least 1, got 0" in one_line_error(capsys, ["run", "demo", "--threads", "0"])


def test_missing_dataset_offline_is_one_line_exit_2_and_leaves_nothing(tmp_path, capsys, demo_registered):
    err = one_line_error(capsys, ["run", "demo", "--dataset", "mnist", "--out", str(tmp_path), "--quiet"])
    assert "dataset 'mnist' is not available locally" in err and "mlmyths data fetch mnist" in err
    assert not list(tmp_path.glob("demo/*"))


def test_errors_in_a_subprocess_have_no_traceback(tmp_path):
    for args in (["run", "nope"], ["run", "forgetting", "--seed", "x"], ["data", "where", "nope"],
                 ["report", str(tmp_path / "missing")], ["derive", "x'*", "--wrt", "x"]):
        proc = run_cli(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, (args, proc.stderr)


def test_run_writes_record_and_report_then_report_command(tmp_path):
    proc = run_demo_cli("run", "demo", "--scale", "smoke", "--out", str(tmp_path), "--seed", "2",
                        "--set", "epochs=1", "--threads", "1", "--quiet")
    assert proc.returncode == 0, proc.stderr
    record = read_results(tmp_path, "demo")
    assert record["status"] == "completed" and record["seed"] == 2 and record["config"]["epochs"] == 1
    assert record["env"]["threads"] == "1"
    assert proc.stdout.startswith("demo: ") and "report:" in proc.stdout
    proc = run_demo_cli("report", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "index.html").exists() and (tmp_path / "summary.md").exists()


def test_ctrl_c_leaves_interrupted_record_and_resume_finishes(tmp_path):
    env = dict(os.environ, PYTHONPATH=f"{SRC}{os.pathsep}{Path(__file__).parent}", DEMO_SLEEP_S="60")
    # SIGINT as Python's default in the child, whatever this process inherited (a background job or
    # nohup starts with SIGINT ignored, and the CLI keeps an ignored SIGINT ignored)
    proc = subprocess.Popen([sys.executable, str(DEMO_CLI), "run", "demo", "--scale", "smoke", "--out", str(tmp_path),
                             "--set", "tasks=3", "--quiet"], env=env, preexec_fn=default_sigint,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.glob("demo/*/checkpoints/tasks/train-0.npz")):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    record = read_results(tmp_path, "demo")
    assert record["status"] == "interrupted" and record["tasks_completed"] == ["train-0"]
    resumed = run_demo_cli("run", "demo", "--resume", "--out", str(tmp_path), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    final = read_results(tmp_path, "demo")
    assert final["status"] == "completed" and final["run_id"] == record["run_id"]
    assert final["tasks_completed"] == ["train-0", "train-1", "train-2"]


def test_data_commands(tmp_path):
    proc = run_cli("data", "list")
    assert proc.returncode == 0 and "digits" in proc.stdout and "permuted-NAME" in proc.stdout
    proc = run_cli("data", "where", "digits")
    assert proc.returncode == 0 and "scikit-learn" in proc.stdout
    proc = run_cli("data", "where", "mnist", env={"MLMYTHS_DATA": str(tmp_path)})
    assert proc.returncode == 2 and "put train-images-idx3-ubyte.gz" in proc.stderr
    proc = run_cli("data", "fetch", "mnist")
    assert proc.returncode == 2 and "MLMYTHS_OFFLINE is set" in proc.stderr


def test_run_all_goes_on_past_one_myths_missing_data(tmp_path, capsys, monkeypatch):
    two = {m: myths.MythInfo(m, "_demo_experiment", "A demo myth.", "Nobody, 2026") for m in ("demo", "demo2")}
    monkeypatch.setattr(myths, "MYTHS", two)
    status = cli.main(["run", "all", "--scale", "smoke", "--set", "demo.dataset=mnist", "--out", str(tmp_path),
                       "--quiet"])
    captured = capsys.readouterr()
    assert status == 2
    assert "mlmyths: error: demo: dataset 'mnist' is not available locally" in captured.err
    assert not list(tmp_path.glob("demo/*"))  # nothing half-made for the myth that could not start
    assert read_results(tmp_path, "demo2")["status"] == "completed"  # the other myth ran
    assert (tmp_path / "index.html").exists() and "demo2" in (tmp_path / "summary.md").read_text()
