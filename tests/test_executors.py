"""Waves of tasks on three executors (issue 16): in this process, local worker processes, Ray.

Same values bit for bit with the same --threads; a task's error reported with its key and
traceback; a worker killed mid-task retried without losing the run; Ctrl-C leaves
``interrupted``. The Ray tests start a real head node on 127.0.0.1 and stop it.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import SRC, read_results

DEMO_CLI = Path(__file__).with_name("_demo_cli.py")
HAS_RAY = importlib.util.find_spec("ray") is not None and importlib.util.find_spec("cloudpickle") is not None
#: a private test cluster on loopback: no usage reports, no token (Ray >= 2.50 turns token auth on by default)
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


def demo(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    full = dict(os.environ, PYTHONPATH=f"{SRC}{os.pathsep}{Path(__file__).parent}", **(env or {}))
    return subprocess.run([sys.executable, str(DEMO_CLI), *args], env=full, capture_output=True, text=True,
                          timeout=timeout)


def wave_run(out: Path, *executor: str, env: dict[str, str] | None = None, extra: tuple[str, ...] = ()) -> dict:
    proc = demo("run", "demo", "--scale", "smoke", "--set", "tasks=3", "--set", "wave=true", "--out", str(out),
                "--threads", "1", "--quiet", *executor, *extra, env=env)
    assert proc.returncode == 0, proc.stderr
    return read_results(out, "demo")


def test_local_workers_give_the_in_process_values_bit_for_bit(tmp_path):
    one = wave_run(tmp_path / "one")
    two = wave_run(tmp_path / "two", "--workers", "2")
    assert one["metrics"] == two["metrics"] and one["claims"] == two["claims"]
    assert sorted(one["tasks_completed"]) == sorted(two["tasks_completed"]) == ["train-0", "train-1", "train-2"]
    assert two["env"]["executor"] == "2 local worker process(es)"
    log = next((tmp_path / "two").glob("demo/*/log.txt")).read_text()
    assert "wave of 3 task(s), 3 to run on 2 local worker process(es)" in log


def test_a_task_error_names_the_task_with_its_traceback(tmp_path):
    proc = demo("run", "demo", "--scale", "smoke", "--set", "tasks=3", "--set", "wave=true", "--set",
                "task_error=true", "--out", str(tmp_path), "--workers", "2", "--threads", "1", "--quiet")
    assert proc.returncode == 1
    assert "task train-1: ValueError: demo task error in train-1" in proc.stderr
    record = read_results(tmp_path, "demo")
    assert record["status"] == "failed" and "train-1" in record["error"]
    log = next(tmp_path.glob("demo/*/log.txt")).read_text()
    failure = log[log.index("task train-1 failed:\nTraceback"):]
    assert "in train\nValueError: demo task error in train-1" in failure  # the worker's own traceback


def kill_when_started(pid_dir: Path, key: str, timeout: float = 180) -> int:
    path = pid_dir / f"{key}.pid"
    deadline = time.time() + timeout
    while time.time() < deadline and not (path.exists() and path.read_text().strip()):
        time.sleep(0.05)
    pid = int(path.read_text())
    os.kill(pid, signal.SIGKILL)
    return pid


def test_a_killed_local_worker_is_replaced_and_its_task_retried(tmp_path):
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    env = dict(os.environ, PYTHONPATH=f"{SRC}{os.pathsep}{Path(__file__).parent}", DEMO_PID_DIR=str(pid_dir),
               DEMO_TASK_SLEEP_S="30")
    proc = subprocess.Popen([sys.executable, str(DEMO_CLI), "run", "demo", "--scale", "smoke", "--set", "tasks=3",
                             "--set", "wave=true", "--out", str(tmp_path / "runs"), "--workers", "2", "--threads", "1",
                             "--quiet"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = kill_when_started(pid_dir, "train-1")
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    record = read_results(tmp_path / "runs", "demo")
    assert record["status"] == "completed" and sorted(record["tasks_completed"]) == ["train-0", "train-1", "train-2"]
    assert int((pid_dir / "train-1.pid").read_text()) != killed  # ran again, in a new worker
    baseline = wave_run(tmp_path / "baseline")
    assert record["metrics"] == baseline["metrics"]


def test_ctrl_c_with_workers_records_interrupted_and_leaves_no_worker(tmp_path):
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    env = dict(os.environ, PYTHONPATH=f"{SRC}{os.pathsep}{Path(__file__).parent}", DEMO_PID_DIR=str(pid_dir),
               DEMO_TASK_SLEEP_S="120")
    proc = subprocess.Popen([sys.executable, str(DEMO_CLI), "run", "demo", "--scale", "smoke", "--set", "tasks=3",
                             "--set", "wave=true", "--out", str(tmp_path), "--workers", "2", "--threads", "1", "--quiet"],
                            env=env, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    path = pid_dir / "train-0.pid"
    deadline = time.time() + 180
    while time.time() < deadline and not (path.exists() and path.read_text().strip()):
        time.sleep(0.05)
    worker = int(path.read_text())
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert read_results(tmp_path, "demo")["status"] == "interrupted"
    time.sleep(0.5)
    with pytest.raises(ProcessLookupError):
        os.kill(worker, 0)


# -- a real Ray head node on 127.0.0.1 ----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    if not HAS_RAY:
        pytest.skip("Ray is not installed (pip install mlmyths[ray])")
    ray_bin = Path(sys.executable).with_name("ray")
    ray_cmd = str(ray_bin) if ray_bin.exists() else shutil.which("ray")
    port = free_port()
    temp = tmp_path_factory.mktemp("ray")
    pid_dir = tmp_path_factory.mktemp("ray-pids")
    # Ray workers inherit the environment of the node (raylet), not the driver's
    env = dict(os.environ, PYTHONPATH=f"{SRC}{os.pathsep}{Path(__file__).parent}",
               DEMO_PID_DIR=str(pid_dir), DEMO_TASK_SLEEP_S="30", **RAY_ENV)
    start = subprocess.run([ray_cmd, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                            "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats",
                            f"--temp-dir={temp}"], env=env, capture_output=True, text=True, timeout=180)
    assert start.returncode == 0, start.stdout + start.stderr
    try:
        yield f"127.0.0.1:{port}", pid_dir
    finally:
        subprocess.run([ray_cmd, "stop", "--force"], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_ray_gives_the_in_process_values_and_survives_a_killed_worker(tmp_path, ray_head):
    address, pid_dir = ray_head
    env = dict(os.environ, PYTHONPATH=f"{SRC}{os.pathsep}{Path(__file__).parent}", **RAY_ENV)
    proc = subprocess.Popen([sys.executable, str(DEMO_CLI), "run", "demo", "--scale", "smoke", "--set", "tasks=3",
                             "--set", "wave=true", "--out", str(tmp_path / "ray"), "--ray", address, "--threads", "1",
                             "--quiet"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = kill_when_started(pid_dir, "train-2")
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    record = read_results(tmp_path / "ray", "demo")
    assert record["status"] == "completed" and record["env"]["executor"] == f"Ray at {address}"
    assert int((pid_dir / "train-2.pid").read_text()) != killed
    baseline = wave_run(tmp_path / "baseline")
    assert record["metrics"] == baseline["metrics"] and record["claims"] == baseline["claims"]


def test_an_unreachable_ray_address_is_one_line_exit_2(tmp_path):
    if not HAS_RAY:
        pytest.skip("Ray is not installed (pip install mlmyths[ray])")
    proc = demo("run", "demo", "--scale", "smoke", "--out", str(tmp_path), "--ray", f"127.0.0.1:{free_port()}",
                "--quiet", env=RAY_ENV, timeout=300)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "cannot connect to a Ray cluster" in proc.stderr


def test_bad_executor_flags_are_one_line_exit_2(tmp_path):
    for args, message in ((["--workers", "0"], "--workers must be at least 1, got 0"),
                          (["--retries", "-1"], "--retries must be at least 0, got -1")):
        proc = demo("run", "demo", "--scale", "smoke", "--out", str(tmp_path), *args)
        assert proc.returncode == 2 and message in proc.stderr and proc.stderr.count("\n") == 1


def test_results_json_records_which_executor_ran(tmp_path):
    record = wave_run(tmp_path)
    assert record["env"]["executor"] == "in-process"
    assert json.loads((next(tmp_path.glob("demo/*/config.json"))).read_text())["threads"] == 1


def test_plan_counts_the_waves_and_times_a_step(tmp_path):
    proc = demo("plan", "demo", "--scale", "small", "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "plan for demo at scale small" in out and "trainings" in out
    row = next(line for line in out.splitlines() if "trainings" in line)
    assert " 3 " in row and "69 SGD steps of an MLP on 64 digits" in row  # 3 tasks x (3 epochs x 23 steps)
    assert "not measured" not in row
    assert "1 wave(s), 3 task(s)" in out and "wall time with 2 worker(s)" in out
    proc = demo("plan", "demo", "--no-probe", "--out", str(tmp_path))
    assert proc.returncode == 0 and "not measured" in proc.stdout and "no time measured" in proc.stdout
    # a GPU cluster's plan, from a machine without CUDA: counts and resources, nothing run on the device
    proc = demo("plan", "demo", "--no-probe", "--device", "cuda", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "on cuda (not probed" in proc.stdout and "1 CPU, 1 GPU" in proc.stdout
    record = wave_run(tmp_path)  # a finished run records how long each task took
    assert set(record["task_seconds"]) == {"train-0", "train-1", "train-2"}
    proc = demo("plan", "demo", "--scale", "smoke", "--no-probe", "--out", str(tmp_path))
    row = next(line for line in proc.stdout.splitlines() if "trainings" in line)
    assert f"run {record['run_id']}" in row and "not measured" not in row.split("run ")[1]
    proc = demo("plan", "nope")
    assert proc.returncode == 2 and "unknown myth 'nope'" in proc.stderr
