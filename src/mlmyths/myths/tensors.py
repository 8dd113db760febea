"""Myth 1, "TensorFlow is a tensor manipulation library": Hessians by tensor calculus.

Laue, Mitterreiter & Giesen (NeurIPS 2018) argue that deep-learning frameworks work in
matrix calculus, not tensor calculus: they build large expression graphs that differ
between forward and reverse mode, and compute higher-order derivatives (Hessians) by
looping or vectorizing Jacobian-vector products. Differentiating in index notation
instead keeps derivatives compact and compiles to a few BLAS calls, and the paper's
Hessians came out up to two orders of magnitude faster on CPU than TensorFlow, Theano,
PyTorch and HIPS autograd on three problems (quadratic form, logistic regression,
matrix factorization; :mod:`mlmyths.hessians`).

What this experiment does (one task per measurement, so ``--resume`` continues):

1. **Timing**: for every problem, size ``n`` and system -- :mod:`mlmyths.tensorcalc`, the
   hand-written NumPy closed form, and the installed frameworks among ``jax.hessian``
   (jit), ``torch.func.hessian``, ``torch.autograd.functional.hessian``, HIPS autograd
   and TensorFlow -- the median time of one Hessian evaluation (set-up and jit compilation
   reported apart), the peak memory, and the error against the closed form. With
   ``isolate`` every measurement runs in its own process under a ``mem_gb`` memory cap, so
   that a framework running out of memory is recorded as a failure; a system that failed
   at one ``n`` is not tried at larger ``n``.
2. **Expression size**: operations in each system's Hessian of each problem, in forward
   mode (forward over forward), reverse mode (reverse over reverse) and mixed (forward over
   reverse, what ``jax.hessian`` and ``torch.func.hessian`` do): tensorcalc's DAG nodes,
   the equations of jax's jaxpr, the call nodes of the torch.fx graph of ``torch.func``.
3. Figures: time against n (log-log, one panel per problem) and the expression sizes.

**Verdict rule.** At the largest ``n`` of each problem (where tensorcalc succeeded), a
framework's *ratio* is its median time over tensorcalc's; a framework that ran out of
memory or time counts as beaten by any factor. A problem is *won* when every installed
framework's ratio is at least ``win_factor`` (10), *lost* when some framework is at least
as fast as tensorcalc (ratio <= 1). ``refuted`` (the paper reproduced: frameworks are no
match for tensor calculus on these Hessians) when at least two of the three problems are
won and tensorcalc's Hessians agree with the closed forms; ``supported`` when at least two
are lost; otherwise ``inconclusive`` (also when no framework is installed). The reason
quotes the smallest ratio per problem.

Scales: ``smoke`` (n = 50, in-process, seconds), ``small`` (n = 100, 300, 1000, one process
per measurement under a 4 GB cap; minutes), ``paper`` (n up to 3000, float32 on CUDA when
present, 24 GB cap).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlmyths import config as configs
from mlmyths import plots
from mlmyths.errors import ConfigError
from mlmyths.myths import claim
from mlmyths.runs import Result, RunContext, Verdict
from mlmyths import hessians as bench

CLAIM = claim(
    "tensors",
    paper_result=(
        "Hessians computed by tensor calculus (the method behind matrixcalculus.org) were up to two orders of "
        "magnitude faster on CPU (three on GPU) than TensorFlow, Theano, PyTorch and HIPS autograd on a quadratic "
        "form, logistic regression and matrix factorization; forward and reverse mode give equally compact "
        "derivatives in tensor calculus, unlike in the frameworks."
    ),
)


@dataclass(frozen=True)
class Config:
    sizes: tuple[int, ...] = (100, 300, 1000)  # n: A is n x n, the logistic X is 2n x n, T is n x n of rank 10
    problems: tuple[str, ...] = bench.PROBLEMS  # which of quadratic, logistic, factorization
    systems: tuple[str, ...] = bench.SYSTEMS  # tensorcalc, closed-form and the frameworks (missing ones skipped)
    isolate: bool = True  # one process per measurement under a memory cap (failures recorded, not fatal)
    mem_gb: float = 4.0  # address-space cap per measurement process, GiB
    timeout_s: float = 120.0  # wall-clock limit per measurement process
    repeats: int = 5  # timed Hessian evaluations per measurement (fewer when they take long)
    max_time: float = 2.0  # seconds of timed evaluations per measurement, at most (at least one call)
    threads: int = 0  # threads per library (BLAS, OpenMP, XLA); 0: the libraries' defaults
    device: str = "cpu"  # "cpu" (float64), "cuda" (float32) or "auto" (the run's device)
    expression_n: int = 5  # n at which the frameworks' Hessian graphs are traced for counting
    win_factor: float = 10.0  # verdict: a problem is won when tensorcalc is this many times faster than each framework


SCALES = {
    "smoke": Config(sizes=(50,), isolate=False, repeats=3, max_time=0.2, threads=1),
    "small": Config(),
    "paper": Config(sizes=(100, 300, 1000, 3000), mem_gb=24.0, timeout_s=900.0, repeats=7, max_time=5.0,
                    device="auto"),
}


def config(scale: str = "small", **overrides: Any) -> Config:
    cfg = configs.select(SCALES, scale, overrides)
    unknown = [p for p in cfg.problems if p not in bench.PROBLEMS]
    if unknown:
        raise ConfigError(f"config key 'problems': unknown problem {unknown[0]!r}; choose from "
                          f"{', '.join(bench.PROBLEMS)}")
    unknown = [s for s in cfg.systems if s not in bench.SYSTEMS]
    if unknown:
        raise ConfigError(f"config key 'systems': unknown system {unknown[0]!r}; choose from {', '.join(bench.SYSTEMS)}")
    if "tensorcalc" not in cfg.systems:
        raise ConfigError("config key 'systems' must include 'tensorcalc' (ratios are taken against it)")
    if not cfg.sizes or any(n < 2 for n in cfg.sizes):
        raise ConfigError(f"config key 'sizes' needs sizes >= 2, got {cfg.sizes}")
    if cfg.device not in ("cpu", "cuda", "auto"):
        raise ConfigError(f"config key 'device' must be cpu, cuda or auto, got {cfg.device!r}")
    if cfg.mem_gb <= 0 or cfg.timeout_s <= 0 or cfg.repeats < 1:
        raise ConfigError("config keys 'mem_gb', 'timeout_s' and 'repeats' must be positive")
    return cfg


def _measure(cfg: Config, device: str, problem: str, n: int, system: str) -> dict[str, Any]:
    if cfg.isolate:
        return bench.measure_isolated(problem, n, system, mem_gb=cfg.mem_gb, timeout_s=cfg.timeout_s,
                                      repeats=cfg.repeats, max_time=cfg.max_time, device=device,
                                      threads=cfg.threads)
    try:
        return bench.measure(problem, n, system, repeats=cfg.repeats, max_time=cfg.max_time, device=device,
                             threads=cfg.threads)
    except MemoryError:
        return {"problem": problem, "n": n, "system": system, "median_s": None, "error": "out of memory"}
    except bench.Unavailable as exc:
        return {"problem": problem, "n": n, "system": system, "median_s": None, "error": str(exc)}
    except Exception as exc:  # a framework's failure is a result of the comparison
        return {"problem": problem, "n": n, "system": system, "median_s": None,
                "error": f"{type(exc).__name__}: {exc}".splitlines()[0][:200]}


def verdict(rows: list[dict[str, Any]], problems: tuple[str, ...], win_factor: float,
            frameworks: list[str] | None = None) -> tuple[Verdict, dict[str, Any], list[dict[str, Any]]]:
    """The rule of the module docstring: (verdict, metrics, one row per problem).

    ``frameworks``: the installed frameworks to compare with (default: those importable here).
    """
    per_problem: list[dict[str, Any]] = []
    metrics: dict[str, Any] = {}
    installed = [s for s in bench.FRAMEWORKS if bench.installed(s)] if frameworks is None else list(frameworks)
    won = lost = 0
    correct = True
    for problem in problems:
        tc_rows = [r for r in rows if r["problem"] == problem and r["system"] == "tensorcalc" and r.get("median_s")]
        if not tc_rows:
            correct = False
            per_problem.append({"problem": problem, "n": None, "outcome": "tensorcalc failed"})
            continue
        n = max(r["n"] for r in tc_rows)
        tc_row = next(r for r in tc_rows if r["n"] == n)
        if tc_row.get("rel_error") is None or tc_row["rel_error"] > 1e-8:
            correct = False
        at_n = {r["system"]: r for r in rows if r["problem"] == problem and r["n"] == n}
        ratios: dict[str, float] = {}
        failures: dict[str, str] = {}
        for system in installed:
            r = at_n.get(system)
            if r is None or bench.unavailable(r):
                continue
            if bench.failed(r) or r.get("ratio") is None:
                ratios[system] = math.inf
                failures[system] = str(r.get("error") or "no time")
            else:
                ratios[system] = r["ratio"]
        closed = at_n.get("closed-form", {}).get("ratio")
        if ratios:
            best_system = min(ratios, key=lambda s: ratios[s])
            best = ratios[best_system]
            outcome = "won" if best >= win_factor else "lost" if best <= 1.0 else "neither"
        else:
            best_system, best, outcome = None, None, "no framework"
        won += outcome == "won"
        lost += outcome == "lost"
        per_problem.append({"problem": problem, "n": n, "tensorcalc_s": tc_row["median_s"],
                            "fastest_framework": best_system, "its_ratio": best,
                            "failed_frameworks": ", ".join(f"{k} ({v})" for k, v in failures.items()) or None,
                            "closed_form_over_tensorcalc": closed, "outcome": outcome})
        metrics[f"{problem}_n"] = n
        metrics[f"{problem}_tensorcalc_s"] = tc_row["median_s"]
        metrics[f"{problem}_min_framework_ratio"] = best
        metrics[f"{problem}_tensorcalc_over_closed_form"] = (1.0 / closed) if closed else None
    metrics["problems_won"] = won
    metrics["problems_lost"] = lost
    metrics["frameworks_installed"] = len(installed)
    quoted = "; ".join(f"{p['problem']} n={p['n']}: {_fastest_text(p)}" for p in per_problem)
    if not installed:
        return Verdict("inconclusive", "no framework (jax, torch, autograd, tensorflow) is installed to compare "
                                       "with; install mlmyths[bench]"), metrics, per_problem
    if not correct:
        return Verdict("inconclusive", f"tensorcalc failed or disagreed with a closed form ({quoted})"), metrics, \
            per_problem
    if won >= 2:
        return Verdict("refuted", f"tensorcalc's Hessians beat every installed framework by >= {win_factor:g}x on "
                                  f"{won} of {len(problems)} problems ({quoted})"), \
            metrics, per_problem
    if lost >= 2:
        return Verdict("supported", f"a framework was as fast as tensorcalc on {lost} of {len(problems)} problems "
                                    f"({quoted})"), metrics, per_problem
    return Verdict("inconclusive", f"tensorcalc won {won} and lost {lost} of {len(problems)} problems at the "
                                   f"{win_factor:g}x threshold ({quoted})"), metrics, per_problem


def _fastest_text(p: dict[str, Any]) -> str:
    """``jax 12.3x slower`` or ``every framework failed (...)``, for reasons and summaries."""
    if p.get("n") is None:
        return "tensorcalc failed"
    if not p.get("fastest_framework"):
        return "no framework to compare"
    if math.isinf(p["its_ratio"]):
        return f"every framework failed: {p['failed_frameworks']}"
    return f"fastest framework {p['fastest_framework']} {p['its_ratio']:.3g}x slower"


def run(cfg: Config, ctx: RunContext) -> Result:
    device = cfg.device if cfg.device != "auto" else ctx.device.type
    missing = [s for s in cfg.systems if not bench.installed(s)]
    if missing:
        ctx.log(f"not installed (skipped): {', '.join(missing)}")

    def run_one(problem: str, n: int, system: str) -> dict[str, Any]:
        return ctx.task(f"time-{problem}-{n}-{system}", lambda: _measure(cfg, device, problem, n, system))

    rows = bench.grid(cfg.problems, cfg.sizes, cfg.systems, run_one, progress=ctx.log)
    sizes: list[dict[str, Any]] = []
    for problem in cfg.problems:
        got = ctx.task(f"expression-sizes-{problem}", lambda p=problem: bench.expression_sizes(p, cfg.expression_n))
        sizes.extend(got)
    outcome, metrics, per_problem = verdict(rows, cfg.problems, cfg.win_factor)
    for r in sizes:
        metrics[f"{r['problem']}_ops_{r['system']}_{r['mode']}"] = r["operations"]
    figures = [_time_figure(ctx, rows, cfg), _size_figure(ctx, sizes, cfg)]
    timing_table = [{k: r.get(k) for k in ("problem", "n", "system", "median_s", "ratio", "setup_s", "first_call_s",
                                           "peak_mb", "output_mb", "rel_error", "error")} for r in rows]
    summary = _summary(per_problem, sizes, cfg, missing)
    notes = [
        f"Timings on {device} ({'float64' if device == 'cpu' else 'float32'}); "
        f"{'one process per measurement, ' + format(cfg.mem_gb, 'g') + ' GiB cap' if cfg.isolate else 'in-process'}; "
        f"threads per library: {cfg.threads or 'library default'}. Median of up to {cfg.repeats} calls "
        f"(at most {cfg.max_time:g} s); set-up and the first (compiling) call are reported apart.",
        "ratio = system time / tensorcalc time at the same problem and n (> 1: tensorcalc faster); a framework "
        "that ran out of memory or time counts as beaten.",
        "Expression sizes count operations: tensorcalc DAG nodes (inputs not counted), jaxpr equations, "
        "torch.fx call nodes (make_fx). forward = forward over forward, reverse = reverse over reverse, "
        "mixed = forward over reverse (jax.hessian, torch.func.hessian; tensorcalc's automatic choice).",
    ]
    if missing:
        notes.append(f"Not installed, so not compared: {', '.join(missing)} (pip install 'mlmyths[bench]').")
    return Result(verdict=outcome, summary=summary, metrics=metrics,
                  tables={"timings": timing_table, "per_problem": per_problem, "expression_sizes": sizes},
                  figures=figures, notes=notes)


def _summary(per_problem: list[dict[str, Any]], sizes: list[dict[str, Any]], cfg: Config,
             missing: list[str]) -> str:
    parts = []
    for p in per_problem:
        if p.get("tensorcalc_s") is None:
            parts.append(f"{p['problem']}: tensorcalc failed.")
            continue
        closed = p.get("closed_form_over_tensorcalc")
        parts.append(
            f"{p['problem']} (n = {p['n']}): tensorcalc {p['tensorcalc_s'] * 1e3:.3g} ms"
            + (f", {1 / closed:.2f}x the hand-written closed form" if closed else "")
            + f"; {_fastest_text(p)}.")
    by = {(r["problem"], r["system"], r["mode"]): r["operations"] for r in sizes}
    for problem in cfg.problems:
        tcm = [by.get((problem, "tensorcalc", m)) for m in ("forward", "reverse")]
        jm = [by.get((problem, "jax", m)) for m in ("forward", "reverse")]
        fx = [by.get((problem, "torch.func", m)) for m in ("forward", "reverse")]
        text = f"{problem} Hessian size (forward/reverse): tensorcalc {tcm[0]}/{tcm[1]} nodes"
        if jm[0] is not None:
            text += f", jaxpr {jm[0]}/{jm[1]} equations"
        if fx[0] is not None:
            text += f", torch.fx {fx[0]}/{fx[1]} nodes"
        parts.append(text + ".")
    if missing:
        parts.append(f"Not installed: {', '.join(missing)}.")
    return " ".join(parts)


def _time_figure(ctx: RunContext, rows: list[dict[str, Any]], cfg: Config) -> str:
    fig, axes = plots.new_figure(1, len(cfg.problems), width=4.2, squeeze=False)
    for ax, problem in zip(axes[0], cfg.problems):
        for k, system in enumerate(cfg.systems):
            pts = [(r["n"], r["median_s"]) for r in rows
                   if r["problem"] == problem and r["system"] == system and r.get("median_s")]
            fails = [r for r in rows if r["problem"] == problem and r["system"] == system and bench.failed(r)]
            if not pts and not fails:
                continue
            color = plots.CYCLE[k % len(plots.CYCLE)]
            label = system + (f" (failed from n={min(r['n'] for r in fails)})" if fails else "")
            if pts:
                xs, ys = zip(*sorted(pts))
                ax.plot(xs, ys, marker="o", markersize=3, color=color, label=label,
                        linewidth=2.2 if system == "tensorcalc" else 1.2)
            else:
                ax.plot([], [], color=color, label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        top = ax.get_ylim()[1]
        for k, system in enumerate(cfg.systems):  # x at the top: failed (out of memory or time)
            fails = [r["n"] for r in rows if r["problem"] == problem and r["system"] == system and bench.failed(r)]
            if fails:
                ax.scatter(fails, [top] * len(fails), marker="x", color=plots.CYCLE[k % len(plots.CYCLE)],
                           clip_on=False, zorder=3)
        ax.set_title(bench.PROBLEM_SPECS[problem].title, fontsize=9)
        ax.set_xlabel("n")
        ax.set_ylabel("median time of one Hessian (s)")
        ax.legend(fontsize=6)
    return ctx.save_figure(fig, "hessian_time")


def _size_figure(ctx: RunContext, sizes: list[dict[str, Any]], cfg: Config) -> str:
    fig, axes = plots.new_figure(1, len(cfg.problems), width=4.2, squeeze=False)
    modes = ("forward", "reverse", "mixed")
    for ax, problem in zip(axes[0], cfg.problems):
        systems = [s for s in ("tensorcalc", "jax", "torch.func") if any(
            r["problem"] == problem and r["system"] == s for r in sizes)]
        width = 0.8 / max(1, len(modes))
        for j, mode in enumerate(modes):
            vals = [next((r["operations"] for r in sizes if r["problem"] == problem and r["system"] == s
                          and r["mode"] == mode), 0) for s in systems]
            ax.bar(np.arange(len(systems)) + (j - 1) * width, vals, width=width, label=mode,
                   color=plots.CYCLE[j])
        ax.set_xticks(np.arange(len(systems)), systems, fontsize=7)
        ax.set_title(bench.PROBLEM_SPECS[problem].title, fontsize=9)
        ax.set_ylabel("operations in the Hessian")
        ax.legend(fontsize=6)
    return ctx.save_figure(fig, "expression_size")
