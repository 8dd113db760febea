"""Differentiation of any order, in forward and in reverse mode, on the same IR.

The derivative of ``f`` (shape ``S_f``) with respect to a variable ``x`` (shape
``S_x``) is an expression of shape ``S_f + S_x``: ``D[s, t] = ∂f[s] / ∂x[t]``. It is
again an expression, so it can be differentiated again: the k-th derivative has shape
``S_f + k * S_x`` (for a matrix ``U`` of shape (n, k) and a scalar f, the Hessian has
shape (n, k, n, k) with ``H[i, j, p, q] = ∂²f / ∂U[i, j] ∂U[p, q]``).

Both modes rest on the one rule for the generalized product
``C[s3] = A[s1] *(s1, s2, s3) B[s2]`` (Laue et al., NeurIPS 2018, Thm. 5 and 7):

- forward: ``Ċ = Ȧ *(s1 t, s2, s3 t) B + A *(s1, s2 t, s3 t) Ḃ`` with ``t`` the labels of x;
- reverse: ``Ā = C̄ *(o s3, s2, o s1) B``, the adjoint with ``o`` the labels of f.

Elementwise functions multiply by their elementwise derivative over shared labels
(``exp(u)' = exp(u) ⊙ u'`` never builds ``diag(exp(u))``); the power ``a .^ b`` of two
expressions has the partials ``b .* a.^(b - 1)`` and ``a.^b .* log(a)`` (those of
``exp(b .* log(a))``, valid where ``a > 0``). ``inv``, ``det`` and ``logdet`` have
their matrix rules: ``d inv(X) = -inv(X) dX inv(X)``, ``d logdet(X) = tr(inv(X) dX)``,
and ``d det(X) = <adj(X)', dX>`` in the cofactor form (Jacobi's formula without the
inverse), so that it holds where ``X`` is singular; every higher derivative of ``det``
is again a tensor of signed minors (:class:`~mlmyths.tensorcalc.ir.MatFn` with an order).

>>> from mlmyths import tensorcalc as tc
>>> f = tc.parse("x'*A*x", x="vector", A="matrix")
>>> tc.to_string(tc.derivative(f, "x"))
"(A + A')*x"
"""
from __future__ import annotations

import itertools
import weakref
from typing import Literal

from mlmyths.errors import UserError
from mlmyths.tensorcalc import simplify as s
from mlmyths.tensorcalc.ir import Apply, Expr, Lin, MatFn, Pow, Product, Var, topological, variables

Mode = Literal["auto", "forward", "reverse"]
MODES = ("auto", "forward", "reverse")

# derivative -> the variables of the expression it was derived from (weak: dies with it)
_ORIGINS: weakref.WeakKeyDictionary[Expr, tuple[Var, ...]] = weakref.WeakKeyDictionary()


def origin_variables(expr: Expr) -> tuple[Var, ...]:
    """The variables of the expression ``expr`` was derived from by :func:`derivative`
    (the origin of its origin, ...), or ``expr``'s own for an expression not derived.

    A derivative can lose variables (the Hessian of ``x'*A*x`` is ``A + A'``) and with
    them the sizes of dimensions: :func:`~mlmyths.tensorcalc.compile` takes these inputs
    too and reads the sizes from them. Expressions are interned, so one derivative can
    come from several expressions; it then keeps the variables of all (the first of
    each name).
    """
    return _ORIGINS.get(expr) or tuple(variables(expr))


def _record_origin(result: Expr, origin: tuple[Var, ...]) -> None:
    known = _ORIGINS.get(result, ())
    names = {v.name for v in known}
    merged = known + tuple(v for v in origin if v.name not in names)
    if merged != known:
        try:
            _ORIGINS[result] = merged
        except TypeError:  # pragma: no cover - every Expr is weakly referenceable
            pass


def elementwise_derivative(node: Apply) -> Expr:
    """``f'(u)`` for ``node = f(u)``, an expression of the shape of ``u``."""
    u, fn = node.arg, node.fn
    if fn == "exp":
        return node
    if fn == "log":
        return s.apply("power", u, -1.0)
    if fn == "sin":
        return s.apply("cos", u)
    if fn == "cos":
        return s.scaled(-1.0, s.apply("sin", u))
    if fn == "tan":  # 1 + tan(u)^2
        return s.lin([(1.0, s.const(1.0, u.shape)), (1.0, s.apply("power", node, 2.0))])
    if fn in ("arcsin", "arccos"):  # ±(1 - u^2)^(-1/2)
        root = s.apply("power", s.lin([(1.0, s.const(1.0, u.shape)), (-1.0, s.apply("power", u, 2.0))]), -0.5)
        return root if fn == "arcsin" else s.scaled(-1.0, root)
    if fn == "arctan":  # (1 + u^2)^(-1)
        return s.apply("power", s.lin([(1.0, s.const(1.0, u.shape)), (1.0, s.apply("power", u, 2.0))]), -1.0)
    if fn == "relu":  # the almost-everywhere derivative, 0 at u = 0 (as torch and jax)
        return s.apply("step", u)
    if fn == "tanh":
        return s.lin([(1.0, s.const(1.0, u.shape)), (-1.0, s.apply("power", node, 2.0))])
    if fn == "sigmoid":
        return s.lin([(1.0, node), (-1.0, s.apply("power", node, 2.0))])
    if fn == "sqrt":
        return s.scaled(0.5, s.apply("power", node, -1.0))
    if fn == "abs":
        return s.apply("sign", u)
    if fn in ("sign", "step"):
        return s.zero(u.shape)
    if fn == "power":
        p = float(node.param)  # type: ignore[arg-type]
        return s.scaled(p, s.apply("power", u, p - 1.0))
    raise AssertionError(fn)  # pragma: no cover


def elementwise_partials(node: Apply | Pow) -> list[tuple[Expr, Expr]]:
    """``(child, ∂node/∂child)`` for an elementwise node: partials of the node's shape."""
    if isinstance(node, Apply):
        return [(node.arg, elementwise_derivative(node))]
    a, b = node.base, node.exponent
    labels = tuple(range(node.rank))
    b_minus_one = s.lin([(1.0, b), (-1.0, s.const(1.0, b.shape))])
    d_base = s.product([b, s.power(a, b_minus_one)], [labels, labels], labels)
    d_exponent = s.product([node, s.apply("log", a)], [labels, labels], labels)
    return [(a, d_base), (b, d_exponent)]


def forward(f: Expr, x: Var) -> Expr:
    """Forward mode: ``∂f/∂x`` built bottom-up, one derivative per node of the DAG."""
    sx = x.shape
    memo: dict[Expr, Expr] = {}
    for node in topological(f):
        shape = node.shape + sx
        if x not in node.free_vars:
            memo[node] = s.zero(shape)
            continue
        if node is x:
            memo[node] = s.delta(sx)
        elif isinstance(node, Product):
            top = max([label for idx in node.indices for label in idx] + [-1]) + 1
            t = tuple(range(top, top + len(sx)))
            terms = []
            for k, op in enumerate(node.operands):
                if x not in op.free_vars:
                    continue
                ops = list(node.operands)
                idx = list(node.indices)
                ops[k] = memo[op]
                idx[k] = idx[k] + t
                terms.append((1.0, s.product(ops, idx, node.output + t)))
            memo[node] = s.lin(terms, shape)
        elif isinstance(node, Lin):
            memo[node] = s.lin([(c, memo[term]) for c, term in node.terms], shape)
        elif isinstance(node, (Apply, Pow)):
            labels = tuple(range(node.rank))
            t = tuple(range(node.rank, node.rank + len(sx)))
            memo[node] = s.lin([(1.0, s.product([partial, memo[child]], [labels, labels + t], labels + t))
                                for child, partial in elementwise_partials(node) if x in child.free_vars], shape)
        elif isinstance(node, MatFn):
            memo[node] = _matfn_forward(node, memo[node.arg], len(sx))
        else:  # pragma: no cover - leaves never depend on x except x itself
            raise AssertionError(type(node).__name__)
    return memo[f]


def _matfn_forward(node: MatFn, dX: Expr, rx: int) -> Expr:
    X = node.arg
    if node.fn == "det":  # D_{k+1}[s, a, b] dX[a, b, t]; for k = 0: <adj(X)', dX>
        r = node.rank
        s_labels = tuple(range(r))
        a, b = r, r + 1
        t = tuple(range(r + 2, r + 2 + rx))
        return s.product([s.matfn("det", X, node.order + 1), dX], [s_labels + (a, b), (a, b) + t], s_labels + t)
    t = tuple(range(10, 10 + rx))
    if node.fn == "inv":  # -inv[a,c] dX[c,d,t] inv[d,b]
        return s.scaled(-1.0, s.product([node, dX, node], [(0, 2), (2, 3) + t, (3, 1)], (0, 1) + t))
    return s.product([s.matfn("inv", X), dX], [(1, 0), (0, 1) + t], t)  # logdet


def reverse(f: Expr, x: Var) -> Expr:
    """Reverse mode: adjoints ``∂f/∂node`` (shape ``S_f + S_node``) propagated top-down."""
    so = f.shape
    ro = len(so)
    o = tuple(range(ro))  # labels of f's axes in every adjoint
    if x not in f.free_vars:
        return s.zero(so + x.shape)
    order = [n for n in topological(f) if x in n.free_vars]
    contributions: dict[Expr, list[Expr]] = {f: [s.delta(so)]}
    for node in reversed(order):
        parts = contributions.pop(node, [])
        adj = s.lin([(1.0, p) for p in parts], so + node.shape)
        if node is x:
            return adj
        if s.is_zero(adj):
            continue
        for child, contrib in _adjoint_contributions(node, adj, ro, o):
            if x in child.free_vars and not s.is_zero(contrib):
                contributions.setdefault(child, []).append(contrib)
    return s.zero(so + x.shape)  # pragma: no cover - x is reached when f depends on it


def _adjoint_contributions(node: Expr, adj: Expr, ro: int, o: tuple[int, ...]):  # type: ignore[no-untyped-def]
    """(child, contribution to the child's adjoint) for each child of ``node``."""
    if isinstance(node, Lin):
        for c, term in node.terms:
            yield term, s.scaled(c, adj)
        return
    if isinstance(node, (Apply, Pow)):
        labels = tuple(range(ro, ro + node.rank))
        for child, partial in elementwise_partials(node):
            yield child, s.product([adj, partial], [o + labels, labels], o + labels)
        return
    if isinstance(node, MatFn):
        X = node.arg
        a, b, c, d = ro, ro + 1, ro + 2, ro + 3
        if node.fn == "inv":  # adj_X[o,c,d] = -adj[o,a,b] inv[a,c] inv[d,b]
            yield X, s.scaled(-1.0, s.product([adj, node, node], [o + (a, b), (a, c), (d, b)], o + (c, d)))
        elif node.fn == "det":  # adj_X[o,a,b] = adj[o,s] D_{k+1}[s,a,b]; for k = 0: adj[o] adj(X)'[a,b]
            sl = tuple(range(ro, ro + node.rank))
            a, b = ro + node.rank, ro + node.rank + 1
            yield X, s.product([adj, s.matfn("det", X, node.order + 1)], [o + sl, sl + (a, b)], o + (a, b))
        else:
            yield X, s.product([adj, s.matfn("inv", X)], [o, (b, a)], o + (a, b))
        return
    if isinstance(node, Product):
        shift = ro  # move the product's own labels past the adjoint's labels o
        idx = [tuple(label + shift for label in ix) for ix in node.indices]
        out = tuple(label + shift for label in node.output)
        dims = {label + shift: dim for label, dim in node.label_dims().items()}
        fresh = itertools.count(max(list(dims) + [ro]) + 1)
        for k, op in enumerate(node.operands):
            # The adjoint's output labels are operand k's labels; a label repeated within
            # operand k (a diagonal, as in tr(A) = A[i,i]) becomes a fresh label tied by a delta.
            seen: set[int] = set()
            target = []
            ops = [adj] + [other for q, other in enumerate(node.operands) if q != k]
            ixs = [o + out] + [ix for q, ix in enumerate(idx) if q != k]
            for label in idx[k]:
                if label in seen:
                    new = next(fresh)
                    ops.append(s.delta((dims[label],)))
                    ixs.append((label, new))
                    dims[new] = dims[label]
                    target.append(new)
                else:
                    seen.add(label)
                    target.append(label)
            yield op, s.product(ops, ixs, o + tuple(target), sizes=dims)
        return
    raise AssertionError(type(node).__name__)  # pragma: no cover


def _find_var(f: Expr, wrt: str | Var) -> Var:
    if isinstance(wrt, Var):
        return wrt
    if not isinstance(wrt, str):
        raise UserError(f"wrt must be a variable name or a tc variable, got {type(wrt).__name__}")
    matches = sorted((v for v in f.free_vars if v.name == wrt), key=lambda v: v.key)
    names = sorted({v.name for v in f.free_vars})
    if not matches:
        raise UserError(f"cannot differentiate with respect to {wrt!r}: it is not a variable of the expression "
                        f"(its variables: {', '.join(names) or 'none'})")
    if len(matches) > 1:
        raise UserError(f"the expression has several variables named {wrt!r} with different shapes; "
                        "pass the variable itself as wrt")
    return matches[0]


def derivative(f: Expr, wrt: str | Var, order: int = 1, mode: Mode = "auto") -> Expr:
    """The ``order``-th derivative of ``f`` with respect to ``wrt`` (a name or a variable).

    Parameters
    ----------
    f : Expr
        The expression (any shape ``S_f``).
    wrt : str or Var
        The variable, by name or as the variable expression (shape ``S_x``).
    order : int, default 1
        ``0`` returns ``f``; the result has shape ``S_f + order * S_x``.
    mode : {"auto", "forward", "reverse"}, default "auto"
        How each order is computed. ``auto`` uses reverse mode while the expression
        being differentiated has no more axes than x, forward mode otherwise.

    Examples
    --------
    >>> from mlmyths import tensorcalc as tc
    >>> f = tc.parse("sum(exp(X*w))", X="matrix", w="vector")
    >>> tc.derivative(f, "w", order=3).shape
    ('m', 'm', 'm')
    """
    if not isinstance(f, Expr):
        raise UserError(f"derivative() takes a tensorcalc expression, got {type(f).__name__}")
    if isinstance(order, bool) or not isinstance(order, int) or order < 0:
        raise UserError(f"order must be a non-negative integer, got {order!r}")
    if mode not in MODES:
        raise UserError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    x = _find_var(f, wrt)
    origin = origin_variables(f)
    result = f
    for _ in range(order):
        use_reverse = mode == "reverse" or (mode == "auto" and result.rank <= x.rank)
        result = reverse(result, x) if use_reverse else forward(result, x)
        _record_origin(result, origin)
    return result


def gradient(f: Expr, wrt: str | Var, mode: Mode = "auto") -> Expr:
    """First derivative of a scalar expression (shape of ``wrt``)."""
    if f.rank != 0:
        raise UserError(f"gradient() needs a scalar expression, got shape {f.shape}; use derivative() for Jacobians")
    return derivative(f, wrt, 1, mode)


def hessian(f: Expr, wrt: str | Var, mode: Mode = "auto") -> Expr:
    """Second derivative: ``derivative(f, wrt, order=2)``."""
    return derivative(f, wrt, 2, mode)


__all__ = ["derivative", "gradient", "hessian", "forward", "reverse", "elementwise_derivative", "elementwise_partials"]
