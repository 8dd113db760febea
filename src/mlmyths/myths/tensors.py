"""Myth 1, "TensorFlow is a tensor manipulation library": Hessians by tensor calculus.

Laue, Mitterreiter & Giesen (NeurIPS 2018) argue that deep-learning frameworks work in
matrix calculus, not tensor calculus: they build large expression graphs that differ
between forward and reverse mode, and compute higher-order derivatives (Hessians) by
looping or vectorizing Jacobian-vector products. Differentiating in index notation
instead keeps derivatives compact and compiles to a few BLAS calls; the paper's Hessians
came out up to two orders of magnitude faster on the CPU (about three on the GPU) than
TensorFlow, Theano, PyTorch and HIPS autograd on three problems (quadratic form, logistic
regression, matrix factorization; :mod:`mlmyths.hessians`).

What this experiment does:

1. **Timing**, one wave of tasks per size ``n`` (smallest first; a system that failed at one
   ``n`` is not tried at larger ``n``), one task per measurement: for every problem, the
   median time of one Hessian evaluation of :mod:`mlmyths.tensorcalc` and of every installed
   framework among ``jax.hessian`` (jit), ``torch.func.hessian``,
   ``torch.autograd.functional.hessian``, HIPS autograd and TensorFlow (jax is always among
   them when installed), with set-up and the first (compiling) call reported apart, the peak
   memory and the error against the closed form. Every measurement runs in a child process
   (:func:`mlmyths.hessians.measure_isolated`) under a ``mem_gb`` memory cap and a
   ``timeout_s`` limit, so a framework running out of memory or time is a recorded outcome,
   and the run waits on a pipe, never inside a framework: Ctrl-C stops it at once. tensorcalc
   is timed call by call alternately with the hand-written NumPy closed form in the same
   process, so their ratio is paired.
2. **Expression size**: operations in each system's Hessian in forward, reverse and mixed mode
   (tensorcalc DAG nodes, jaxpr equations, torch.fx call nodes), traced in child processes too.
3. **Claims** (declared in :data:`CLAIMS`, judged by :func:`evaluate`): per problem, tensorcalc's
   time over the fastest installed framework's at the largest ``n`` is at most a tenth (one order
   of magnitude, the weakest reading of the paper's speed-ups); a framework that ran out of
   memory or time counts as infinitely slow (its share is 0). Gated on the prerequisite that
   every Hessian computed equals the closed form (a wrong Hessian is not a fast one); beside
   them, a secondary claim that tensorcalc costs what the hand-written closed form costs.

Scales: ``smoke`` (n = 50, seconds), ``small`` (n = 100, 300, 1000 under a 4 GB cap; minutes),
``paper`` (n up to 3000, 24 GB cap; float32 on CUDA with ``--device cuda``).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from mlmyths import config as configs
from mlmyths import hessians as bench
from mlmyths import plots
from mlmyths.claims import Claim, ClaimResult, Estimate, by_id, gated
from mlmyths.myths import claim
from mlmyths.myths.planning import Wave
from mlmyths.records import Result
from mlmyths.runs import RunContext
from mlmyths.stats import bonferroni, paired_t_interval, simultaneous_min, welch_t_interval

CLAIM = claim(
    "tensors",
    paper_result=(
        "Hessians computed by tensor calculus (the method behind matrixcalculus.org) were up to two orders of "
        "magnitude faster on CPU (three on GPU) than TensorFlow, Theano, PyTorch and HIPS autograd on a quadratic "
        "form, logistic regression and matrix factorization; forward and reverse mode give equally compact "
        "derivatives in tensor calculus, unlike in the frameworks."
    ),
)

Problem = Literal["quadratic", "logistic", "factorization"]

CONFIDENCE = 0.95  #: every claim's (family-wise) confidence
MIN_CALLS = 3  #: timed Hessian evaluations per measurement at least (an interval needs spread)
#: a Hessian error's interval spans this factor either way: the input-to-input spread of rounding
#: errors, which one set of random inputs per measurement cannot show (a noise model, not a threshold)
ROUNDING_SPREAD = 10.0

_SPEED_TEXT = {
    "quadratic": ("f(x) = x'Ax", "Fig. 3, quadratic-function panels"),
    "logistic": ("logistic regression, f(w) = sum(log(exp(-y .* Xw) + 1))", "Fig. 3, logistic-regression panels"),
    "factorization": ("matrix factorization, f(U) = ||T - UV'||² (a 4th-order tensor)",
                      "Fig. 3, matrix-factorization panels"),
}


def _speed_claim(problem: str) -> Claim:
    what, figure = _SPEED_TEXT[problem]
    return Claim(
        f"{problem}-speedup", key=True,
        statement=f"Evaluating the Hessian of {what} by tensor calculus is up to two orders of magnitude faster on "
                  "the CPU than with the deep-learning frameworks (TensorFlow, Theano, PyTorch, HIPS autograd), "
                  "about three on the GPU.",
        paper_value="'a speedup of up to two orders of magnitude over state-of-the-art frameworks when evaluating "
                    "higher order derivatives on CPUs and a speedup of about three orders of magnitude on GPUs' "
                    "(arXiv abstract); 'between one and four orders of magnitude' (NeurIPS proceedings abstract); "
                    "Fig. 3 prints running time against n as curves, no table",
        paper_source=f"Laue et al. 2018, abstract, Sec. 5 and {figure}",
        statistic="tensorcalc's Hessian time over the fastest installed framework's (jax, torch.func, "
                  "torch.autograd, HIPS autograd, TensorFlow) at the largest n: the ratio of geometric-mean times; "
                  "a framework that ran out of memory or time counts as infinitely slow (share 0); the speed-up is "
                  "1 / this",
        unit="timed Hessian evaluations (Welch t interval of the log-time difference per framework, each measured "
             "in its own process; Bonferroni over the frameworks, simultaneous maximum)",
        test="at_most", threshold=0.1,
        justification="one order of magnitude (a time share of 0.1) is the weakest speed-up the paper reports: the "
                      "low end of 'between one and four orders of magnitude' and a tenth of its CPU headline ('up "
                      "to two orders of magnitude'). A tensorcalc that beats every framework by 10x reproduces the "
                      "finding at its weakest; one demonstrably slower than a tenth of some framework's time does "
                      "not. The peers include jax's jit-compiled Hessian, which the paper did not test.")


CLAIMS = (
    Claim("hessians-correct", key=False,
          statement="(Prerequisite) Every system computes the same Hessian: differentiating in tensor calculus "
                    "gives the closed form -- the Hessian of x'Ax is A' + A -- and the frameworks' automatic "
                    "differentiation gives the same numbers; a wrong Hessian is not a fast one.",
          paper_value="exact derivatives: the Hessian of x'Ax is A' + A (Sec. 1); forward and reverse mode give the "
                      "same derivative (Sec. 3)",
          paper_source="Laue et al. 2018, Sec. 1 and Sec. 3",
          statistic="largest relative error of a Hessian against the hand-written closed form, over every Hessian "
                    "computed (every system, problem and n), in machine epsilons of its dtype (2.2e-16 in float64 "
                    "on the CPU, 1.2e-7 in float32 on CUDA)",
          unit="Hessians checked (deterministic for one input; the interval spans a factor of 10 either way, the "
               "spread of rounding errors across random inputs)",
          test="at_most", threshold=1e4,
          justification="not a finding but the condition without which speed means nothing, so it gates the key "
                        "claims. A correct Hessian built from sums of up to 2n <= 6,000 products is within about "
                        "n machine epsilons of the closed form in the worst case (Higham, Accuracy and Stability of "
                        "Numerical Algorithms, 2002, Sec. 3.1: gamma_n = n u) and typically within sqrt(n); 10^4 "
                        "epsilons (2.2e-12 in float64, 1.2e-3 in float32) covers that, while a wrong Hessian (a "
                        "missing transpose, factor or term) is off by order one, 10^15 epsilons in float64."),
    *(_speed_claim(p) for p in bench.PROBLEMS),
    Claim("closed-form-parity", key=False,
          statement="Tensor calculus gives the Hessian as a matrix/tensor expression -- the closed form itself, "
                    "A' + A for x'Ax -- which compiles to the BLAS calls one would write by hand; so evaluating it "
                    "costs what the hand-written closed form costs.",
          paper_value="the derivative is the closed-form expression (A' + A for x'Ax, Sec. 1); the paper times no "
                      "hand-written code",
          paper_source="Laue et al. 2018, Sec. 1 and Sec. 4 (the derivative as an expression)",
          statistic="tensorcalc's Hessian time over the hand-written NumPy closed form's at the largest n: ratio of "
                    "geometric means, the largest over the problems",
          unit="pairs of timed evaluations interleaved in one process (paired t interval of the log ratio per "
               "problem, Bonferroni over the problems, simultaneous maximum)",
          test="at_most", threshold=1.5,
          justification="'the same cost' up to the overhead of generated code (an extra copy or transposition): "
                        "at 1.5x the closed form, tensorcalc's lead over a framework could shrink by at most a "
                        "factor 1.5, well inside the paper's one to four orders of magnitude. Secondary: the myth is "
                        "about the frameworks, and this says whether tensorcalc is as fast as it can be."),
)
_BY_ID = by_id(CLAIMS)
SPEED_IDS = {p: f"{p}-speedup" for p in bench.PROBLEMS}

#: True values of each claim's statistic well on the paper's side and well on the other side: a framework
#: 50x slower (between the paper's one and two orders of magnitude) or as fast as tensorcalc; Hessian errors
#: of 30 epsilons (rounding) or of order one (10^15 float64 epsilons: a wrong Hessian); tensorcalc as fast as
#: the closed form or three times slower.
CALIBRATION = {
    "paper": {"hessians-correct": 30.0, **{c: 0.02 for c in SPEED_IDS.values()}, "closed-form-parity": 1.0},
    "other": {"hessians-correct": 1e15, **{c: 1.0 for c in SPEED_IDS.values()}, "closed-form-parity": 3.0},
}


@dataclass(frozen=True)
class Config:
    sizes: tuple[int, ...] = (100, 300, 1000)  # n: A is n x n, the logistic X is 2n x n, T is n x n of rank 10; claims at the largest
    problems: tuple[Problem, ...] = bench.PROBLEMS  # which of the paper's problems to measure (the others' claims are not tested)
    mem_gb: float = 4.0  # memory cap per measurement process: GiB of address space above the imported libraries
    timeout_s: float = 120.0  # wall-clock limit per measurement (set-up, first call and timed calls), seconds
    repeats: int = 20  # timed Hessian evaluations per measurement, at most (the claims' unit of replication)
    max_time: float = 2.0  # seconds of timed evaluations per measurement beyond the first MIN_CALLS (3), at most
    expression_n: int = 5  # n at which each system's Hessian graph is traced to count its operations

    def __post_init__(self) -> None:
        configs.check_types(self)
        req = configs.require
        req(len(self.sizes) >= 1 and min(self.sizes, default=0) >= 2 and len(set(self.sizes)) == len(self.sizes),
            "sizes", self.sizes, "one or more distinct sizes n >= 2")
        req(len(self.problems) >= 1 and len(set(self.problems)) == len(self.problems), "problems", self.problems,
            f"one or more distinct problems of {', '.join(bench.PROBLEMS)}")
        req(self.mem_gb > 0, "mem_gb", self.mem_gb, "more than 0 GiB")
        req(self.timeout_s > 0, "timeout_s", self.timeout_s, "more than 0 seconds")
        req(self.repeats >= MIN_CALLS, "repeats", self.repeats,
            f"at least {MIN_CALLS} (the claims' intervals are over timed evaluations)")
        req(self.max_time >= 0, "max_time", self.max_time, "0 seconds or more")
        req(self.expression_n >= 2, "expression_n", self.expression_n, "at least 2")


SCALES = {
    "smoke": Config(sizes=(50,), repeats=3, max_time=0.2),
    "small": Config(),
    "paper": Config(sizes=(100, 300, 1000, 3000), mem_gb=24.0, timeout_s=900.0, repeats=30, max_time=5.0),
}


def config(scale: str = "small", **overrides: Any) -> Config:
    """The preset for ``scale`` with ``overrides`` (nothing to resolve: the device and threads are the run's)."""
    return configs.select(SCALES, scale, overrides)


def rehearsal(cfg: Config) -> Config:
    """``cfg`` (the paper preset) at tiny sizes and the fewest timed evaluations: the same problems,
    frameworks, child processes, waves and claims, on the CPU in seconds."""
    return dataclasses.replace(cfg, sizes=(6, 10), repeats=MIN_CALLS, max_time=0.0, expression_n=3)


def peers() -> list[str]:
    """The installed frameworks among :data:`mlmyths.hessians.FRAMEWORKS` (jax whenever it is installed)."""
    return [s for s in bench.FRAMEWORKS if bench.installed(s)]


# -- claims from measurements ---------------------------------------------------------------------------


def evaluate(cfg: Config, m: dict[str, Any]) -> list[ClaimResult]:
    """The claims judged from the measurements (pure and fast; :func:`simulate` draws the same structure).

    ``m``: ``errors`` (every computed Hessian's relative error in machine epsilons), ``crashes``
    (failures that were neither out of memory nor out of time, described), ``peers`` (the
    frameworks compared) and ``largest``: per problem measured, at the largest ``n``,
    ``tensorcalc`` and ``closed-form`` (per-call seconds, interleaved, or tensorcalc's failure as
    a string) and ``peers`` (framework -> per-call seconds, or its failure as a string).
    """
    correct = _judge_correct(m)
    speed = [_judge_speed(p, m) for p in bench.PROBLEMS]
    parity = _judge_parity(m)
    if correct.outcome != "reproduced":
        parity = ClaimResult(parity.claim, parity.estimate, "not_tested",
                             f"prerequisite 'hessians-correct' not reproduced ({correct.outcome}: {correct.reason})")
    return gated([correct, *speed, parity], correct)


def _judge_correct(m: dict[str, Any]) -> ClaimResult:
    c = _BY_ID["hessians-correct"]
    if m["crashes"]:
        return c.judge(None, reason="not every system produced a Hessian: " + "; ".join(m["crashes"][:3]))
    errors = np.asarray(m["errors"], dtype=np.float64)
    if errors.size == 0:
        return c.judge(None, reason="no Hessian was computed")
    worst = float(errors.max())
    method = (f"largest of {errors.size} Hessians' relative errors against the closed form, in machine epsilons "
              f"(deterministic for one input; x/÷{ROUNDING_SPREAD:g} for the spread of rounding errors across inputs)")
    return c.judge(Estimate(worst, worst / ROUNDING_SPREAD, worst * ROUNDING_SPREAD, n=int(errors.size),
                            method=method, confidence=CONFIDENCE))


def _log_times(times: Any) -> np.ndarray:
    t = np.asarray(times, dtype=np.float64)
    return np.log(t[np.isfinite(t) & (t > 0)])


def speed_shares(at: dict[str, Any], frameworks: list[str]) -> dict[str, tuple[float, float, float]]:
    """Per framework, tensorcalc's time over its time (ratio of geometric means) with a Welch t
    interval at the Bonferroni level over the frameworks that finished: ``{fw: (share, low, high)}``;
    a framework that ran out of memory or time gives ``(0, 0, 0)`` (infinitely slow)."""
    finished = [f for f in frameworks if not isinstance(at["peers"].get(f), str)]
    level = bonferroni(CONFIDENCE, max(len(finished), 1))
    tc = _log_times(at["tensorcalc"])
    out: dict[str, tuple[float, float, float]] = {}
    for f in frameworks:
        if f in finished:
            d, lo, hi, _ = welch_t_interval(tc, _log_times(at["peers"][f]), level)
            out[f] = (math.exp(d), math.exp(lo), math.exp(hi))
        else:
            out[f] = (0.0, 0.0, 0.0)
    return out


def _judge_speed(problem: str, m: dict[str, Any]) -> ClaimResult:
    c = _BY_ID[SPEED_IDS[problem]]
    at = m["largest"].get(problem)
    if at is None:
        return c.judge(None, reason=f"{problem} was not measured (config key 'problems')")
    if isinstance(at["tensorcalc"], str):
        return c.judge(None, reason=f"tensorcalc failed at n={at['n']} ({at['tensorcalc']}): the budget cannot hold "
                                    "this Hessian, so neither can a framework's; raise mem_gb/timeout_s")
    frameworks = list(m["peers"])
    if not frameworks:
        return c.judge(None, reason="no framework is installed to compare with; pip install 'mlmyths[bench]'")
    crashed = [f"{f} ({at['peers'][f]})" for f in frameworks
               if isinstance(at["peers"].get(f), str) and not bench.exhausted({"error": at["peers"][f]})]
    if crashed:
        return c.judge(None, reason=f"at n={at['n']} these frameworks failed other than by memory or time: "
                                    + ", ".join(crashed))
    shares = speed_shares(at, frameworks)
    values, lows, highs = (np.array([s[i] for s in shares.values()]) for i in range(3))
    neg = simultaneous_min(-values, -highs, -lows)  # the largest share: the fastest framework
    value, low, high = -neg[0], -neg[2], -neg[1]
    fastest = max(shares, key=lambda f: shares[f][0])
    gone = [f for f in frameworks if isinstance(at["peers"].get(f), str)]
    calls = len(_log_times(at["tensorcalc"])) + sum(len(_log_times(at["peers"][f])) for f in frameworks if f not in gone)
    method = (f"n={at['n']}; fastest {fastest} (speed-up {1 / value:.3g}x)" if value > 0 else
              f"n={at['n']}; every framework ran out of memory or time") + (
        f"; out of memory/time, counted as infinitely slow: {', '.join(gone)}" if gone else "") + (
        f"; Welch t intervals of log times, Bonferroni over {len(frameworks) - len(gone)} framework(s)"
        if len(gone) < len(frameworks) else "")
    reason = "" if math.isfinite(low) else "too few timed evaluations for an interval"
    return c.judge(Estimate(value, low, high, n=calls, method=method, confidence=CONFIDENCE), reason=reason)


def parity_ratios(m: dict[str, Any]) -> dict[str, tuple[float, float, float]]:
    """Per problem with paired times, tensorcalc's time over the closed form's (ratio of geometric
    means) with a paired t interval at the Bonferroni level over those problems."""
    pairs = {p: at for p, at in m["largest"].items()
             if not isinstance(at["tensorcalc"], str) and not isinstance(at["closed-form"], str)}
    level = bonferroni(CONFIDENCE, max(len(pairs), 1))
    out = {}
    for p, at in pairs.items():
        tc, cf = np.asarray(at["tensorcalc"], dtype=np.float64), np.asarray(at["closed-form"], dtype=np.float64)
        k = min(len(tc), len(cf))
        d, lo, hi, _ = paired_t_interval(np.log(tc[:k]), np.log(cf[:k]), level)
        out[p] = (math.exp(d), math.exp(lo), math.exp(hi))
    return out


def _judge_parity(m: dict[str, Any]) -> ClaimResult:
    c = _BY_ID["closed-form-parity"]
    ratios = parity_ratios(m)
    if not ratios:
        return c.judge(None, reason="no problem has paired tensorcalc and closed-form times at its largest n")
    values, lows, highs = (np.array([r[i] for r in ratios.values()]) for i in range(3))
    neg = simultaneous_min(-values, -highs, -lows)
    worst = max(ratios, key=lambda p: ratios[p][0])
    method = (f"largest over {len(ratios)} problem(s) ({worst}: {ratios[worst][0]:.3g}x); paired t intervals of "
              "log ratios of interleaved calls, Bonferroni over the problems")
    n = sum(len(m["largest"][p]["tensorcalc"]) for p in ratios)
    reason = "" if math.isfinite(neg[1]) else "too few paired evaluations for an interval"
    return c.judge(Estimate(-neg[0], -neg[2], -neg[1], n=n, method=method, confidence=CONFIDENCE), reason=reason)


# -- calibration by simulation --------------------------------------------------------------------------

#: The frameworks a simulated run compares with: those the dev extra installs.
SIM_PEERS = ("jax", "torch.func", "torch.autograd")
#: sd of one timed call's log time: 0.06-0.37 for calls over 1 ms at n = 300 on the loaded 2-core machine
#: (2026-12-08; 0.5 for 0.1-ms calls, which the largest n does not have)
TIME_SD = 0.3
#: how much slower than the fastest the other simulated frameworks are (jax, torch.func, torch.autograd)
SIM_SPREAD = (1.0, 3.0, 10.0)
ERROR_SD = 0.3  #: sd of log10 of a Hessian's rounding error across inputs (a factor of 2)


def simulate(cfg: Config, truth: dict[str, float], rng: np.random.Generator) -> dict[str, Any]:
    """Measurements as :func:`evaluate` takes them, from true values of every claim's statistic, at
    ``cfg``'s sizes: ``repeats`` timed calls of tensorcalc and (interleaved) the closed form, and the
    fewest (``MIN_CALLS``) of each framework (slow at the largest n, they stop at ``max_time``)."""
    largest = {}
    for p in cfg.problems:
        tc = 0.01 * np.exp(TIME_SD * rng.standard_normal(cfg.repeats))
        cf = tc / truth["closed-form-parity"] * np.exp(TIME_SD * rng.standard_normal(cfg.repeats))
        share = truth[SPEED_IDS[p]]
        fw = {f: 0.01 / share * k * np.exp(TIME_SD * rng.standard_normal(MIN_CALLS))
              for f, k in zip(SIM_PEERS, SIM_SPREAD)}
        largest[p] = {"n": max(cfg.sizes), "tensorcalc": tc, "closed-form": cf, "peers": fw}
    hessians = len(cfg.problems) * len(cfg.sizes) * (2 + len(SIM_PEERS))
    errors = np.full(hessians, truth["hessians-correct"] / 100.0)
    errors[0] = truth["hessians-correct"] * 10 ** (ERROR_SD * rng.standard_normal())
    return {"errors": errors, "crashes": [], "peers": list(SIM_PEERS), "largest": largest}


# -- the measurements -------------------------------------------------------------------------------------


def measure_one(cfg: Config, problem: str, n: int, system: str, device: str, threads: int) -> dict[str, Any]:
    """One measurement in a child process (tensorcalc interleaved with the closed form)."""
    return bench.measure_isolated(problem, n, system, mem_gb=cfg.mem_gb, timeout_s=cfg.timeout_s,
                                  repeats=cfg.repeats, max_time=cfg.max_time, device=device, threads=threads,
                                  min_calls=MIN_CALLS, interleave="closed-form" if system == "tensorcalc" else None)


def measure_all(cfg: Config, ctx: RunContext, frameworks: list[str]) -> list[dict[str, Any]]:
    """Every (problem, n, system), one wave of tasks per n (smallest first)."""
    device = str(ctx.device)

    def run_wave(jobs: list[tuple[str, int, str]]) -> list[dict[str, Any]]:
        keys = {f"time-n{n}-{p}-{s}": (p, n, s) for p, n, s in jobs}
        done = ctx.map({k: (lambda job=job: measure_one(cfg, *job, device, ctx.threads)) for k, job in keys.items()})
        return [done[k] for k in keys]

    systems = ("tensorcalc", *frameworks, *(s for s in bench.FRAMEWORKS if s not in frameworks))
    return bench.grid(tuple(cfg.problems), cfg.sizes, systems, run_wave=run_wave, progress=ctx.log)


def expression_sizes(cfg: Config, ctx: RunContext) -> list[dict[str, Any]]:
    """Operations in each system's Hessian: one task, traced in one child process (a process's first
    torch.fx trace costs seconds; the others are cheap)."""
    return ctx.task("expression-sizes", lambda: bench.expression_sizes_isolated(
        tuple(cfg.problems), cfg.expression_n, timeout_s=cfg.timeout_s, mem_gb=cfg.mem_gb))


def _times_or_failure(row: dict[str, Any] | None) -> Any:
    if row is None:
        return "not measured"
    if row.get("error") or not row.get("times"):
        return str(row.get("error") or "no timed evaluation")
    return np.asarray(row["times"], dtype=np.float64)


def measurements(cfg: Config, rows: list[dict[str, Any]], frameworks: list[str]) -> dict[str, Any]:
    """What :func:`evaluate` judges, from the timing rows."""
    errors, crashes = [], []
    for r in rows:
        if r.get("rel_error") is not None and not r.get("error"):
            errors.append(float(r["rel_error"]) / float(r.get("eps") or np.finfo(np.float64).eps))
        elif r.get("error") and not bench.unavailable(r) and not bench.exhausted(r) \
                and not str(r["error"]).startswith("skipped: "):
            crashes.append(f"{r['system']} on {r['problem']} at n={r['n']}: {r['error']}")
    compared = [f for f in frameworks if not any(r["system"] == f and bench.unavailable(r) for r in rows)]
    n = max(cfg.sizes)
    largest = {}
    for p in cfg.problems:
        at = {r["system"]: r for r in rows if r["problem"] == p and r["n"] == n}
        largest[p] = {"n": n, "tensorcalc": _times_or_failure(at.get("tensorcalc")),
                      "closed-form": _times_or_failure(at.get("closed-form")),
                      "peers": {f: _times_or_failure(at.get(f)) for f in compared}}
    return {"errors": errors, "crashes": crashes, "peers": compared, "largest": largest}


# -- the experiment -------------------------------------------------------------------------------------


def plan(cfg: Config) -> list[Wave]:
    """One wave of measurements per size (each task: ``repeats`` timed Hessian evaluations and a first
    call, in a child process), probed by one tensorcalc Hessian of the logistic problem at that size
    (the frameworks take 10-1000x longer: a lower bound); then the expression sizes."""
    frameworks = peers()
    problem = "logistic" if "logistic" in cfg.problems else cfg.problems[0]
    waves = [Wave(f"Hessian measurements at n={n} (one child process each)", len(cfg.problems) * (1 + len(frameworks)),
                  cfg.repeats + 1, f"Hessian evaluations at n={n} (probe: tensorcalc's {problem} Hessian; the "
                  "frameworks' take 10-1000x longer)", key_prefix=f"time-n{n}-", probe=_probe(problem, n),
                  stage=stage) for stage, n in enumerate(sorted(cfg.sizes), start=1)]
    return waves + [Wave("expression sizes (one child process)", 1, len(cfg.problems),
                         "problems whose Hessians every system traces in three modes", key_prefix="expression-sizes",
                         stage=len(waves) + 1)]


def _probe(problem: str, n: int) -> Any:
    built: dict[str, Any] = {}

    def one(device: Any) -> None:
        key = str(device)
        if key not in built:
            built[key] = bench.build(problem, "tensorcalc", bench.make_inputs(problem, n), key)
        hess, sync = built[key]
        hess()
        sync()
    return one


def run(cfg: Config, ctx: RunContext) -> Result:
    frameworks = peers()
    missing = [s for s in bench.FRAMEWORKS if s not in frameworks]
    if missing:
        ctx.log(f"not installed (not compared): {', '.join(missing)}")
    rows = measure_all(cfg, ctx, frameworks)  # waves of measurements, one per n
    sizes = expression_sizes(cfg, ctx)  # then one task tracing every Hessian
    m = measurements(cfg, rows, frameworks)
    return _result(cfg, ctx, evaluate(cfg, m), rows, sizes, m, missing)


# -- tables, figures, summary -----------------------------------------------------------------------------


def _per_problem(cfg: Config, rows: list[dict[str, Any]], m: dict[str, Any]) -> list[dict[str, Any]]:
    ratios = parity_ratios(m)
    out = []
    for p, at in m["largest"].items():
        row: dict[str, Any] = {"problem": p, "n": at["n"]}
        tc = next((r for r in rows if r["problem"] == p and r["n"] == at["n"] and r["system"] == "tensorcalc"), {})
        row["tensorcalc_ms"] = None if tc.get("median_s") is None else 1e3 * tc["median_s"]
        shares = {} if isinstance(at["tensorcalc"], str) else speed_shares(at, m["peers"])
        finished = {f: s for f, s in shares.items() if s[0] > 0}
        if finished:
            f = max(finished, key=lambda k: finished[k][0])
            s = finished[f]
            row.update(fastest_framework=f, speedup=1 / s[0], speedup_low=1 / s[2], speedup_high=1 / s[1])
        else:
            row.update(fastest_framework=None, speedup=None, speedup_low=None, speedup_high=None)
        row["out_of_memory_or_time"] = ", ".join(f"{f} ({at['peers'][f]})" for f in m["peers"]
                                                  if isinstance(at["peers"].get(f), str)) or None
        r = ratios.get(p)
        row.update(over_closed_form=r[0] if r else None, over_closed_form_low=r[1] if r else None,
                   over_closed_form_high=r[2] if r else None)
        out.append(row)
    return out


def _result(cfg: Config, ctx: RunContext, results: list[ClaimResult], rows: list[dict[str, Any]],
            sizes: list[dict[str, Any]], m: dict[str, Any], missing: list[str]) -> Result:
    per_problem = _per_problem(cfg, rows, m)
    metrics: dict[str, Any] = {"frameworks_compared": len(m["peers"]),
                               "largest_error_eps": max(m["errors"]) if m["errors"] else None}
    for row in per_problem:
        p = row["problem"]
        metrics.update({f"{p}_n": row["n"], f"{p}_tensorcalc_ms": row["tensorcalc_ms"],
                        f"{p}_speedup": row["speedup"], f"{p}_speedup_low": row["speedup_low"],
                        f"{p}_over_closed_form": row["over_closed_form"]})
    for r in sizes:
        metrics[f"{r['problem']}_ops_{r['system']}_{r['mode']}"] = r["operations"]
    timing = [{k: r.get(k) for k in ("problem", "n", "system", "median_s", "ratio", "calls", "setup_s",
                                     "first_call_s", "peak_mb", "output_mb", "rel_error", "error")} for r in rows]
    figures = [_time_figure(ctx, rows, cfg), _size_figure(ctx, sizes, cfg)]
    return Result(claims=results, summary=_summary(results, per_problem, sizes, cfg, missing), metrics=metrics,
                  tables={"per_problem": per_problem, "timings": timing, "expression_sizes": sizes},
                  figures=figures, notes=_notes(cfg, ctx, m, missing), differences=_differences(cfg, ctx, m))


def _summary(results: list[ClaimResult], per_problem: list[dict[str, Any]], sizes: list[dict[str, Any]],
             cfg: Config, missing: list[str]) -> str:
    out = {r.claim.id: r for r in results}
    parts = []
    for row in per_problem:
        p = row["problem"]
        if row["tensorcalc_ms"] is None:
            parts.append(f"{p}: tensorcalc failed ({out[SPEED_IDS[p]].outcome}).")
            continue
        vs = (f"speed-up over the fastest framework ({row['fastest_framework']}) {row['speedup']:.3g}x "
              f"[{row['speedup_low']:.3g}, {row['speedup_high']:.3g}]" if row["fastest_framework"]
              else "every framework ran out of memory or time")
        closed = (f", {row['over_closed_form']:.2f}x the hand-written closed form"
                  if row["over_closed_form"] is not None else "")
        parts.append(f"{p} (n = {row['n']}): tensorcalc {row['tensorcalc_ms']:.3g} ms{closed}; {vs} -> "
                     f"{out[SPEED_IDS[p]].outcome}.")
    parts.append(f"Hessians agree with the closed forms: {out['hessians-correct'].outcome}; tensorcalc as fast as the "
                 f"closed form (within 1.5x): {out['closed-form-parity'].outcome}.")
    by = {(r["problem"], r["system"], r["mode"]): r["operations"] for r in sizes}
    for problem in cfg.problems:
        text = f"{problem} Hessian size (forward/reverse): tensorcalc {by.get((problem, 'tensorcalc', 'forward'))}/" \
               f"{by.get((problem, 'tensorcalc', 'reverse'))} nodes"
        for system, unit in (("jax", "jaxpr equations"), ("torch.func", "torch.fx nodes")):
            if (problem, system, "forward") in by:
                text += f", {system} {by[(problem, system, 'forward')]}/{by[(problem, system, 'reverse')]} {unit}"
        parts.append(text + ".")
    if missing:
        parts.append(f"Not installed: {', '.join(missing)}.")
    return " ".join(parts)


def _notes(cfg: Config, ctx: RunContext, m: dict[str, Any], missing: list[str]) -> list[str]:
    device = str(ctx.device)
    notes = [
        f"Timings on {device} ({'float64' if device == 'cpu' else 'float32'}); every measurement in its own child "
        f"process (forked from a server that imported the frameworks once), at most {cfg.mem_gb:g} GiB of address "
        f"space above that and {cfg.timeout_s:g} s; threads per library: {ctx.threads or 'library default'}. "
        f"{MIN_CALLS} to {cfg.repeats} timed evaluations per measurement (at most {cfg.max_time:g} s beyond the "
        f"first {MIN_CALLS}); set-up and the first (compiling) call are reported apart, never in the claims.",
        "A framework that ran out of memory or time counts as infinitely slow: its time share is 0, so it never "
        "is the fastest; a system that failed at one n is not run at larger n (recorded as skipped). A failure "
        "of another kind (an exception) is a failure of the comparison: the prerequisite claim is then not "
        "tested and the key claims with it.",
        "ratio (timings table) = system time / tensorcalc time at the same problem and n (> 1: tensorcalc faster). "
        "The claims' intervals are over timed evaluations within one process per measurement: they leave out "
        "the drift between processes on a shared machine.",
        "Expression sizes count operations: tensorcalc DAG nodes (inputs not counted), jaxpr equations, "
        "torch.fx call nodes (make_fx). forward = forward over forward, reverse = reverse over reverse, "
        "mixed = forward over reverse (jax.hessian, torch.func.hessian; tensorcalc's automatic choice).",
    ]
    if missing:
        notes.append(f"Not installed, so not compared: {', '.join(missing)} (pip install 'mlmyths[bench]').")
    if ctx.executor.parallel:
        notes.append(f"Measurements ran side by side ({ctx.executor.describe()}): their timings include the "
                     "contention between them; one worker gives cleaner numbers.")
    return notes


def _differences(cfg: Config, ctx: RunContext, m: dict[str, Any]) -> list[str]:
    out = [
        f"Peers: {', '.join(m['peers']) or 'none'} (those installed here). The paper compared TensorFlow, Theano, "
        "PyTorch and HIPS autograd (2018 versions); jax's jit-compiled jax.hessian and torch.func.hessian did not "
        "exist in that form, Theano is discontinued and not measured.",
        "tensorcalc is this package's implementation of the paper's method (differentiation in index notation, "
        "compiled to NumPy/PyTorch), not the authors' code.",
        f"Hardware and sizes: this machine ({ctx.device}), n in {', '.join(map(str, sorted(cfg.sizes)))}; the paper "
        "plots running time against n for its own CPU and GPU (Fig. 3). The claims compare at the largest n only.",
        "The paper's speed-ups are read off log-scale curves and its abstract ('up to two orders of magnitude' on the "
        "CPU); the claims test the weakest reading, one order of magnitude, as a ratio of geometric-mean times with "
        "an interval, and count frameworks that ran out of memory or time as infinitely slow.",
        "The comparison with the hand-written closed form and the check of every Hessian against it are ours; the "
        "paper reports neither as a number.",
    ]
    if max(cfg.sizes) < 50:
        out.append(f"Sizes up to n = {max(cfg.sizes)} only (a rehearsal of the paper preset): the timings say nothing "
                   "about the paper's sizes.")
    return out


def _time_figure(ctx: RunContext, rows: list[dict[str, Any]], cfg: Config) -> str:
    fig, axes = plots.new_figure(1, len(cfg.problems), width=4.2, squeeze=False)
    systems = list(dict.fromkeys(r["system"] for r in rows))
    for ax, problem in zip(axes[0], cfg.problems):
        for k, system in enumerate(systems):
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
        for k, system in enumerate(systems):  # x at the top: failed (out of memory or time)
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
        width = 0.8 / len(modes)
        for j, mode in enumerate(modes):
            vals = [next((r["operations"] for r in sizes if r["problem"] == problem and r["system"] == s
                          and r["mode"] == mode), 0) for s in systems]
            ax.bar(np.arange(len(systems)) + (j - 1) * width, vals, width=width, label=mode, color=plots.CYCLE[j])
        ax.set_xticks(np.arange(len(systems)), systems, fontsize=7)
        ax.set_title(bench.PROBLEM_SPECS[problem].title, fontsize=9)
        ax.set_ylabel("operations in the Hessian")
        ax.legend(fontsize=6)
    return ctx.save_figure(fig, "expression_size")
