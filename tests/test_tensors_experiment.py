"""The `tensors` experiment end to end at smoke scale, its verdict rule, configs, and the
benchmark harness (isolated measurements, failures recorded as failures)."""
from __future__ import annotations

import math

import pytest
from conftest import read_results, run_cli

from mlmyths.errors import ConfigError
from mlmyths.myths import tensors
from mlmyths.runs import OUTCOMES
from mlmyths import hessians as bench


def test_smoke_run_through_cli(tmp_path):
    r = run_cli("run", "tensors", "--scale", "smoke", "--out", str(tmp_path), "--quiet")
    assert r.returncode == 0, r.stderr
    res = read_results(tmp_path, "tensors")
    assert res["status"] == "completed" and res["scale"] == "smoke"
    assert res["verdict"]["outcome"] in OUTCOMES
    assert "n=50" in res["verdict"]["reason"]
    rows = res["tables"]["timings"]
    systems = {row["system"] for row in rows}
    assert {"tensorcalc", "closed-form"} <= systems
    for problem in bench.PROBLEMS:
        tc_row = next(row for row in rows if row["problem"] == problem and row["system"] == "tensorcalc")
        assert tc_row["median_s"] > 0 and tc_row["rel_error"] < 1e-10
        assert tc_row["ratio"] == pytest.approx(1.0)
    for row in rows:
        if row["system"] == "tensorflow" and not bench.installed("tensorflow"):
            assert row["error"] == "not installed"
    # the verdict follows from the recorded numbers
    verdict, metrics, _ = tensors.verdict(rows, bench.PROBLEMS, 10.0)
    assert verdict.outcome == res["verdict"]["outcome"]
    assert res["metrics"]["problems_won"] == metrics["problems_won"]
    sizes = res["tables"]["expression_sizes"]
    tc_sizes = [s["operations"] for s in sizes if s["system"] == "tensorcalc"]
    assert len(tc_sizes) == 9 and max(tc_sizes) <= 15
    if bench.installed("jax"):
        jax_sizes = [s["operations"] for s in sizes if s["system"] == "jax"]
        assert min(jax_sizes) > max(tc_sizes)
    assert len(res["figures"]) == 2
    for fig in res["figures"]:
        assert (tmp_path / "tensors" / res["run_id"] / fig).stat().st_size > 1000
    if any(not bench.installed(s) for s in bench.SYSTEMS):
        assert any("Not installed" in note for note in res["notes"])


def _rows(times: dict[str, dict[str, float | str]], n: int = 1000) -> list[dict]:
    """Synthetic benchmark rows: {problem: {system: seconds or an error string}}."""
    rows = []
    for problem, by_system in times.items():
        for system, t in by_system.items():
            ok = isinstance(t, float)
            rows.append({"problem": problem, "n": n, "system": system, "median_s": t if ok else None,
                         "error": None if ok else t, "rel_error": 0.0 if ok else None})
    return bench.with_ratios(rows)


FRAMEWORKS = ["jax", "torch.func"]


def test_verdict_refuted_when_two_problems_won_and_failures_count_as_beaten():
    rows = _rows({
        "quadratic": {"tensorcalc": 0.001, "jax": 0.02, "torch.func": 0.05},
        "logistic": {"tensorcalc": 0.01, "jax": 0.02, "torch.func": 0.2},
        "factorization": {"tensorcalc": 0.05, "jax": "out of memory (cap 4 GB)", "torch.func": 1.0},
    })
    v, metrics, per = tensors.verdict(rows, bench.PROBLEMS, 10.0, FRAMEWORKS)
    assert v.outcome == "refuted"
    assert "every framework failed: jax (out of memory (cap 4 GB))" not in v.reason
    assert "quadratic n=1000: fastest framework jax 20x slower" in v.reason
    assert "logistic n=1000: fastest framework jax 2x slower" in v.reason
    assert metrics["problems_won"] == 2 and metrics["factorization_min_framework_ratio"] == pytest.approx(20.0)
    assert [p["outcome"] for p in per] == ["won", "neither", "won"]


def test_verdict_supported_and_inconclusive():
    rows = _rows({
        "quadratic": {"tensorcalc": 0.01, "jax": 0.005, "torch.func": 0.05},
        "logistic": {"tensorcalc": 0.01, "jax": 0.01, "torch.func": 0.2},
        "factorization": {"tensorcalc": 0.05, "jax": 5.0, "torch.func": 1.0},
    })
    v, metrics, _ = tensors.verdict(rows, bench.PROBLEMS, 10.0, FRAMEWORKS)
    assert v.outcome == "supported" and metrics["problems_lost"] == 2
    rows = _rows({
        "quadratic": {"tensorcalc": 0.01, "jax": 0.5},
        "logistic": {"tensorcalc": 0.01, "jax": 0.05},
        "factorization": {"tensorcalc": 0.05, "jax": 0.01},
    })
    assert tensors.verdict(rows, bench.PROBLEMS, 10.0, ["jax"])[0].outcome == "inconclusive"
    assert tensors.verdict(rows, bench.PROBLEMS, 10.0, [])[0].outcome == "inconclusive"
    wrong = [dict(r, rel_error=0.5) if r["system"] == "tensorcalc" else r for r in _rows({
        "quadratic": {"tensorcalc": 0.001, "jax": 1.0}, "logistic": {"tensorcalc": 0.001, "jax": 1.0},
        "factorization": {"tensorcalc": 0.001, "jax": 1.0}})]
    v = tensors.verdict(wrong, bench.PROBLEMS, 10.0, ["jax"])[0]
    assert v.outcome == "inconclusive" and "disagreed" in v.reason


def test_grid_skips_larger_sizes_after_a_failure_and_computes_ratios():
    calls = []

    def run_one(problem, n, system):
        calls.append((problem, n, system))
        if system == "closed-form" and n >= 20:
            return {"problem": problem, "n": n, "system": system, "median_s": None, "error": "timeout after 1 s"}
        return {"problem": problem, "n": n, "system": system, "median_s": n * (2.0 if system == "closed-form" else 1.0),
                "error": None}

    rows = bench.grid(("quadratic",), (10, 20, 40), ("tensorcalc", "closed-form"), run_one)
    assert ("quadratic", 40, "closed-form") not in calls
    by = {(r["n"], r["system"]): r for r in rows}
    assert by[(10, "closed-form")]["ratio"] == pytest.approx(2.0)
    assert by[(40, "closed-form")]["error"] == "skipped: timeout after 1 s at n=20"
    assert bench.failed(by[(40, "closed-form")]) and not bench.failed({"error": "not installed"})
    table = bench.markdown_table(rows)
    assert "| quadratic | 10 | closed-form | 20 s | 2x |" in table and "skipped: timeout" in table


def test_isolated_measurement_records_out_of_memory_and_timeouts():
    ok = bench.measure_isolated("quadratic", 20, "tensorcalc", mem_gb=0.6, timeout_s=120)
    assert ok["error"] is None and ok["rel_error"] == 0.0 and ok["median_s"] > 0
    oom = bench.measure_isolated("factorization", 1000, "tensorcalc", mem_gb=0.6, timeout_s=120)  # 800 MB output
    assert oom["error"] == "out of memory (cap 0.6 GB)" and oom["median_s"] is None
    slow = bench.measure_isolated("quadratic", 20, "tensorcalc", timeout_s=0.05)
    assert slow["error"] == "timeout after 0.05 s"


def test_in_process_measurement_is_correct_for_every_installed_system():
    for system in bench.SYSTEMS:
        if not bench.installed(system):
            continue
        r = bench.measure("logistic", 8, system, repeats=1, max_time=0.1, threads=1)
        assert r["rel_error"] < 1e-9, system
        assert r["median_s"] > 0 and r["setup_s"] >= 0


def test_configs():
    small = tensors.config("small")
    assert small.sizes == (100, 300, 1000) and small.isolate and small.mem_gb == 4.0
    paper = tensors.config("paper")
    assert 3000 in paper.sizes and paper.device == "auto"
    smoke = tensors.config("smoke")
    assert smoke.sizes == (50,) and not smoke.isolate
    assert tensors.config("small", sizes="10,20").sizes == (10, 20)
    with pytest.raises(ConfigError, match="unknown problem"):
        tensors.config("small", problems="quadratic,cubic")
    with pytest.raises(ConfigError, match="tensorcalc"):
        tensors.config("small", systems="jax")
    with pytest.raises(ConfigError, match="unknown config key"):
        tensors.config("small", size="10")
    assert math.isfinite(tensors.config("smoke").win_factor)


def test_verdict_counts_failures_as_beaten_but_not_unavailable_systems():
    rows = _rows({
        "quadratic": {"tensorcalc": 0.001, "jax": 0.05, "torch.func": "not available: no GPU backend"},
        "logistic": {"tensorcalc": 0.01, "jax": 0.2, "torch.func": "not available: no GPU backend"},
        "factorization": {"tensorcalc": 0.05, "jax": "out of memory (cap 4 GB)", "torch.func": "timeout after 9 s"},
    })
    v, metrics, per = tensors.verdict(rows, bench.PROBLEMS, 10.0, FRAMEWORKS)
    assert v.outcome == "refuted" and metrics["problems_won"] == 3
    assert "every framework failed: jax (out of memory (cap 4 GB)), torch.func (timeout after 9 s)" in v.reason
    assert per[0]["fastest_framework"] == "jax" and per[0]["its_ratio"] == pytest.approx(50.0)
    assert not bench.failed(rows[2]) and bench.unavailable(rows[2])
