"""The expression IR: tensors with symbolic dimensions and named index slots.

Laue, Mitterreiter & Giesen (NeurIPS 2018, Sec. 3; AAAI 2020, Sec. 2) write every
multiplication of tensors as one *generalized product* ``C = A *(s1, s2, s3) B``:
``C[s3] = sum over (s1 | s2) - s3 of A[s1] * B[s2]``, an einsum over index sets.
Matrix products, inner and outer products, elementwise products, transposes,
traces and diagonal scalings are all instances, so one differentiation rule covers
them all. Here the product is n-ary (:class:`Product`), which lets the simplifier
keep chains of elementwise scalings flat and lets code generation choose the
contraction order of a whole chain.

Node types (all immutable and *interned*: structurally equal expressions are the
same Python object, so a derivative that reuses a subexpression shares it as a DAG):

- :class:`Var` — an input tensor with a name and a shape of dimension symbols;
- :class:`Const` — a tensor filled with one number (``0``: zero, ``1``: ones);
- :class:`Delta` — the identity tensor ``δ[s, t] = Π_i δ(s_i, t_i)`` of shape
  ``dims + dims`` (the derivative of a variable with respect to itself);
- :class:`Product` — the generalized product of any number of operands;
- :class:`Lin` — a linear combination ``Σ c_i T_i`` of same-shaped terms;
- :class:`Apply` — an elementwise function (exp, log, ..., power by a constant);
- :class:`Pow` — the elementwise power ``a .^ b`` of two expressions (a non-constant exponent);
- :class:`MatFn` — a matrix function with its own rules: ``inv``, ``logdet`` and ``det``
  with its derivative tensors (``order`` k: the k-th derivative of ``det``, whose first is
  the cofactor matrix ``adj(X)'``).

Dimensions are symbols (``"n"``, ``"m"``) or fixed integers. Nodes are built by the
smart constructors in :mod:`mlmyths.tensorcalc.simplify`, never directly.

>>> from mlmyths import tensorcalc as tc
>>> x = tc.vector("x", "n")
>>> x.shape
('n',)
"""
from __future__ import annotations

import hashlib
import keyword
import re
import weakref
from collections.abc import Iterator
from typing import Any, ClassVar, Union

from mlmyths.errors import UserError

Dim = Union[str, int]  # a dimension: a symbol such as "n" or a fixed size
Shape = tuple[Dim, ...]

#: Elementwise functions with their printed names (``step`` is the Heaviside step, 1 where
#: the argument is positive, else 0: the almost-everywhere derivative of ``relu``).
UNARY_FUNCTIONS = ("exp", "log", "sin", "cos", "tan", "arcsin", "arccos", "arctan", "tanh", "sigmoid", "sqrt",
                   "abs", "sign", "relu", "step", "power")
#: Matrix functions with their own differentiation rules.
MATRIX_FUNCTIONS = ("inv", "det", "logdet")

_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")


class ShapeError(UserError):
    """Operands whose shapes do not fit (names both operands and their shapes)."""


def check_name(name: str, what: str = "variable name") -> str:
    """``name`` if it is a plain identifier (letters, digits, ``_``; not a Python keyword).

    Only such names ever reach generated source code.
    """
    if not isinstance(name, str) or not _IDENTIFIER.match(name) or keyword.iskeyword(name):
        raise UserError(f"{what} must be an identifier (a letter, then letters, digits or '_'), got {name!r}")
    return name


def check_dim(dim: Any) -> Dim:
    """A dimension: an identifier symbol or a positive integer."""
    if isinstance(dim, bool):
        raise UserError(f"a dimension must be a name like 'n' or a positive integer, got {dim!r}")
    if isinstance(dim, int):
        if dim < 1:
            raise UserError(f"a dimension must be a name like 'n' or a positive integer, got {dim!r}")
        return dim
    return check_name(dim, "dimension name")


def shape_text(shape: Shape) -> str:
    """``('n', 'm')`` -> ``"(n, m)"``; scalars -> ``"()"``."""
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


# -- nodes ----------------------------------------------------------------------------------

_TABLE: weakref.WeakValueDictionary[bytes, Expr] = weakref.WeakValueDictionary()


class Expr:
    """Base class of all expression nodes: ``shape``, ``children()``, a structural ``digest``.

    Operators build new expressions (``+ - * / ** @``, ``.T``); see :mod:`mlmyths.tensorcalc.ops`.
    """

    __slots__ = ("shape", "digest", "free_vars", "__weakref__")
    __array_ufunc__ = None  # numpy scalars and arrays defer to our operators (np.float64(2) * x)
    kind: ClassVar[str] = "expr"
    shape: Shape
    digest: bytes
    free_vars: frozenset[Var]

    # interning: every node class calls _intern from its constructor function
    @classmethod
    def _intern(cls, params: tuple[Any, ...], children: tuple[Expr, ...], shape: Shape, **fields: Any) -> Any:
        h = hashlib.blake2b(digest_size=16)
        h.update(repr((cls.kind, params, shape)).encode())
        for child in children:
            h.update(child.digest)
        digest = h.digest()
        node = _TABLE.get(digest)
        if node is not None:
            return node
        node = object.__new__(cls)
        object.__setattr__(node, "shape", tuple(shape))
        object.__setattr__(node, "digest", digest)
        for key, value in fields.items():
            object.__setattr__(node, key, value)
        free: frozenset[Var] = frozenset()
        for child in children:
            free |= child.free_vars
        object.__setattr__(node, "free_vars", frozenset([node]) if cls is Var else free)
        _TABLE[digest] = node
        return node

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("tensorcalc expressions are immutable")

    def __hash__(self) -> int:
        return hash(self.digest)

    def __eq__(self, other: object) -> bool:  # interned: structural equality is identity
        return self is other

    def __reduce__(self) -> Any:
        raise TypeError("tensorcalc expressions are not pickled; rebuild them with tc.parse or the operator API")

    @property
    def rank(self) -> int:
        return len(self.shape)

    def children(self) -> tuple[Expr, ...]:
        return ()

    @property
    def key(self) -> str:
        """A short, stable sort key (hex of the structural digest)."""
        return self.digest.hex()

    def __repr__(self) -> str:
        from mlmyths.tensorcalc.printing import to_string

        text = to_string(self)
        if len(text) > 200:
            text = text[:197] + "..."
        return f"<tensorcalc {type(self).__name__} {shape_text(self.shape)}: {text}>"

    def __str__(self) -> str:
        from mlmyths.tensorcalc.printing import to_string

        return to_string(self)

    # The operator API lives in ops.py; these forward to it.
    def __add__(self, other: Any) -> Expr:
        from mlmyths.tensorcalc import ops

        return ops.add(self, other)

    def __radd__(self, other: Any) -> Expr:
        from mlmyths.tensorcalc import ops

        return ops.add(other, self)

    def __sub__(self, other: Any) -> Expr:
        from mlmyths.tensorcalc import ops

        return ops.subtract(self, other)

    def __rsub__(self, other: Any) -> Expr:
        from mlmyths.tensorcalc import ops

        return ops.subtract(other, self)

    def __neg__(self) -> Expr:
        from mlmyths.tensorcalc import ops

        return ops.negate(self)

    def __mul__(self, other: Any) -> Expr:
        from mlmyths.tensorcalc import ops

        return ops.multiply(self, other)

    def __rmul__(self, other: Any) -> Expr:
        from mlmyths.tensorcalc import ops

        return ops.multiply(other, self)

    def __truediv__(self, other: Any) -> Expr:
        from mlmyths.tensorcalc import ops

        return ops.divide(self, other)

    def __rtruediv__(self, other: Any) -> Expr:
        from mlmyths.tensorcalc import ops

        return ops.divide(other, self)

    def __pow__(self, exponent: Any) -> Expr:
        from mlmyths.tensorcalc import ops

        return ops.power(self, exponent)

    def __rpow__(self, base: Any) -> Expr:
        from mlmyths.tensorcalc import ops

        return ops.power(base, self)

    def __matmul__(self, other: Any) -> Expr:
        from mlmyths.tensorcalc import ops

        return ops.matmul(self, other)

    def __rmatmul__(self, other: Any) -> Expr:
        from mlmyths.tensorcalc import ops

        return ops.matmul(other, self)

    @property
    def T(self) -> Expr:  # noqa: N802 - numpy's name
        from mlmyths.tensorcalc import ops

        return ops.transpose(self)


class Var(Expr):
    """An input tensor: ``name`` and ``shape`` (dimension symbols or sizes)."""

    __slots__ = ("name",)
    kind = "var"
    name: str

    @staticmethod
    def make(name: str, shape: Shape) -> Var:
        return Var._intern((name,), (), tuple(shape), name=name)


class Const(Expr):
    """A tensor of ``shape`` filled with ``value`` (a scalar when the shape is ``()``)."""

    __slots__ = ("value",)
    kind = "const"
    value: float

    @staticmethod
    def make(value: float, shape: Shape = ()) -> Const:
        value = float(value)
        if value == 0.0:
            value = 0.0  # -0.0 and 0.0 are one node
        return Const._intern((value,), (), tuple(shape), value=value)


class Delta(Expr):
    """The identity tensor of shape ``dims + dims``: ``δ[s, t] = 1`` iff ``s == t``."""

    __slots__ = ("dims",)
    kind = "delta"
    dims: Shape

    @staticmethod
    def make(dims: Shape) -> Delta:
        dims = tuple(dims)
        return Delta._intern((dims,), (), dims + dims, dims=dims)


class Product(Expr):
    """Generalized product: ``out[output] = Σ Π_k operands[k][indices[k]]``.

    Labels are small integers; a label in ``output`` is kept, a label that appears
    only in operands is summed over, and a label shared by operands and the output is
    an elementwise (diagonal) index. Built by :func:`simplify.product`, which keeps
    products in a canonical form.
    """

    __slots__ = ("operands", "indices", "output")
    kind = "product"
    operands: tuple[Expr, ...]
    indices: tuple[tuple[int, ...], ...]
    output: tuple[int, ...]

    @staticmethod
    def make(operands: tuple[Expr, ...], indices: tuple[tuple[int, ...], ...], output: tuple[int, ...],
             shape: Shape) -> Product:
        return Product._intern((indices, output), tuple(operands), shape, operands=tuple(operands),
                               indices=tuple(indices), output=tuple(output))

    def children(self) -> tuple[Expr, ...]:
        return self.operands

    def label_dims(self) -> dict[int, Dim]:
        dims: dict[int, Dim] = {}
        for op, idx in zip(self.operands, self.indices):
            for label, dim in zip(idx, op.shape):
                dims[label] = dim
        return dims

    def summed(self) -> set[int]:
        """Labels summed over (in operands, not in the output)."""
        return {label for idx in self.indices for label in idx} - set(self.output)


class Lin(Expr):
    """A linear combination ``Σ coef_i * term_i`` of terms of one shape."""

    __slots__ = ("terms",)
    kind = "lin"
    terms: tuple[tuple[float, Expr], ...]

    @staticmethod
    def make(terms: tuple[tuple[float, Expr], ...], shape: Shape) -> Lin:
        coefs = tuple(float(c) for c, _ in terms)
        return Lin._intern((coefs,), tuple(t for _, t in terms), shape, terms=tuple(terms))

    def children(self) -> tuple[Expr, ...]:
        return tuple(t for _, t in self.terms)


class Apply(Expr):
    """An elementwise function of ``arg``; ``power`` carries its constant exponent in ``param``."""

    __slots__ = ("fn", "arg", "param")
    kind = "apply"
    fn: str
    arg: Expr
    param: float | None

    @staticmethod
    def make(fn: str, arg: Expr, param: float | None = None) -> Apply:
        return Apply._intern((fn, param), (arg,), arg.shape, fn=fn, arg=arg, param=param)

    def children(self) -> tuple[Expr, ...]:
        return (self.arg,)


class Pow(Expr):
    """The elementwise power ``base .^ exponent`` of two expressions of one shape."""

    __slots__ = ("base", "exponent")
    kind = "pow"
    base: Expr
    exponent: Expr

    @staticmethod
    def make(base: Expr, exponent: Expr) -> Pow:
        return Pow._intern((), (base, exponent), base.shape, base=base, exponent=exponent)

    def children(self) -> tuple[Expr, ...]:
        return (self.base, self.exponent)


class MatFn(Expr):
    """A matrix function of a square matrix ``X`` (n x n).

    ``inv`` (a matrix), ``logdet`` (a scalar) and ``det`` with ``order`` k >= 0: the k-th
    derivative tensor of the determinant, of shape ``(n, n) * k``, with
    ``D_k[i1, j1, ..., ik, jk] = ∂^k det(X) / ∂X[i1, j1] ... ∂X[ik, jk]``. ``D_0`` is
    ``det(X)``, ``D_1`` the cofactor matrix ``adj(X)'``; each entry is a signed minor of
    ``X``, a polynomial, so every order is defined where ``X`` is singular.
    """

    __slots__ = ("fn", "arg", "order")
    kind = "matfn"
    fn: str
    arg: Expr
    order: int

    @staticmethod
    def make(fn: str, arg: Expr, order: int = 0) -> MatFn:
        shape = arg.shape if fn == "inv" else tuple(arg.shape) * order if fn == "det" else ()
        return MatFn._intern((fn, order), (arg,), shape, fn=fn, arg=arg, order=order)

    def children(self) -> tuple[Expr, ...]:
        return (self.arg,)


# -- traversal -------------------------------------------------------------------------------


def topological(root: Expr) -> list[Expr]:
    """All distinct nodes of the DAG under ``root``, children before parents."""
    order: list[Expr] = []
    seen: set[int] = set()
    stack: list[tuple[Expr, bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        for child in reversed(node.children()):
            if id(child) not in seen:
                stack.append((child, False))
    return order


def parents_count(root: Expr) -> dict[Expr, int]:
    """How many references each node of the DAG receives (the root counts one)."""
    counts: dict[Expr, int] = {root: 1}
    for node in topological(root):
        for child in node.children():
            counts[child] = counts.get(child, 0) + 1
    return counts


def iter_nodes(root: Expr) -> Iterator[Expr]:
    yield from topological(root)


def node_count(root: Expr, operations_only: bool = True) -> int:
    """Distinct nodes of the expression DAG (by default only operations, not inputs/constants).

    This is the size compared with the equations of a jaxpr or the nodes of a torch.fx graph.
    """
    nodes = topological(root)
    if operations_only:
        return sum(1 for n in nodes if not isinstance(n, (Var, Const, Delta)))
    return len(nodes)


def variables(root: Expr) -> list[Var]:
    """The variables of ``root`` in order of first appearance (depth first, left to right)."""
    return [n for n in topological(root) if isinstance(n, Var)]
