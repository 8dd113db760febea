"""The ``mlmyths`` command line: parse, dispatch, print. No logic of its own.

    mlmyths list
    mlmyths run ID|all [--scale smoke|small|paper] [--dataset NAME] [--device auto|cpu|cuda] [--threads N]
                       [--seed N] [--out DIR] [--set key=value ...] [--resume] [--quiet]
    mlmyths plan ID|all [--scale S] [--device D] [--workers N] [--threads N] [--set key=value ...] [--no-probe]
    mlmyths report [DIR]
    mlmyths derive EXPR --wrt VAR [--order K] [--var NAME=KIND ...] [--code numpy|torch|jax]
    mlmyths data list | where NAME | fetch NAME

User errors print one line on stderr and exit with status 2; a failed run exits 1; Ctrl-C
(SIGINT) or SIGTERM exit 130 after recording the run as ``interrupted`` (``--resume`` continues).
SIGINT that arrives *ignored* (a background job, ``nohup``) stays ignored, as such a job asks;
SIGTERM still stops it.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from mlmyths import __version__
from mlmyths.errors import ConfigError, UserError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="mlmyths", description="Seven myths of machine-learning research, put to the test.")
    p.add_argument("--version", action="version", version=f"mlmyths {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sub.add_parser("list", help="the seven myths and their studies")

    r = sub.add_parser("run", help="run one experiment (or all) and write its report")
    r.add_argument("myth", help="myth id (see `mlmyths list`) or 'all'")
    r.add_argument("--scale", choices=("smoke", "small", "paper"), default=None,
                   help="smoke: seconds; small (default): minutes on a laptop CPU; paper: the paper's setup")
    r.add_argument("--dataset", help="dataset for experiments that take one (see `mlmyths data list`)")
    r.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    r.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads for torch and BLAS, per worker (default: the libraries' choice; 1 suits small "
                        "models; the same --threads gives the same numbers whatever runs the tasks)")
    r.add_argument("--workers", type=int, default=1, metavar="N",
                   help="run each wave's independent tasks in N local worker processes (default 1: in this process)")
    r.add_argument("--ray", metavar="ADDRESS", default=None,
                   help="run the tasks on a Ray cluster: HOST:PORT of its head, 'auto' ($RAY_ADDRESS) or 'local' "
                        "(a private local Ray); needs `pip install mlmyths[ray]`")
    r.add_argument("--retries", type=int, default=2, metavar="N",
                   help="times a task is run again when its worker dies (default 2)")
    r.add_argument("--seed", type=int, default=None, help="base seed (default 0)")
    r.add_argument("--out", type=Path, default=Path("runs"), help="runs directory (default: runs/)")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field (repeatable); with 'all', KEY may be MYTH.KEY")
    r.add_argument("--resume", action="store_true", help="continue the newest unfinished run of this myth")
    r.add_argument("--quiet", action="store_true", help="no progress or log lines on stderr")

    pl = sub.add_parser("plan", help="an experiment's waves of tasks and their measured cost, before running")
    pl.add_argument("myth", help="myth id (see `mlmyths list`) or 'all'")
    pl.add_argument("--scale", choices=("smoke", "small", "paper"), default="small")
    pl.add_argument("--dataset", help="dataset for experiments that take one")
    pl.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="device the probes run on")
    pl.add_argument("--workers", type=int, default=1, metavar="N", help="parallel workers for the wall-time estimate")
    pl.add_argument("--threads", type=int, default=None, metavar="N",
                    help="CPU threads for the probes (as `mlmyths run --threads`; default: the libraries' choice)")
    pl.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    pl.add_argument("--no-probe", action="store_true", help="count the work only; time nothing")
    pl.add_argument("--out", type=Path, default=Path("runs"),
                    help="runs directory whose finished runs' task durations inform the estimate (default: runs/)")

    rep = sub.add_parser("report", help="render index.html and summary.md over a runs directory")
    rep.add_argument("dir", nargs="?", type=Path, default=Path("runs"))

    d = sub.add_parser("derive", help="differentiate a matrix/tensor expression (tensor calculus)")
    d.add_argument("expression", help="e.g. \"x'*A*x\"")
    d.add_argument("--wrt", required=True, help="variable to differentiate with respect to")
    d.add_argument("--order", type=int, default=1)
    d.add_argument("--var", action="append", default=[], metavar="NAME=KIND",
                   help="declare a variable: scalar, vector, matrix, or dimension names like n,m")
    d.add_argument("--code", choices=("numpy", "torch", "jax"), help="also print the generated function")

    data = sub.add_parser("data", help="datasets: what is available locally and how to get the rest")
    dsub = data.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    dsub.add_parser("list", help="all datasets and where they were found")
    w = dsub.add_parser("where", help="the directory a dataset is read from")
    w.add_argument("name")
    f = dsub.add_parser("fetch", help="download a dataset into the user cache (verified by SHA-256)")
    f.add_argument("name")
    return p


def _sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    previous = signal.signal(signal.SIGTERM, _sigterm)  # from the first moment, SIGTERM is Ctrl-C
    try:
        args = build_parser().parse_args(argv)
        return _COMMANDS[args.command](args)
    except UserError as exc:
        sys.stderr.write(f"mlmyths: error: {_one_line(exc)}\n")
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        run_dir = getattr(exc, "run_dir", None)
        if run_dir is not None:
            sys.stderr.write(f"mlmyths: interrupted; what finished is saved in {run_dir} "
                             "(`mlmyths run ID --resume` continues)\n")
        else:
            sys.stderr.write("mlmyths: interrupted\n")
        return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


# -- list ------------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from mlmyths import myths

    table = Table(title="Seven myths of machine-learning research (Chang 2019)", show_lines=True)
    for col in ("id", "myth", "study"):
        table.add_column(col, overflow="fold")
    for info in myths.MYTHS.values():
        table.add_row(info.id, info.myth, info.paper)
    Console(width=140 if not sys.stdout.isatty() else None).print(table)
    return EXIT_OK


# -- run -------------------------------------------------------------------------------------


def _split_overrides(items: list[str], myth_ids: list[str]) -> dict[str | None, dict[str, str]]:
    """``--set`` items grouped by target myth (None: every myth whose config has the key)."""
    from mlmyths.config import parse_assignments

    grouped: dict[str | None, dict[str, str]] = {}
    for key, value in parse_assignments(items).items():
        prefix, dot, rest = key.partition(".")
        target = prefix if dot and prefix in myth_ids else None
        grouped.setdefault(target, {})[rest if target else key] = value
    return grouped


def _config_for(myth_id: str, module: Any, scale: str, dataset: str | None,
                grouped: dict[str | None, dict[str, str]], strict_shared: bool) -> Any:
    import dataclasses

    base = module.config(scale)
    names = {f.name for f in dataclasses.fields(base)}
    overrides: dict[str, Any] = {}
    if dataset is not None:
        if "dataset" not in names:
            if strict_shared:
                raise ConfigError(f"myth {myth_id!r} takes no --dataset")
        else:
            overrides["dataset"] = dataset
    shared = grouped.get(None, {})
    overrides.update(shared if strict_shared else {k: v for k, v in shared.items() if k in names})
    overrides.update(grouped.get(myth_id, {}))
    return module.config(scale, **overrides)


def cmd_run(args: argparse.Namespace) -> int:
    from mlmyths import myths, report, runs

    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be at least 1, got {args.threads}")
    if args.workers < 1:
        raise UserError(f"--workers must be at least 1, got {args.workers}")
    if args.retries < 0:
        raise UserError(f"--retries must be at least 0, got {args.retries}")
    if args.threads is None and (args.workers > 1 or args.ray):  # share the cores, don't oversubscribe
        args.threads = 1 if args.ray else max(1, (os.cpu_count() or 1) // args.workers)
    if args.myth == "all":
        ids = list(myths.MYTHS)
        if args.resume:
            raise UserError("--resume takes one myth id, not 'all'")
    else:
        myths.info(args.myth)  # unknown id -> user error
        ids = [args.myth]
    grouped = _split_overrides(args.overrides, list(myths.MYTHS))
    if args.myth == "all" and grouped.get(None):
        # a shared key must exist in at least one experiment's config
        import dataclasses

        known = set()
        for m in ids:
            known |= {f.name for f in dataclasses.fields(myths.load(m).config("smoke"))}
        unknown = sorted(set(grouped[None]) - known)
        if unknown:
            raise ConfigError(f"unknown config key {unknown[0]!r}: no experiment has it")

    # Build every config first, so that a bad value fails before anything runs.
    plan = []
    for myth_id in ids:
        module = myths.load(myth_id)
        if args.resume:
            run_dir = runs.find_resumable(args.out, myth_id)
            if run_dir is None:
                raise UserError(f"no unfinished run of {myth_id!r} under {args.out} to resume")
            if args.overrides or args.dataset or args.scale or args.seed is not None:
                raise UserError("--resume continues a run with its saved config, scale and seed; "
                                "drop --set/--dataset/--scale/--seed")
            saved = runs.load_saved_config(run_dir)
            try:
                cfg = module.config(saved["scale"], **saved["config"])
            except UserError as exc:
                raise UserError(f"cannot resume {run_dir}: its saved config is not valid ({exc})") from None
            threads = args.threads if args.threads is not None else int(saved.get("threads") or 0)
            plan.append((myth_id, module, cfg, saved["scale"], int(saved["seed"]), threads, run_dir))
        else:
            scale = args.scale or "small"
            cfg = _config_for(myth_id, module, scale, args.dataset, grouped, strict_shared=args.myth != "all")
            plan.append((myth_id, module, cfg, scale, args.seed or 0, args.threads or 0, None))

    from mlmyths import executors

    executor = executors.create(workers=args.workers, ray=args.ray, threads=args.threads or 0, retries=args.retries)
    try:
        status = _run_plan(args, plan, executor)
    finally:
        executor.close()
    if args.myth == "all":
        summary, index, _ = report.write_summary(args.out, myths.sentences())
        print(f"report: {index}\nsummary: {summary}")
    return status


def _run_plan(args: argparse.Namespace, plan: list[tuple[Any, ...]], executor: Any) -> int:
    from mlmyths import report, runs

    status = EXIT_OK
    for myth_id, module, cfg, scale, seed, threads, resume_dir in plan:
        echo = None if args.quiet else _echo_for(myth_id)
        try:
            record = runs.execute(myth_id, module, cfg, out=args.out, seed=seed, scale=scale, device=args.device,
                                  threads=threads, resume_dir=resume_dir, echo=echo,
                                  interactive=None if not args.quiet else False, on_record=report.write_run_report,
                                  executor=executor)
        except UserError as exc:
            if args.myth != "all":
                raise
            # one myth's bad input (e.g. its data missing offline) must not cost the others
            sys.stderr.write(f"mlmyths: error: {myth_id}: {exc}\n")
            status = EXIT_USAGE
            continue
        run_dir = args.out / myth_id / record["run_id"]
        if record["status"] == "completed":
            v = record["verdict"]
            print(f"{myth_id}: {v['outcome'].upper()} — {v['reason']}\n  report: {run_dir / 'report.md'}")
        else:
            status = EXIT_FAILED
            sys.stderr.write(f"mlmyths: {myth_id} {record['status']}: {record['error']} (log: {run_dir / 'log.txt'})\n")
    return status


def _echo_for(myth_id: str) -> Any:
    def echo(message: str) -> None:
        sys.stderr.write(f"[{myth_id}] {message}\n")
        sys.stderr.flush()

    return echo


# -- plan ------------------------------------------------------------------------------------


def cmd_plan(args: argparse.Namespace) -> int:
    from mlmyths import env, myths
    from mlmyths.myths import planning

    if args.workers < 1:
        raise UserError(f"--workers must be at least 1, got {args.workers}")
    ids = list(myths.MYTHS) if args.myth == "all" else [myths.info(args.myth).id]
    grouped = _split_overrides(args.overrides, list(myths.MYTHS))
    if args.no_probe and args.device.startswith("cuda"):
        import torch  # planning a GPU run from a machine without one: nothing runs on the device

        device, where = torch.device(args.device), f"{args.device} (not probed: --no-probe)"
    else:
        device = env.resolve_device(args.device)
        where = env.describe_device(device) + (" (not probed: --no-probe)" if args.no_probe else "")
    configs = [(m, myths.load(m)) for m in ids]
    configs = [(m, module, _config_for(m, module, args.scale, args.dataset, grouped, strict_shared=len(ids) == 1))
               for m, module in configs]
    from mlmyths import report

    finished = [r for _, r in report.collect(args.out)[0] if r.get("status") == "completed"] if args.out.is_dir() else []
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be at least 1, got {args.threads}")
    for myth_id, module, cfg in configs:
        history = [r for r in finished if r["myth"] == myth_id and r.get("scale") == args.scale]
        with env.limit_threads(args.threads or 0):
            rows = planning.estimate(module.plan(cfg), device, probe=not args.no_probe, history=history)
        print(planning.render(myth_id, args.scale, where, rows, args.workers) + "\n")
    return EXIT_OK


# -- report ----------------------------------------------------------------------------------


def cmd_report(args: argparse.Namespace) -> int:
    from mlmyths import myths, report

    if not args.dir.is_dir():
        raise UserError(f"runs directory {str(args.dir)!r} does not exist; run `mlmyths run ...` first")
    good, bad = report.collect(args.dir)
    for path, why in bad:
        sys.stderr.write(f"mlmyths: skipped {path}: {why}\n")
    if not good:
        raise UserError(f"no readable runs under {str(args.dir)!r} (expected DIR/MYTH/RUN_ID/results.json)")
    try:
        summary, index, _ = report.write_summary(args.dir, myths.sentences())
    except OSError as exc:
        raise UserError(f"cannot write the report into {args.dir}: {exc.strerror or exc}") from None
    print(f"{len(good)} run(s)\nreport: {index}\nsummary: {summary}")
    return EXIT_OK


# -- derive ----------------------------------------------------------------------------------


def _parse_var(item: str) -> tuple[str, Any]:
    from mlmyths.tensorcalc.ir import check_name
    from mlmyths.tensorcalc.parse import kind_from_text

    name, sep, kind = item.partition("=")
    if not sep or not name.strip() or not kind.strip():
        raise UserError(f"--var expects NAME=KIND (scalar, vector, matrix or dimension names like n,m), got {item!r}")
    name = check_name(name.strip(), f"--var {item!r}: the variable name")
    return name, kind_from_text(kind, f"--var {item!r}")


def cmd_derive(args: argparse.Namespace) -> int:
    from mlmyths import tensorcalc as tc

    if not 1 <= args.order <= 20:  # a k-th derivative has rank >= k: beyond 20 nothing can hold it
        raise UserError(f"--order must be between 1 and 20, got {args.order}")
    kinds = dict(_parse_var(v) for v in args.var)
    f = tc.parse(args.expression, **kinds)
    derivative = tc.derivative(f, args.wrt, order=args.order)
    print(tc.to_string(derivative))
    if args.code:
        print()
        print(tc.source(derivative, backend=args.code))
    return EXIT_OK


# -- data ------------------------------------------------------------------------------------


def cmd_data(args: argparse.Namespace) -> int:
    from mlmyths import data

    if args.data_command == "list":
        from rich.console import Console
        from rich.table import Table

        table = Table(title="Datasets (search: $MLMYTHS_DATA, user cache, system copies, download)")
        for col in ("name", "kind", "available", "description / how to get it"):
            table.add_column(col, overflow="fold")
        for name, s in data.DATASETS.items():
            found = data.find(name)
            where = f"{found[0]}: {found[1]}" if found else "no"
            text = s.description if found else f"{s.description}. {s.install_hint}"
            table.add_row(name, s.kind, where, text)
        Console(width=160 if not sys.stdout.isatty() else None).print(table)
        print("Image datasets also come pixel-permuted as permuted-NAME (e.g. permuted-mnist).")
        return EXIT_OK
    if args.data_command == "where":
        found = data.find(args.name)
        if found is None:
            raise UserError(data.missing_message(args.name))
        print(found[1])
        return EXIT_OK
    path = data.fetch(args.name, report=lambda m: sys.stderr.write(m + "\n"))
    print(path)
    return EXIT_OK


_COMMANDS = {"list": cmd_list, "run": cmd_run, "plan": cmd_plan, "report": cmd_report, "derive": cmd_derive,
             "data": cmd_data}
