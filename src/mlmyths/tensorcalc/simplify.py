"""Smart constructors: every node is built here, already simplified and canonical.

Derivatives in tensor calculus stay compact only if the expression is simplified as
it is built (Laue et al., NeurIPS 2018, Sec. 4; AAAI 2020, Sec. 3). The rules:

- **delta contraction by index renaming**: in a product, ``δ[a, b]`` with ``b`` not
  kept in the output is removed by renaming ``b`` to ``a`` everywhere
  (``A[i, j] δ[j, k] -> A[i, k]``); a delta whose two labels are both kept stays as
  a structural factor, pulled to the top of the product next to one delta-free
  *core* (``δ[a, p] ⊗ (2VᵀV)[c, q]``), which code generation writes into a strided
  diagonal view instead of multiplying by a dense identity;
- **zero/one folding**: a zero operand makes the product zero, constant operands move
  into the coefficient, all-ones operands whose labels are covered elsewhere vanish;
- **flattening** of nested elementwise/broadcasting products (no summed label), so
  that chains of diagonal scalings ``diag(a) diag(b) X`` become one product with the
  scaling factors side by side; repeated factors become powers (``e .* e -> e.^2``);
- **like-term merging** in linear combinations (equal terms add their coefficients)
  and **factoring**: terms equal up to one operand become one product of a sum
  (``A*x + A*y -> A*(x + y)``), and elementwise-scaled copies of one tensor share it
  (``diag(a)*X + diag(b)*X -> diag(a + b)*X``). This keeps the logistic-regression
  Hessian one scaled product ``Xᵀ diag(v) X``;
- **canonical order** of operands and labels, so that structurally equal expressions
  are the same interned node and shared subexpressions form a DAG.

>>> from mlmyths import tensorcalc as tc
>>> A = tc.matrix("A", "n", "n")
>>> tc.to_string(A.T.T + A - 2 * A)
'0'
"""
from __future__ import annotations

import hashlib
import itertools
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mlmyths.errors import UserError
from mlmyths.tensorcalc.ir import (
    MATRIX_FUNCTIONS,
    UNARY_FUNCTIONS,
    Apply,
    Const,
    Delta,
    Dim,
    Expr,
    Lin,
    MatFn,
    Pow,
    Product,
    Shape,
    ShapeError,
    Var,
    shape_text,
    topological,
)

# -- leaves ----------------------------------------------------------------------------------


def var(name: str, shape: Shape) -> Var:
    return Var.make(name, tuple(shape))


def const(value: float, shape: Shape = ()) -> Const:
    return Const.make(value, tuple(shape))


def zero(shape: Shape) -> Const:
    return Const.make(0.0, tuple(shape))


def delta(dims: Shape) -> Expr:
    """The identity tensor of shape ``dims + dims`` (the scalar 1 for ``dims == ()``)."""
    dims = tuple(dims)
    return Delta.make(dims) if dims else Const.make(1.0, ())


def scaled(coef: float, node: Expr) -> Expr:
    """``coef * node`` (a one-term :class:`Lin`, the scaling node)."""
    return lin([(coef, node)], node.shape)


def is_zero(node: Expr) -> bool:
    return isinstance(node, Const) and node.value == 0.0


# -- linear combinations --------------------------------------------------------------------


def lin(terms: Iterable[tuple[float, Expr]], shape: Shape | None = None) -> Expr:
    """``Σ c_i t_i``, flattened, with like terms merged and common factors pulled out."""
    terms = [(float(c), t) for c, t in terms]
    if shape is None:
        if not terms:
            raise ValueError("lin() of no terms needs a shape")
        shape = terms[0][1].shape
    shape = tuple(shape)
    for _, t in terms:
        if t.shape != shape:
            raise ShapeError(f"cannot add tensors of shapes {shape_text(shape)} and {shape_text(t.shape)}")
    acc: dict[Expr, float] = {}
    const_total = 0.0

    def add(c: float, t: Expr) -> None:
        nonlocal const_total
        if c == 0.0:
            return
        if isinstance(t, Lin):
            for c2, t2 in t.terms:
                add(c * c2, t2)
        elif isinstance(t, Const):
            const_total += c * t.value
        else:
            acc[t] = acc.get(t, 0.0) + c

    for c, t in terms:
        add(c, t)
    items = [(c, t) for t, c in acc.items() if c != 0.0]
    if len(items) > 1:
        items = _factor(items)
    if const_total != 0.0:
        items.append((1.0, Const.make(const_total, shape)))
    if not items:
        return zero(shape)
    if len(items) == 1:
        c, t = items[0]
        if c == 1.0:
            return t
        if isinstance(t, Const):
            return Const.make(c * t.value, shape)
    items.sort(key=lambda ct: (ct[1].key, ct[0]))
    return Lin.make(tuple(items), shape)


_HOLE = "\x00hole"


def _template_key(keys: Sequence[str], patterns: Sequence[tuple[int, ...]], indices: Sequence[tuple[int, ...]],
                  output: tuple[int, ...]) -> bytes:
    """Digest of a product structure given by its operands' keys (one of them a hole)."""
    order = sorted(range(len(keys)), key=lambda k: (keys[k], patterns[k]))
    relabel = _relabeling(output, [indices[k] for k in order])
    parts = [(keys[k], tuple(relabel[label] for label in indices[k])) for k in order]
    return hashlib.blake2b(repr((parts, len(output))).encode(), digest_size=16).digest()


def _factor_keys(term: Product) -> list[tuple[bytes, Any]]:
    """Ways to write ``term`` as a template with one hole plus the operand that fills it:
    terms with the same template add up to the template filled with the sum of fillers."""
    out: list[tuple[bytes, Any]] = []
    ops, indices, output = list(term.operands), list(term.indices), term.output
    keys = [op.key for op in ops]
    patterns = [_pattern(idx, output) for idx in indices]
    # (A) one operand varies: A*x + A*y = A*(x + y)
    for p, op in enumerate(ops):
        if isinstance(op, Delta):
            continue
        holed = keys[:p] + [f"{_HOLE}{shape_text(op.shape)}"] + keys[p + 1:]
        key = b"A" + _template_key(holed, patterns, indices, output)
        out.append((key, ("A", p)))
    return out


def _filler(term: Product, how: Any) -> Expr:
    return term.operands[how[1]]


def _fill(term: Product, how: Any, filler: Expr) -> Expr:
    ops = list(term.operands)
    ops[how[1]] = filler
    return product(ops, term.indices, term.output)


_Factors = list[tuple[Expr, tuple[int, ...]]]


def _common_factor_split(ta: Product, tb: Product) -> tuple[int, _Factors, _Factors, _Factors, tuple[int, ...]] | None:
    """How ``F ⊙ G1`` and ``F ⊙ G2`` share factors F: (weight of F, F, G1, G2, the labels
    through which G1 and G2 touch F and the output), or None when they cannot merge.

    Factors are compared with their labels as stored (canonical: output labels first),
    so the common part means the same in both terms; the differing parts must touch
    the common part and the output through the same labels.
    """
    if ta.output != tb.output:
        return None
    fa = list(zip(ta.operands, ta.indices))
    rest_b: dict[tuple[Expr, tuple[int, ...]], int] = defaultdict(int)
    for f in zip(tb.operands, tb.indices):
        rest_b[f] += 1
    common, diff_a = [], []
    for f in fa:
        if rest_b.get(f, 0) > 0:
            rest_b[f] -= 1
            common.append(f)
        else:
            diff_a.append(f)
    diff_b = [f for f, count in rest_b.items() for _ in range(count)]
    if not common or not diff_a or not diff_b:
        return None
    if any(isinstance(op, Delta) for op, _ in diff_a + diff_b):
        return None  # a sum with delta terms would be distributed again by product()
    outside = set(ta.output) | {label for _, idx in common for label in idx}
    iface_a = {label for _, idx in diff_a for label in idx} & outside
    iface_b = {label for _, idx in diff_b for label in idx} & outside
    if iface_a != iface_b:
        return None
    dims_a, dims_b = ta.label_dims(), tb.label_dims()
    if any(dims_a[label] != dims_b[label] for label in iface_a):
        return None
    return sum(op.rank for op, _ in common), common, diff_a, diff_b, tuple(sorted(iface_a))


def _common_factor_merge(ca: float, ta: Product, cb: float, split: Any) -> Expr:
    """``c1 * (F ⊙ G1) + c2 * (F ⊙ G2) = F ⊙ (c1 * G1 + c2 * G2)`` (``split`` from
    :func:`_common_factor_split`)."""
    _, common, diff_a, diff_b, iface = split
    ga = product([op for op, _ in diff_a], [idx for _, idx in diff_a], iface)
    gb = product([op for op, _ in diff_b], [idx for _, idx in diff_b], iface)
    return product([op for op, _ in common] + [lin([(ca, ga), (cb, gb)])],
                   [idx for _, idx in common] + [iface], ta.output)


def _factor(items: list[tuple[float, Expr]]) -> list[tuple[float, Expr]]:
    """Merge terms that differ in one operand (A*x + A*y) or share common factors."""
    keys: dict[Expr, list[tuple[bytes, Any]]] = {}  # per term, computed once for all rounds
    splits: dict[tuple[Expr, Expr], Any] = {}  # per pair of terms, likewise
    for _ in range(2 * len(items)):
        merged: Expr | None = None
        used: set[int] = set()
        buckets: dict[bytes, list[tuple[int, Any]]] = defaultdict(list)
        for pos, (_, t) in enumerate(items):
            if isinstance(t, Product):
                if t not in keys:
                    keys[t] = _factor_keys(t)
                for key, how in keys[t]:
                    bucket = buckets[key]
                    if not bucket or bucket[-1][0] != pos:
                        bucket.append((pos, how))
        chosen = next((b for b in buckets.values() if len(b) >= 2), None)
        if chosen is not None:
            first_pos, first_how = chosen[0]
            fillers = [(items[pos][0], _filler(items[pos][1], how)) for pos, how in chosen]  # type: ignore[arg-type]
            merged = _fill(items[first_pos][1], first_how, lin(fillers))  # type: ignore[arg-type]
            used = {pos for pos, _ in chosen}
        else:
            best: tuple[int, Any] | None = None
            # only pairs that share a factor can merge: index the factors (linear in the
            # number of terms when they share none, as in a long sum of unrelated products)
            holders: dict[tuple[Expr, tuple[int, ...]], list[int]] = defaultdict(list)
            for pos, (_, t) in enumerate(items):
                if isinstance(t, Product):
                    for factor in dict.fromkeys(zip(t.operands, t.indices)):
                        holders[factor].append(pos)
            pairs = sorted({pair for held in holders.values() for pair in itertools.combinations(held, 2)})
            best_pair = (0, 0)
            for i, j in pairs:
                pair_key = (items[i][1], items[j][1])
                if pair_key not in splits:
                    splits[pair_key] = _common_factor_split(*pair_key)  # type: ignore[arg-type]
                got = splits[pair_key]
                if got is not None and (best is None or got[0] > best[0]):
                    best, best_pair = got, (i, j)
            if best is None:
                return items
            i, j = best_pair
            used = {i, j}
            merged = _common_factor_merge(items[i][0], items[i][1], items[j][0], best)  # type: ignore[arg-type]
        rest = [it for pos, it in enumerate(items) if pos not in used]
        acc: dict[Expr, float] = {}
        for c, t in rest + [(1.0, merged)]:
            if isinstance(t, Lin):
                for c2, t2 in t.terms:
                    acc[t2] = acc.get(t2, 0.0) + c * c2
            else:
                acc[t] = acc.get(t, 0.0) + c
        items = [(c, t) for t, c in acc.items() if c != 0.0 and not is_zero(t)]
        if len(items) <= 1:
            return items
    return items


# -- the generalized product ------------------------------------------------------------------


class _ZeroProduct(Exception):
    pass


def _pattern(idx: tuple[int, ...], output: tuple[int, ...]) -> tuple[int, ...]:
    pos = {label: p for p, label in enumerate(output)}
    return tuple(pos.get(label, -1) for label in idx)


def _is_structural(node: Expr) -> bool:
    """A delta, or a product with a delta factor."""
    return isinstance(node, Delta) or (isinstance(node, Product) and any(isinstance(op, Delta) for op in node.operands))


def _flatten_into(inner: Product) -> bool:
    """Whether an operand that is itself a product is inlined into the outer product."""
    if any(isinstance(op, (Delta, Const)) for op in inner.operands):
        return True  # index structure (deltas, ones), never computation: always contract it
    if len(inner.operands) == 1:
        idx = inner.indices[0]
        if len(set(idx)) == len(idx) and set(idx) == set(inner.output):
            return True  # a pure permutation (transpose)
    return not inner.summed()  # elementwise scalings: diag(a)*X becomes factors a[i] X[i,j] of the outer product


def product(operands: Sequence[Expr], indices: Sequence[Sequence[int]], output: Sequence[int],
            sizes: Mapping[int, Dim] | None = None) -> Expr:
    """The generalized product ``out[output] = Σ Π_k operands[k][indices[k]]``, simplified.

    Labels are any integers. An output label that no operand carries needs its size in
    ``sizes`` (the result is broadcast along it). Repeated labels within one operand
    take its diagonal.
    """
    operands = list(operands)
    indices = [tuple(idx) for idx in indices]
    output = tuple(output)
    if len(operands) != len(indices):
        raise ValueError("product(): one index tuple per operand")
    if len(set(output)) != len(output):
        raise ValueError(f"product(): repeated output label in {output}")
    dims: dict[int, Dim] = {}
    for op, idx in zip(operands, indices):
        if len(idx) != op.rank:
            raise ShapeError(f"an operand of shape {shape_text(op.shape)} got {len(idx)} index labels")
        for label, dim in zip(idx, op.shape):
            if dims.setdefault(label, dim) != dim:
                raise ShapeError(f"index label {label} has size {dims[label]} in one operand and {dim} in another")
    ones_labels: set[int] = set()
    for label in output:
        if label not in dims:
            if sizes is None or label not in sizes:
                raise ValueError(f"product(): output label {label} has no size")
            dims[label] = sizes[label]
            ones_labels.add(label)
    out_shape = tuple(dims[label] for label in output)
    # a sum with delta terms is distributed, so that each delta is contracted by renaming
    for k, op in enumerate(operands):
        if isinstance(op, Lin) and len(op.terms) > 1 and any(_is_structural(t) for _, t in op.terms):
            return lin([(c, product(operands[:k] + [t] + operands[k + 1:], indices, output, sizes))
                        for c, t in op.terms], out_shape)
    fresh = itertools.count(max(list(dims) + [0]) + 1)

    coef = 1.0
    items: list[tuple[Expr, tuple[int, ...]]] = []
    pairs: list[tuple[int, int]] = []

    def expand(op: Expr, idx: tuple[int, ...]) -> None:
        nonlocal coef
        while isinstance(op, Lin) and len(op.terms) == 1:
            c, op = op.terms[0]
            coef *= c
        if isinstance(op, Const):
            if op.value == 0.0:
                raise _ZeroProduct
            coef *= op.value
            ones_labels.update(idx)
            return
        if isinstance(op, Delta):
            r = len(op.dims)
            pairs.extend(zip(idx[:r], idx[r:]))
            return
        if isinstance(op, Product) and _flatten_into(op):
            inner_dims = op.label_dims()
            mapping = {label: idx[p] for p, label in enumerate(op.output)}
            for label in inner_dims:
                if label not in mapping:
                    mapping[label] = next(fresh)
                    dims[mapping[label]] = inner_dims[label]
            for inner_op, inner_idx in zip(op.operands, op.indices):
                expand(inner_op, tuple(mapping[label] for label in inner_idx))
            return
        items.append((op, idx))

    try:
        for op, idx in zip(operands, indices):
            expand(op, idx)
    except _ZeroProduct:
        return zero(out_shape)

    def rename(old: int, new: int) -> None:
        nonlocal items, pairs, ones_labels
        items = [(op, tuple(new if label == old else label for label in idx)) for op, idx in items]
        pairs = [(new if a == old else a, new if b == old else b) for a, b in pairs]
        ones_labels = {new if label == old else label for label in ones_labels}

    # delta contraction by renaming
    i = 0
    while i < len(pairs):
        a, b = pairs[i]
        if a == b:
            elsewhere = (a in output or a in ones_labels or any(a in idx for _, idx in items)
                         or any(a in pair for j, pair in enumerate(pairs) if j != i))
            if elsewhere:
                pairs.pop(i)
                continue
            i += 1
            continue
        if b not in output:
            pairs.pop(i)
            rename(b, a)
            i = 0
            continue
        if a not in output:
            pairs.pop(i)
            rename(a, b)
            i = 0
            continue
        i += 1

    # kept pairs tie output labels into classes that are equal on the support of the
    # delta: write each class as pairs (first label, other label) and let the other
    # operands use the first label
    pairs = _pairs_from_classes(pairs, output)
    root = {b: a for a, b in pairs if a != b}
    items = [(op, tuple(root.get(label, label) for label in idx)) for op, idx in items]
    ones_labels = {root.get(label, label) for label in ones_labels}

    # ones: only what no other operand covers survives (an output label whose only
    # carrier was a contracted delta, as in d sum(x)/dx, is broadcast with ones)
    covered = {label for _, idx in items for label in idx} | {label for pair in pairs for label in pair}
    ones_labels |= set(output) - covered
    ones_left = sorted(ones_labels - covered, key=lambda label: (label not in output, label))
    for label in [lb for lb in ones_left if lb not in output]:
        if isinstance(dims[label], int):  # a summed all-ones axis of known size: a factor
            coef *= dims[label]
            ones_left.remove(label)

    # det(X)^p * adj(X)' with p < 0 (already undefined where X is singular) is
    # det(X)^(p + 1) * inv(X)': the gradient of log(det(X)) is inv(X)'
    for k, (op, idx) in enumerate(items):
        if isinstance(op, MatFn) and op.fn == "det" and op.order == 1:
            det_power = next((q for q, (o, ix) in enumerate(items) if not ix and isinstance(o, Apply)
                              and o.fn == "power" and o.param < 0  # type: ignore[operator]
                              and isinstance(o.arg, MatFn) and o.arg.fn == "det" and o.arg.order == 0
                              and o.arg.arg is op.arg), None)
            if det_power is not None:
                new_items = list(items)
                p = items[det_power][0].param + 1.0  # type: ignore[attr-defined]
                new_items[det_power] = (apply("power", matfn("det", op.arg), p), ())
                new_items[k] = (matfn("inv", op.arg), (idx[1], idx[0]))
                new_ops2 = [o for o, _ in new_items]
                new_idx2 = [ix for _, ix in new_items]
                _append_structure(new_ops2, new_idx2, pairs, ones_left, dims)
                return scaled(coef, product(new_ops2, new_idx2, output))

    # repeated factors with the same labels become powers: e .* e -> e.^2
    groups: dict[tuple[Expr, tuple[int, ...]], list[float]] = defaultdict(list)
    for op, idx in items:
        base, p = (op.arg, op.param) if isinstance(op, Apply) and op.fn == "power" else (op, 1.0)
        groups[(base, idx)].append(float(p))  # type: ignore[arg-type]
    if any(len(ps) > 1 for ps in groups.values()):
        new_ops: list[Expr] = []
        new_idx: list[tuple[int, ...]] = []
        for (base, idx), ps in groups.items():
            new_ops.append(apply("power", base, sum(ps)))
            new_idx.append(idx)
        _append_structure(new_ops, new_idx, pairs, ones_left, dims)
        return scaled(coef, product(new_ops, new_idx, output))

    if pairs:
        item_labels = {label for _, idx in items for label in idx}
        pair_labels = {label for pair in pairs for label in pair}
        summed = item_labels - set(output) - pair_labels
        if summed and items:
            core_out = tuple(label for label in output if label in item_labels)
            core = product([op for op, _ in items], [idx for _, idx in items], core_out)
            while isinstance(core, Lin) and len(core.terms) == 1:
                c, core = core.terms[0]
                coef *= c
            if is_zero(core):
                return zero(out_shape)
            if isinstance(core, Const):
                coef *= core.value
                ones_left = sorted(set(ones_left) | (set(core_out) - pair_labels))
                items = []
            else:
                items = [(core, core_out)]

    ops_out: list[Expr] = [op for op, _ in items]
    idx_out: list[tuple[int, ...]] = [idx for _, idx in items]
    _append_structure(ops_out, idx_out, pairs, ones_left, dims, output)
    if not ops_out:
        return Const.make(coef, out_shape)
    if len(ops_out) == 1 and idx_out[0] == output:
        return scaled(coef, ops_out[0])
    ops_c, idx_c, out_c = _canonical(ops_out, idx_out, output)
    node = Product.make(tuple(ops_c), tuple(idx_c), out_c, out_shape)
    return scaled(coef, node)


def label_classes(pairs: Sequence[tuple[int, int]], order: Sequence[int]) -> dict[int, int]:
    """Union-find over delta pairs: label -> representative (the first in ``order``)."""
    parent: dict[int, int] = {}

    def find(label: int) -> int:
        parent.setdefault(label, label)
        while parent[label] != label:
            parent[label] = parent[parent[label]]
            label = parent[label]
        return label

    pos = {label: p for p, label in enumerate(order)}
    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            if pos.get(rb, 1 << 30) < pos.get(ra, 1 << 30):
                ra, rb = rb, ra
            parent[rb] = ra
    return {label: find(label) for label in list(parent)}


def _pairs_from_classes(pairs: list[tuple[int, int]], output: tuple[int, ...]) -> list[tuple[int, int]]:
    same = [(a, b) for a, b in pairs if a == b]
    rep = label_classes([(a, b) for a, b in pairs if a != b], output)
    out_pos = {label: p for p, label in enumerate(output)}
    linked = sorted(((r, label) for label, r in rep.items() if label != r),
                    key=lambda ab: (out_pos.get(ab[0], 1 << 30), out_pos.get(ab[1], 1 << 30)))
    return linked + same


def _append_structure(ops: list[Expr], idx: list[tuple[int, ...]], pairs: list[tuple[int, int]],
                      ones_left: Sequence[int], dims: Mapping[int, Dim],
                      output: tuple[int, ...] | None = None) -> None:
    """Append the surviving deltas (as one :class:`Delta`) and ones to an operand list."""
    if pairs:
        pos = {label: p for p, label in enumerate(output or ())}
        oriented = [(a, b) if pos.get(a, 1 << 30) <= pos.get(b, 1 << 30) else (b, a) for a, b in pairs]
        oriented.sort(key=lambda ab: (pos.get(ab[0], 1 << 30), ab[0]))
        ops.append(Delta.make(tuple(dims[a] for a, _ in oriented)))
        idx.append(tuple(a for a, _ in oriented) + tuple(b for _, b in oriented))
    if ones_left:
        ops.append(Const.make(1.0, tuple(dims[label] for label in ones_left)))
        idx.append(tuple(ones_left))


def _relabeling(output: Sequence[int], indices: Sequence[Sequence[int]]) -> dict[int, int]:
    """Output labels -> 0..r-1, the other labels -> r, r+1, ... in order of first appearance."""
    relabel = {label: p for p, label in enumerate(output)}
    for idx in indices:
        for label in idx:
            if label not in relabel:
                relabel[label] = len(relabel)
    return relabel


def _canonical(ops: list[Expr], indices: list[tuple[int, ...]], output: tuple[int, ...]
               ) -> tuple[list[Expr], list[tuple[int, ...]], tuple[int, ...]]:
    """Sort operands by structure and relabel: output labels 0..r-1, then first appearance."""
    order = sorted(range(len(ops)), key=lambda k: (ops[k].key, _pattern(indices[k], output)))
    relabel = _relabeling(output, [indices[k] for k in order])
    new_ops, new_idx = [], []
    for k in order:
        new_ops.append(ops[k])
        new_idx.append(tuple(relabel[label] for label in indices[k]))
    return new_ops, new_idx, tuple(range(len(output)))


# -- elementwise and matrix functions ---------------------------------------------------------


_MATH_NAMES = {"abs": "fabs", "arcsin": "asin", "arccos": "acos", "arctan": "atan"}


def _numeric(fn: str, x: float, param: float | None) -> float:
    if fn == "power":
        return float(x ** param)  # type: ignore[operator]
    if fn == "sigmoid":
        return 1.0 / (1.0 + math.exp(-x))
    if fn == "sign":
        return float((x > 0) - (x < 0))
    if fn == "relu":
        return max(x, 0.0)
    if fn == "step":
        return float(x > 0)
    return float(getattr(math, _MATH_NAMES.get(fn, fn))(x))


def apply(fn: str, arg: Expr, param: float | None = None) -> Expr:
    """Elementwise ``fn(arg)``; ``fn="power"`` raises to the constant ``param``."""
    if fn not in UNARY_FUNCTIONS:
        raise UserError(f"unknown elementwise function {fn!r}; choose one of {', '.join(UNARY_FUNCTIONS)}")
    if fn == "power":
        if param is None or not math.isfinite(float(param)):
            raise UserError(f"power needs a finite constant exponent, got {param!r}")
        param = float(param)
        if param == 1.0:
            return arg
        if param == 0.0:
            return Const.make(1.0, arg.shape)
    else:
        param = None
    if isinstance(arg, Const):
        try:
            value = _numeric(fn, arg.value, param)
        except (ValueError, ZeroDivisionError, OverflowError):
            value = math.nan
        if math.isfinite(value):
            return Const.make(value, arg.shape)
    if isinstance(arg, Apply):
        if fn == "power" and arg.fn == "power" and float(param).is_integer():  # type: ignore[union-attr]
            return apply("power", arg.arg, arg.param * param)  # type: ignore[operator]
        if fn == "power" and arg.fn == "sqrt" and param == 2.0:
            return arg.arg
        if fn == "log" and arg.fn == "exp":
            return arg.arg
        if fn == "abs" and arg.fn in ("abs", "exp", "sqrt"):
            return arg
        if fn == "sign" and arg.fn in ("exp",):
            return Const.make(1.0, arg.shape)
        if fn in ("relu", "step") and arg.fn == "exp":
            return arg if fn == "relu" else Const.make(1.0, arg.shape)
    if fn == "power" and isinstance(arg, Lin) and len(arg.terms) == 1:
        c, t = arg.terms[0]
        if c > 0 or float(param).is_integer():  # type: ignore[union-attr]
            return scaled(c ** param, apply("power", t, param))  # type: ignore[operator]
    return Apply.make(fn, arg, param)


def power(base: Expr, exponent: Expr) -> Expr:
    """Elementwise ``base .^ exponent`` of two expressions of one shape.

    A constant exponent gives the one-argument ``power`` (with its own rules); the
    general case is a :class:`Pow` node, differentiated as ``exp(exponent .* log(base))``.
    """
    if base.shape != exponent.shape:
        raise ShapeError(f"power: base of shape {shape_text(base.shape)} and exponent of shape "
                         f"{shape_text(exponent.shape)} differ")
    if isinstance(exponent, Const):
        return apply("power", base, exponent.value)
    if isinstance(base, Const) and base.value == 1.0:
        return base
    return Pow.make(base, exponent)


def is_transpose(node: Expr) -> bool:
    return (isinstance(node, Product) and len(node.operands) == 1 and node.operands[0].rank == 2
            and node.indices[0] == (1, 0) and node.output == (0, 1))


def transpose2(node: Expr) -> Expr:
    return product([node], [(0, 1)], (1, 0))


def matfn(fn: str, arg: Expr, order: int = 0) -> Expr:
    """``inv``, ``logdet`` or ``det`` of a square matrix; ``det`` with ``order`` k >= 1 is
    its k-th derivative tensor (see :class:`~mlmyths.tensorcalc.ir.MatFn`)."""
    if fn not in MATRIX_FUNCTIONS:
        raise UserError(f"unknown matrix function {fn!r}; choose one of {', '.join(MATRIX_FUNCTIONS)}")
    if arg.rank != 2 or arg.shape[0] != arg.shape[1]:
        raise ShapeError(f"{fn} needs a square matrix, got shape {shape_text(arg.shape)}")
    order = int(order) if fn == "det" else 0
    if order < 0:
        raise ValueError(f"matfn(): negative derivative order {order}")
    n = arg.shape[0]
    if order and isinstance(n, int) and order > n:
        return zero(tuple(arg.shape) * order)  # det is a polynomial of degree n
    if isinstance(arg, Delta) and order == 0:
        return arg if fn == "inv" else Const.make(1.0 if fn == "det" else 0.0, ())
    if fn == "inv" and isinstance(arg, MatFn) and arg.fn == "inv":
        return arg.arg
    if is_transpose(arg):
        inner = arg.operands[0]  # type: ignore[attr-defined]
        if fn == "inv":
            return transpose2(matfn("inv", inner))
        if order == 0:
            return matfn(fn, inner)
        # det(X') = det(X): D_k(X')[i1,j1,...] = D_k(X)[j1,i1,...]
        labels = tuple(range(2 * order))
        swapped = tuple(labels[p ^ 1] for p in range(2 * order))
        return product([matfn(fn, inner, order)], [swapped], labels)
    if fn == "inv" and isinstance(arg, Lin) and len(arg.terms) == 1:
        c, t = arg.terms[0]
        return scaled(1.0 / c, matfn("inv", t))
    if fn == "det" and isinstance(arg, Lin) and len(arg.terms) == 1 and isinstance(n, int):
        c, t = arg.terms[0]  # det(cX) = c^n det(X), so D_k(cX) = c^(n-k) D_k(X)
        return scaled(c ** (n - order), matfn("det", t, order))
    return MatFn.make(fn, arg, order)


# -- rebuilding ----------------------------------------------------------------------------


def simplify(root: Expr) -> Expr:
    """Rebuild ``root`` bottom-up through the smart constructors (idempotent).

    Expressions built by this package are already simplified; this is for nodes whose
    children were simplified further after they were built (and for tests).
    """
    new: dict[Expr, Expr] = {}
    for node in topological(root):
        if isinstance(node, (Var, Const, Delta)):
            new[node] = node
        elif isinstance(node, Product):
            new[node] = product([new[op] for op in node.operands], node.indices, node.output)
        elif isinstance(node, Lin):
            new[node] = lin([(c, new[t]) for c, t in node.terms], node.shape)
        elif isinstance(node, Apply):
            new[node] = apply(node.fn, new[node.arg], node.param)
        elif isinstance(node, Pow):
            new[node] = power(new[node.base], new[node.exponent])
        elif isinstance(node, MatFn):
            new[node] = matfn(node.fn, new[node.arg], node.order)
        else:  # pragma: no cover - every node type is handled above
            raise TypeError(type(node).__name__)
    return new[root]
