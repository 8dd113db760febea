"""The `tensors` experiment: a smoke run through the CLI whose record follows the claim rules, the
claims judged on simulated measurements with known truth (failures count as infinitely slow, a
wrong Hessian or a crashed framework gates the key claims), the measurement harness (child
processes, waves, failures recorded as failures), the plan, and Ctrl-C with jax installed."""
from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import SRC, read_results, run_cli, skip_without

from mlmyths import claims
from mlmyths import hessians as bench
from mlmyths.errors import ConfigError
from mlmyths.myths import planning, tensors


def _follows_the_rules(c: dict) -> bool:
    """The outcome in a record entry is the one the three tests give for its interval."""
    if c["ci"] is None:
        return c["outcome"] == "not_tested"
    if c["outcome"] == "not_tested":  # gated by a prerequisite
        return "prerequisite" in c["reason"]
    code = claims.outcome_codes(c["test"], c["threshold"], np.array([c["ci"][0]]), np.array([c["ci"][1]]))[0]
    return claims.OUTCOMES[int(code)] == c["outcome"]


def test_smoke_run_through_cli(tmp_path):
    r = run_cli("run", "tensors", "--scale", "smoke", "--out", str(tmp_path), "--quiet")
    assert r.returncode == 0, r.stderr
    res = read_results(tmp_path, "tensors")
    assert res["status"] == "completed" and res["scale"] == "smoke" and res["schema"] == 2
    assert [c["id"] for c in res["claims"]] == [c.id for c in tensors.CLAIMS]
    assert all(_follows_the_rules(c) for c in res["claims"]), res["claims"]
    key = [c["outcome"] for c in res["claims"] if c["key"]]
    assert res["verdict"]["outcome"] == claims.verdict_code(key)
    rows = res["tables"]["timings"]
    for problem in bench.PROBLEMS:
        by = {row["system"]: row for row in rows if row["problem"] == problem and row["n"] == 50}
        assert by["tensorcalc"]["median_s"] > 0 and by["tensorcalc"]["rel_error"] < 1e-10
        assert by["tensorcalc"]["ratio"] == pytest.approx(1.0) and by["tensorcalc"]["calls"] >= tensors.MIN_CALLS
        assert by["closed-form"]["calls"] == by["tensorcalc"]["calls"]  # interleaved: paired call by call
        for system in bench.FRAMEWORKS:
            if bench.installed(system):
                assert by[system]["rel_error"] < 1e-10 or by[system]["error"], (problem, system, by[system])
            else:
                assert by[system]["error"] == "not installed"
    assert res["metrics"]["frameworks_compared"] == len(tensors.peers())
    sizes = res["tables"]["expression_sizes"]
    tc_sizes = [s["operations"] for s in sizes if s["system"] == "tensorcalc"]
    assert len(tc_sizes) == 9 and max(tc_sizes) <= 15
    if bench.installed("jax"):
        assert min(s["operations"] for s in sizes if s["system"] == "jax") > max(tc_sizes)
    assert len(res["figures"]) == 2
    for fig in res["figures"]:
        assert (tmp_path / "tensors" / res["run_id"] / fig).stat().st_size > 1000
    assert res["differences"] and any("Peers:" in d for d in res["differences"])


# -- the claims on simulated measurements -------------------------------------------------------------


def _truth(**changes: float) -> dict[str, float]:
    return {**tensors.CALIBRATION["paper"], **changes}


def _outcomes(m) -> dict[str, str]:
    return {r.claim.id: r.outcome for r in tensors.evaluate(tensors.config("small"), m)}


def _simulated(seed=0, **truth):
    return tensors.simulate(tensors.config("small"), _truth(**truth), np.random.default_rng(seed))


def test_frameworks_that_ran_out_of_memory_or_time_count_as_infinitely_slow():
    m = _simulated(**{"factorization-speedup": 1.0})  # every framework as fast as tensorcalc...
    at = m["largest"]["factorization"]
    at["peers"] = {"jax": "out of memory (cap 4 GB)", "torch.func": "skipped: out of memory (cap 4 GB) at n=300",
                   "torch.autograd": "timeout after 120 s"}  # ...but none finished
    result = {r.claim.id: r for r in tensors.evaluate(tensors.config("small"), m)}["factorization-speedup"]
    assert result.outcome == "reproduced"
    assert (result.estimate.value, result.estimate.low, result.estimate.high) == (0.0, 0.0, 0.0)
    assert "infinitely slow: jax, torch.func, torch.autograd" in result.estimate.method
    at["peers"]["jax"] = at["tensorcalc"] * 2.0  # one finishes, only twice as slow: it decides
    assert _outcomes(m)["factorization-speedup"] == "contradicted"


def test_the_fastest_framework_decides_and_the_estimate_is_its_time_share():
    m = _simulated(seed=3)
    at = m["largest"]["quadratic"]
    tc = np.full(20, 0.001) * np.exp(0.01 * np.arange(20))  # (20,) calls of 1 ms
    at["tensorcalc"] = tc
    at["peers"] = {"jax": np.array([0.05, 0.051, 0.049]), "torch.func": np.array([0.5, 0.52, 0.48]),
                   "torch.autograd": "out of memory (cap 4 GB)"}
    shares = tensors.speed_shares(at, ["jax", "torch.func", "torch.autograd"])
    assert shares["torch.autograd"] == (0.0, 0.0, 0.0)
    geo = math.exp(np.log(tc).mean() - np.log(at["peers"]["jax"]).mean())
    assert shares["jax"][0] == pytest.approx(geo) and shares["jax"][1] < geo < shares["jax"][2]
    result = {r.claim.id: r for r in tensors.evaluate(tensors.config("small"), m)}["quadratic-speedup"]
    assert result.estimate.value == pytest.approx(geo) and result.outcome == "reproduced"  # ~50x faster
    assert "fastest jax" in result.estimate.method


def test_a_wrong_hessian_gates_every_speed_claim_never_supported_or_refuted():
    m = _simulated(**{"hessians-correct": 1e15, "logistic-speedup": 1.0})  # wrong, and a framework as fast
    results = tensors.evaluate(tensors.config("small"), m)
    out = {r.claim.id: r for r in results}
    assert out["hessians-correct"].outcome == "contradicted"
    assert all(out[c].outcome == "not_tested" and "prerequisite" in out[c].reason for c in tensors.SPEED_IDS.values())
    assert out["closed-form-parity"].outcome == "not_tested"
    assert claims.verdict(results).outcome == "inconclusive"


def test_a_crashed_framework_is_a_broken_comparison_not_a_slow_one():
    m = _simulated()
    m["crashes"] = ["torch.func on logistic at n=100: TypeError: vmap got an unexpected keyword"]
    out = _outcomes(m)
    assert out["hessians-correct"] == "not_tested"
    assert {out[c] for c in tensors.SPEED_IDS.values()} == {"not_tested"}
    m = _simulated()
    m["largest"]["logistic"]["peers"]["torch.func"] = "TypeError: vmap got an unexpected keyword"
    result = {r.claim.id: r for r in tensors.evaluate(tensors.config("small"), m)}["logistic-speedup"]
    assert result.outcome == "not_tested" and "other than by memory or time" in result.reason


def test_missing_data_is_not_tested_with_the_reason():
    m = _simulated()
    m["peers"] = []
    assert {_outcomes(m)[c] for c in tensors.SPEED_IDS.values()} == {"not_tested"}
    m = _simulated()
    m["largest"]["factorization"]["tensorcalc"] = "out of memory (cap 4 GB)"
    m["largest"]["factorization"]["closed-form"] = "out of memory (cap 4 GB)"
    result = {r.claim.id: r for r in tensors.evaluate(tensors.config("small"), m)}
    assert result["factorization-speedup"].outcome == "not_tested" and "budget" in result["factorization-speedup"].reason
    assert result["closed-form-parity"].estimate.n == 2 * 20  # the other two problems still judged
    cfg = tensors.config("small", problems="quadratic")
    m = tensors.simulate(cfg, _truth(), np.random.default_rng(0))
    out = {r.claim.id: r for r in tensors.evaluate(cfg, m)}
    assert out["logistic-speedup"].outcome == "not_tested" and "problems" in out["logistic-speedup"].reason


def test_closed_form_parity_is_paired_call_by_call():
    m = _simulated()
    rng = np.random.default_rng(1)
    drift = np.exp(rng.normal(0, 1.0, 20))  # a machine whose speed swings by e^±1 between calls
    for at in m["largest"].values():
        at["tensorcalc"], at["closed-form"] = 0.01 * drift * 1.05, 0.01 * drift  # 5% slower, always
    ratios = tensors.parity_ratios(m)
    for value, low, high in ratios.values():
        assert value == pytest.approx(1.05) and low == pytest.approx(1.05) and high == pytest.approx(1.05)
    assert _outcomes(m)["closed-form-parity"] == "reproduced"


def test_measurements_sort_failures_into_exhausted_crashed_and_unavailable():
    def row(system, n, error=None, **kw):
        base = {"problem": "quadratic", "n": n, "system": system, "median_s": None if error else 0.01,
                "times": None if error else [0.01, 0.011, 0.012], "rel_error": None if error else 1e-16,
                "eps": 2.2e-16, "error": error}
        return {**base, **kw}

    rows = [row("tensorcalc", 10), row("closed-form", 10), row("jax", 10, "out of memory (cap 1 GB)"),
            row("torch.func", 10, "ValueError: boom"), row("autograd", 10, "not available: CPU only"),
            row("tensorcalc", 20), row("closed-form", 20), row("jax", 20, "skipped: out of memory (cap 1 GB) at n=10"),
            row("torch.func", 20, "skipped: ValueError: boom at n=10"), row("autograd", 20, "not available: CPU only")]
    cfg = tensors.config("small", sizes="10,20", problems="quadratic")
    m = tensors.measurements(cfg, rows, ["jax", "torch.func", "autograd"])
    assert m["peers"] == ["jax", "torch.func"]  # not available here: not a peer
    assert m["crashes"] == ["torch.func on quadratic at n=10: ValueError: boom"]
    assert len(m["errors"]) == 4 and max(m["errors"]) == pytest.approx(1e-16 / 2.2e-16)
    at = m["largest"]["quadratic"]
    assert at["n"] == 20 and at["peers"]["jax"].startswith("skipped: out of memory")
    assert bench.exhausted({"error": at["peers"]["jax"]}) and not bench.exhausted({"error": "skipped: ValueError"})


def test_evaluate_is_fast():
    cfg = tensors.config("small")
    m = tensors.simulate(cfg, _truth(), np.random.default_rng(0))
    t0 = time.perf_counter()
    for _ in range(50):
        tensors.evaluate(cfg, m)
    assert (time.perf_counter() - t0) / 50 < 0.05  # generous: the calibration needs thousands of calls


# -- configs and the plan ----------------------------------------------------------------------------------


def test_configs():
    small = tensors.config("small")
    assert small.sizes == (100, 300, 1000) and small.mem_gb == 4.0 and small.problems == bench.PROBLEMS
    paper = tensors.config("paper")
    assert max(paper.sizes) == 3000 and paper.mem_gb == 24.0
    rehearsal = tensors.rehearsal(paper)
    assert rehearsal.problems == paper.problems and len(rehearsal.sizes) >= 2 and max(rehearsal.sizes) < 50
    assert tensors.config("small", sizes="10,20").sizes == (10, 20)
    with pytest.raises(ConfigError, match="problems"):
        tensors.config("small", problems="quadratic,cubic")
    with pytest.raises(ConfigError, match="'repeats'"):
        tensors.config("small", repeats=2)
    with pytest.raises(ConfigError, match="'sizes'"):
        tensors.config("small", sizes="10,10")
    with pytest.raises(ConfigError, match="unknown config key"):
        tensors.config("small", device="cuda")  # the run's device is --device; no second knob


def test_plan_has_a_wave_per_size_and_a_probe_that_times_tensorcalc():
    cfg = tensors.config("small", sizes="20,40")
    waves = tensors.plan(cfg)
    assert [w.tasks for w in waves[:2]] == [3 * (1 + len(tensors.peers()))] * 2
    assert waves[0].units_per_task == cfg.repeats + 1 and waves[-1].tasks == 1
    assert [w.stage for w in waves] == [1, 2, 3] and waves[1].key_prefix == "time-n40-"
    rows = planning.estimate(waves, __import__("torch").device("cpu"))
    assert rows[0]["s per unit"] > 0 and rows[0]["task-hours"] > 0


# -- the harness ---------------------------------------------------------------------------------------


def test_grid_runs_waves_skips_after_a_failure_and_flattens_interleaved_rows():
    waves = []

    def run_wave(jobs):
        waves.append(jobs)
        out = []
        for problem, n, system in jobs:
            if system == "jax" and n >= 20:
                out.append({"problem": problem, "n": n, "system": system, "median_s": None,
                            "error": "timeout after 1 s"})
                continue
            row = {"problem": problem, "n": n, "system": system, "median_s": n * (2.0 if system == "jax" else 1.0),
                   "error": None}
            if system == "tensorcalc":
                row["interleaved"] = {"problem": problem, "n": n, "system": "closed-form", "median_s": n * 0.5,
                                      "error": None}
            out.append(row)
        return out

    if not bench.installed("jax"):
        pytest.skip("jax is not installed (it comes with pip install -e '.[dev]')")
    rows = bench.grid(("quadratic",), (40, 10, 20), ("tensorcalc", "jax", "tensorflow"), run_wave=run_wave)
    assert [sorted({j[1] for j in w}) for w in waves] == [[10], [20], [40]]  # one wave per n, smallest first
    assert ("quadratic", 40, "jax") not in waves[2]
    by = {(r["n"], r["system"]): r for r in rows}
    assert by[(10, "jax")]["ratio"] == pytest.approx(2.0) and by[(10, "closed-form")]["ratio"] == pytest.approx(0.5)
    assert by[(40, "jax")]["error"] == "skipped: timeout after 1 s at n=20"
    if not bench.installed("tensorflow"):
        assert by[(40, "tensorflow")]["error"] == "not installed"
    assert [r["system"] for r in rows if r["n"] == 10][:3] == ["tensorcalc", "closed-form", "jax"]
    table = bench.markdown_table(rows)
    assert "| quadratic | 10 | jax | 20 s | 2x |" in table and "skipped: timeout" in table


def test_isolated_measurement_records_out_of_memory_and_timeouts_and_pairs_calls():
    ok = bench.measure_isolated("quadratic", 20, "tensorcalc", mem_gb=0.6, timeout_s=120, interleave="closed-form",
                                min_calls=4, repeats=6, max_time=0.0)
    assert ok["error"] is None and ok["rel_error"] == 0.0 and ok["median_s"] > 0 and ok["eps"] == np.finfo(float).eps
    assert ok["calls"] == 4 and len(ok["times"]) == 4 and len(ok["interleaved"]["times"]) == 4
    assert ok["interleaved"]["system"] == "closed-form" and ok["interleaved"]["rel_error"] == 0.0
    oom = bench.measure_isolated("factorization", 1000, "tensorcalc", mem_gb=0.6, timeout_s=120)  # 800 MB output
    assert oom["error"] == "out of memory (cap 0.6 GB)" and oom["median_s"] is None and bench.exhausted(oom)
    slow = bench.measure_isolated("logistic", 300, "tensorcalc", timeout_s=0.5, repeats=10**6, min_calls=10**6)
    assert slow["error"] == "timeout after 0.5 s" and bench.exhausted(slow)
    again = bench.measure_isolated("logistic", 10, "tensorcalc", timeout_s=120)  # the server survived the kill
    assert again["error"] is None


def test_in_process_measurement_is_correct_for_every_installed_system():
    for system in bench.SYSTEMS:
        if not bench.installed(system):
            continue
        r = bench.measure("logistic", 8, system, repeats=1, max_time=0.1, threads=1)
        assert r["rel_error"] < 1e-9, system
        assert r["median_s"] > 0 and r["setup_s"] >= 0


def test_expression_sizes_in_a_child_equal_those_in_process():
    got = bench.expression_sizes_isolated(("quadratic", "factorization"), 4)
    assert got == bench.expression_sizes("quadratic", 4) + bench.expression_sizes("factorization", 4)


@pytest.mark.slow
def test_ctrl_c_during_a_run_with_jax_installed_interrupts_it_three_times_in_a_row(tmp_path):
    """Issue 19.2: the run waits on child processes, never inside jax, so SIGINT is honoured."""
    skip_without("jax", extra="dev")
    env = dict(os.environ, PYTHONPATH=str(SRC), MLMYTHS_OFFLINE="1")
    for attempt in range(3):
        out = tmp_path / f"attempt{attempt}"
        proc = subprocess.Popen([sys.executable, "-m", "mlmyths", "run", "tensors", "--scale", "smoke", "--out",
                                 str(out), "--quiet"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.time() + 180
        while time.time() < deadline and not list(out.glob("tensors/*/checkpoints/tasks/*.npz")):
            time.sleep(0.05)
        assert list(out.glob("tensors/*/checkpoints/tasks/*.npz")), "no task finished within 180 s"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, (attempt, err)
        assert read_results(out, "tensors")["status"] == "interrupted", attempt
