"""One contract for every registered experiment (docs/DEVELOPING.md, "Writing an experiment").

Parametrised over the registry, so a new myth is checked for free: the module declares its
claims and calibration, every config field is typed and documented, every field rejects a bad
value in ``__post_init__`` (one path for the CLI, ``--set``, ``--resume`` and library callers),
the config recorded is resolved (no ``auto`` left), ``run()`` is short enough to read, and the
``paper`` preset runs end to end on the CPU on synthetic data of the paper's shapes.
"""
from __future__ import annotations

import dataclasses
import inspect
import io
import tokenize
import typing
from typing import Any, Literal

import pytest

from mlmyths import claims, config, myths, runs
from mlmyths.errors import ConfigError
from mlmyths.records import Headline, read_record

MYTH_IDS = list(myths.MYTHS)
MAX_RUN_LINES = 40


@pytest.mark.parametrize("myth_id", MYTH_IDS)
def test_module_declares_claims_calibration_and_the_three_functions(myth_id):
    m = myths.load(myth_id)
    assert isinstance(m.CLAIM, Headline)
    assert all(isinstance(c, claims.Claim) for c in m.CLAIMS)
    claims.check_claims(m.CLAIMS)
    ids = {c.id for c in m.CLAIMS}
    assert set(m.CALIBRATION) == {"paper", "other"}
    for scenario, truth in m.CALIBRATION.items():
        assert set(truth) == ids, (scenario, set(truth) ^ ids)
    for name in ("config", "run", "evaluate", "simulate", "rehearsal", "plan"):
        assert callable(getattr(m, name)), name
    assert set(m.SCALES) == set(config.SCALES)
    assert "threshold" not in {f.name for f in dataclasses.fields(m.Config)}  # thresholds live in CLAIMS only


@pytest.mark.parametrize("myth_id", MYTH_IDS)
@pytest.mark.parametrize("scale", config.SCALES)
def test_config_builds_resolved_and_frozen(myth_id, scale):
    m = myths.load(myth_id)
    cfg = m.config(scale)
    assert dataclasses.is_dataclass(cfg) and type(cfg).__dataclass_params__.frozen
    unresolved = [f.name for f in dataclasses.fields(cfg) if getattr(cfg, f.name) == "auto"]
    assert not unresolved, f"config() must resolve 'auto' so the record says what ran: {unresolved}"
    assert m.config(scale, **config.to_dict(cfg)) == cfg  # what --resume rebuilds from config.json


def _field_comments(cls: type) -> dict[str, str]:
    """Field name -> the comment on its line in the class source."""
    source = inspect.getsource(cls)
    comments: dict[str, str] = {}
    lines = source.splitlines()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            line = lines[tok.start[0] - 1].strip()
            name = line.split(":", 1)[0].strip()
            if name.isidentifier():
                comments[name] = tok.string.lstrip("#:").strip()
    return comments


@pytest.mark.parametrize("myth_id", MYTH_IDS)
def test_every_field_is_documented(myth_id):
    m = myths.load(myth_id)
    comments = _field_comments(m.Config)
    missing = [f.name for f in dataclasses.fields(m.Config) if len(comments.get(f.name, "")) < 8]
    assert not missing, f"fields without a comment saying what they are: {missing}"


def _bad_value(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "no-such-choice"
    if origin is tuple:
        inner = typing.get_args(tp)[0]
        return (_bad_value(inner),)
    if tp is bool:
        return "yes"  # a string where a bool belongs
    if tp is int:
        return -(10 ** 9)
    if tp is float:
        return float("nan")
    if tp is str:
        return "no-such-choice"
    if typing.get_origin(tp) is typing.Union or isinstance(tp, type(int | None)):
        return _bad_value(next(a for a in typing.get_args(tp) if a is not type(None)))
    raise AssertionError(f"no bad value for {tp!r}")


@pytest.mark.parametrize("myth_id", MYTH_IDS)
def test_a_bad_value_of_each_field_is_rejected_in_post_init(myth_id):
    m = myths.load(myth_id)
    cfg = m.config("small")
    hints = typing.get_type_hints(m.Config)
    overrides: dict[str, Any] = getattr(m, "BAD_VALUES", {})
    accepted = []
    for f in dataclasses.fields(cfg):
        bad = overrides.get(f.name, _bad_value(hints[f.name]))
        try:
            dataclasses.replace(cfg, **{f.name: bad})
        except ConfigError as exc:
            assert f.name in str(exc), (f.name, str(exc))  # the message names the key
        else:
            accepted.append((f.name, bad))
    assert not accepted, f"{myth_id}: Config accepted bad values {accepted}"


@pytest.mark.parametrize("myth_id", MYTH_IDS)
@pytest.mark.parametrize("scale", config.SCALES)
def test_plan_counts_tasks_without_running_anything(myth_id, scale):
    from mlmyths.myths.planning import Wave

    waves = myths.load(myth_id).plan(myths.load(myth_id).config(scale))
    assert waves and all(isinstance(w, Wave) for w in waves)
    assert all(w.tasks >= 0 and w.units_per_task >= 0 and w.key_prefix for w in waves)
    assert sum(w.tasks for w in waves) > 0


@pytest.mark.parametrize("myth_id", MYTH_IDS)
def test_run_is_short_enough_to_read(myth_id):
    m = myths.load(myth_id)
    lines = [ln for ln in inspect.getsource(m.run).splitlines() if ln.strip()]
    assert len(lines) <= MAX_RUN_LINES, f"run() has {len(lines)} lines; split it like fixup's (train_variant, _result)"


@pytest.mark.slow
@pytest.mark.parametrize("myth_id", MYTH_IDS)
def test_paper_preset_rehearses_end_to_end_on_cpu(myth_id, tmp_path):
    """The paper preset's code paths, shapes and model, on synthetic data and a few steps."""
    m = myths.load(myth_id)
    paper = m.config("paper")
    cfg = m.rehearsal(paper)
    assert type(cfg) is type(paper)
    record = runs.execute(myth_id, m, cfg, out=tmp_path, scale="paper", device="cpu", threads=1)
    assert record["status"] == "completed", record["error"]
    on_disk = read_record(tmp_path / myth_id / record["run_id"] / "results.json")
    assert {c["id"] for c in on_disk["claims"]} == {c.id for c in m.CLAIMS}
    assert on_disk["differences"], "a rehearsal must say how it differs from the paper"
