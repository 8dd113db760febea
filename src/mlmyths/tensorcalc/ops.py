"""The operator API: variables, arithmetic and functions on expressions, with shape checks.

Shapes follow numpy for ``@`` (a vector is 1-D: ``x @ A @ x`` is a scalar) and
elementwise operators (``+ - * / **``) need equal shapes or a scalar operand.
A mismatch raises :class:`~mlmyths.tensorcalc.ShapeError` naming both operands.

>>> from mlmyths import tensorcalc as tc
>>> x, A = tc.vector("x", "n"), tc.matrix("A", "n", "n")
>>> tc.to_string(x @ A @ x)
"x'*A*x"
>>> tc.to_string(tc.hessian(x @ A @ x, x))
"A + A'"
"""
from __future__ import annotations

import math
import numbers
import re
from collections.abc import Sequence
from typing import Any

from mlmyths.errors import UserError
from mlmyths.tensorcalc import simplify as s
from mlmyths.tensorcalc.ir import Const, Dim, Expr, Shape, ShapeError, Var, check_dim, check_name, shape_text

# -- variables -------------------------------------------------------------------------------


def tensor(name: str, dims: Sequence[Dim] = ()) -> Var:
    """A variable ``name`` of shape ``dims`` (symbols like ``"n"`` or integer sizes)."""
    if isinstance(dims, (str, int)):
        dims = (dims,)
    return s.var(check_name(name), tuple(check_dim(d) for d in dims))


def scalar(name: str) -> Var:
    """A scalar variable."""
    return tensor(name, ())


def vector(name: str, n: Dim = "n") -> Var:
    """A vector variable of length ``n``."""
    return tensor(name, (n,))


def matrix(name: str, rows: Dim = "n", cols: Dim = "n") -> Var:
    """A matrix variable of shape ``(rows, cols)``."""
    return tensor(name, (rows, cols))


def identity(n: Dim) -> Expr:
    """The ``n x n`` identity matrix."""
    return s.delta((check_dim(n),))


# -- helpers ---------------------------------------------------------------------------------


def as_expr(value: Any) -> Expr:
    """An expression, or a number as a scalar constant."""
    if isinstance(value, Expr):
        return value
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return Const.make(float(value), ())
    raise UserError(f"expected a tensorcalc expression or a number, got {type(value).__name__}; "
                    "declare inputs with tc.vector/tc.matrix/tc.tensor")


def describe(node: Expr) -> str:
    """``"x (shape (n,))"``: the operand's text (shortened) and shape, for error messages."""
    from mlmyths.tensorcalc.printing import to_string

    text = to_string(node).replace("\n", " ")
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{text} (shape {shape_text(node.shape)})"


def broadcast(node: Expr, shape: Shape) -> Expr:
    """A scalar expression repeated over ``shape``."""
    if node.shape == tuple(shape):
        return node
    if node.rank != 0:
        raise ShapeError(f"cannot broadcast {describe(node)} to shape {shape_text(shape)}")
    if isinstance(node, Const):
        return Const.make(node.value, tuple(shape))
    labels = tuple(range(len(shape)))
    return s.product([node], [()], labels, sizes=dict(zip(labels, shape)))


def _elementwise_pair(a: Any, b: Any, verb: str) -> tuple[Expr, Expr]:
    a, b = as_expr(a), as_expr(b)
    if a.shape == b.shape:
        return a, b
    if a.rank == 0:
        return broadcast(a, b.shape), b
    if b.rank == 0:
        return a, broadcast(b, a.shape)
    raise ShapeError(f"cannot {verb} {describe(a)} and {describe(b)}: shapes differ "
                     "(elementwise operations need equal shapes or a scalar)")


# -- arithmetic ------------------------------------------------------------------------------


def add(a: Any, b: Any) -> Expr:
    a, b = _elementwise_pair(a, b, "add")
    return s.lin([(1.0, a), (1.0, b)])


def subtract(a: Any, b: Any) -> Expr:
    a, b = _elementwise_pair(a, b, "subtract")
    return s.lin([(1.0, a), (-1.0, b)])


def negate(a: Any) -> Expr:
    return s.scaled(-1.0, as_expr(a))


def multiply(a: Any, b: Any) -> Expr:
    """Elementwise product (``.*``); a scalar operand scales the other."""
    a, b = as_expr(a), as_expr(b)
    if a.rank == 0 or b.rank == 0:
        big = a if a.rank else b
        labels = tuple(range(big.rank))
        return s.product([a, b], [labels if a.rank else (), labels if b.rank else ()], labels)
    if a.shape != b.shape:
        raise ShapeError(f"cannot multiply elementwise {describe(a)} and {describe(b)}: shapes differ")
    labels = tuple(range(a.rank))
    return s.product([a, b], [labels, labels], labels)


def divide(a: Any, b: Any) -> Expr:
    """Elementwise division (``./``); dividing by a scalar scales."""
    a, b = as_expr(a), as_expr(b)
    if b.rank and a.rank and a.shape != b.shape:
        raise ShapeError(f"cannot divide {describe(a)} by {describe(b)}: shapes differ")
    return multiply(a, s.apply("power", b, -1.0))


def power(a: Any, exponent: Any) -> Expr:
    """Elementwise power (``.^``) by a constant or by an expression.

    A number (or scalar constant) exponent has the rules of ``x.^p``; an expression
    exponent of the base's shape (or a scalar, broadcast) gives ``a .^ b``, whose
    derivative is that of ``exp(b .* log(a))`` and so assumes ``a > 0``.

    >>> from mlmyths import tensorcalc as tc
    >>> tc.to_string(tc.power(tc.vector("x"), tc.vector("y")))
    'x.^y'
    """
    a = as_expr(a)
    if isinstance(exponent, Const) and exponent.rank == 0:
        exponent = exponent.value
    if isinstance(exponent, Expr):
        base, exponent = _elementwise_pair(a, exponent, "raise")
        return s.power(base, exponent)
    if not isinstance(exponent, numbers.Real) or isinstance(exponent, bool):
        raise UserError(f"the exponent must be a number or a tensorcalc expression, got {exponent!r}")
    if not math.isfinite(float(exponent)):
        raise UserError(f"the exponent must be a finite number, got {exponent!r}")
    return s.apply("power", a, float(exponent))


def matmul(a: Any, b: Any) -> Expr:
    """Matrix product with numpy's rules for vectors (1-D on either side)."""
    a, b = as_expr(a), as_expr(b)
    if a.rank not in (1, 2) or b.rank not in (1, 2):
        raise ShapeError(f"cannot matrix-multiply {describe(a)} and {describe(b)}: @ takes vectors and matrices "
                         "(use * to scale by a scalar)")
    if a.shape[-1] != b.shape[0]:
        raise ShapeError(f"cannot matrix-multiply {describe(a)} and {describe(b)}: inner dimensions "
                         f"{a.shape[-1]} and {b.shape[0]} differ")
    ia = (0, 1) if a.rank == 2 else (1,)
    ib = (1, 2) if b.rank == 2 else (1,)
    out = tuple(label for label in ia + ib if label != 1)
    return s.product([a, b], [ia, ib], out)


def outer(a: Any, b: Any) -> Expr:
    """Outer product ``a[i...] b[j...]``."""
    a, b = as_expr(a), as_expr(b)
    ia = tuple(range(a.rank))
    ib = tuple(range(a.rank, a.rank + b.rank))
    return s.product([a, b], [ia, ib], ia + ib)


def transpose(a: Any, axes: Sequence[int] | None = None) -> Expr:
    """Reverse (or permute by ``axes``) the axes; vectors and scalars are unchanged."""
    a = as_expr(a)
    if a.rank < 2 and axes is None:
        return a
    perm = tuple(reversed(range(a.rank))) if axes is None else tuple(axes)
    if sorted(perm) != list(range(a.rank)):
        raise ShapeError(f"axes {perm} are not a permutation of the axes of {describe(a)}")
    return s.product([a], [tuple(range(a.rank))], perm)


_EINSUM = re.compile(r"\s*([A-Za-z]*(?:\s*,\s*[A-Za-z]*)*)\s*->\s*([A-Za-z]*)\s*\Z")


def einsum(spec: str, *operands: Any) -> Expr:
    """The generalized product written as an einsum string, e.g. ``einsum("ij,j->i", A, x)``.

    Unlike numpy, a letter may appear in several operands *and* the output (elementwise).
    """
    m = _EINSUM.match(spec)
    if not m:
        raise UserError(f"einsum spec must look like 'ij,jk->ik' (explicit output), got {spec!r}")
    inputs = [t.strip() for t in m.group(1).split(",")] if operands else []
    if len(inputs) != len(operands):
        raise UserError(f"einsum spec {spec!r} names {len(inputs)} operands, got {len(operands)}")
    exprs = [as_expr(op) for op in operands]
    letters: dict[str, Dim] = {}
    owner: dict[str, Expr] = {}
    for letters_k, op in zip(inputs, exprs):
        if len(letters_k) != op.rank:
            raise ShapeError(f"einsum spec {spec!r}: {letters_k!r} has {len(letters_k)} indices for {describe(op)}")
        for ch, dim in zip(letters_k, op.shape):
            if ch in letters and letters[ch] != dim:
                raise ShapeError(f"einsum index {ch!r} has size {letters[ch]} in {describe(owner[ch])} "
                                 f"and {dim} in {describe(op)}")
            letters.setdefault(ch, dim)
            owner.setdefault(ch, op)
    out = m.group(2)
    for ch in out:
        if ch not in letters:
            raise UserError(f"einsum output index {ch!r} appears in no operand of {spec!r}")
    code = {ch: k for k, ch in enumerate(sorted(letters))}
    return s.product(exprs, [tuple(code[ch] for ch in t) for t in inputs], tuple(code[ch] for ch in out))


# -- reductions and functions --------------------------------------------------------------


def sum(a: Any) -> Expr:  # noqa: A001 - the language's name
    """Sum of all entries."""
    a = as_expr(a)
    return s.product([a], [tuple(range(a.rank))], ())


def _square(a: Expr, what: str) -> None:
    if a.rank != 2 or a.shape[0] != a.shape[1]:
        raise ShapeError(f"{what} needs a square matrix, got {describe(a)}")


def trace(a: Any) -> Expr:
    a = as_expr(a)
    _square(a, "tr")
    return s.product([a], [(0, 0)], ())


def diag(a: Any) -> Expr:
    """``diag(v)``: the diagonal matrix of a vector; ``diag(M)``: the diagonal of a square matrix."""
    a = as_expr(a)
    if a.rank == 1:
        return s.product([a, s.delta(a.shape)], [(0,), (0, 1)], (0, 1))
    _square(a, "diag")
    return s.product([a], [(0, 0)], (0,))


def inv(a: Any) -> Expr:
    return s.matfn("inv", as_expr(a))


def det(a: Any) -> Expr:
    return s.matfn("det", as_expr(a))


def adj(a: Any) -> Expr:
    """The adjugate ``adj(X)`` (transposed cofactor matrix: ``adj(X) X = det(X) I``), defined for any square X."""
    return transpose(s.matfn("det", as_expr(a), 1))


def logdet(a: Any) -> Expr:
    """``log |det(a)|``."""
    return s.matfn("logdet", as_expr(a))


def norm1(a: Any) -> Expr:
    """1-norm of a vector (elementwise 1-norm of a matrix): ``sum(abs(a))``."""
    return sum(s.apply("abs", as_expr(a)))


def norm2(a: Any) -> Expr:
    """Euclidean norm of a vector (Frobenius norm of a matrix)."""
    a = as_expr(a)
    return s.apply("sqrt", sum(s.apply("power", a, 2.0)))


def _unary(fn: str):  # type: ignore[no-untyped-def]
    def f(a: Any) -> Expr:
        return s.apply(fn, as_expr(a))

    f.__name__ = fn
    f.__doc__ = f"Elementwise ``{fn}``."
    return f


exp = _unary("exp")
log = _unary("log")
sin = _unary("sin")
cos = _unary("cos")
tanh = _unary("tanh")
sigmoid = _unary("sigmoid")
sqrt = _unary("sqrt")
abs = _unary("abs")  # noqa: A001
sign = _unary("sign")
tan = _unary("tan")
arcsin = _unary("arcsin")
arccos = _unary("arccos")
arctan = _unary("arctan")
relu = _unary("relu")
step = _unary("step")
step.__doc__ = "Elementwise Heaviside step: 1 where the argument is positive, else 0 (the derivative of ``relu``)."
