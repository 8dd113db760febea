"""The string language of matrixcalculus.org, parsed into the IR (never eval'd).

Grammar (loosest to tightest binding)::

    expr    := term (('+' | '-') term)*
    term    := unary (('*' | '.*' | './' | '/') unary)*
    unary   := ('-' | '+') unary | power
    power   := postfix (('^' | '.^') unary)?         the exponent must be a constant
    postfix := primary "'"*
    primary := NUMBER | NAME | FUNCTION '(' expr ')' | '(' expr ')'

``*`` is the matrix product (a scalar operand scales), ``.*`` and ``./`` are
elementwise, ``/`` divides by a scalar, ``^`` raises a scalar and ``.^`` raises
elementwise to a constant power, ``'`` transposes (vectors are columns: ``x'`` is a
row, ``x'*y`` an inner and ``x*y'`` an outer product), and a scalar added to a
tensor is broadcast (``exp(v) + 1``). Functions: ``exp log sin cos tanh sigmoid sqrt
abs sign sum tr det logdet inv norm2 diag``.

Variables are declared with a kind: ``"scalar"``, ``"vector"``, ``"matrix"`` or a
tuple of dimension names/sizes (``("n", "m")``). Undeclared names are matrices if
they start with an upper-case letter and vectors otherwise (matrixcalculus.org's
convention). Dimensions are inferred: ``x'*A*x`` makes ``A`` square. Named dimensions
that are forced equal raise :class:`~mlmyths.tensorcalc.ShapeError` naming both
operands; malformed input raises :class:`ParseError` with the column and what was
expected.

>>> from mlmyths import tensorcalc as tc
>>> f = tc.parse("x'*A*x", x="vector", A="matrix")
>>> tc.to_string(f), f.shape
("x'*A*x", ())
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from mlmyths.errors import UserError
from mlmyths.tensorcalc import ops
from mlmyths.tensorcalc import simplify as s
from mlmyths.tensorcalc.ir import Expr, ShapeError, check_dim, check_name

FUNCTIONS = ("exp", "log", "sin", "cos", "tanh", "sigmoid", "sqrt", "abs", "sign",
             "sum", "tr", "det", "logdet", "inv", "norm2", "diag")
KINDS = ("scalar", "vector", "matrix")
DIM_NAMES = ("n", "m", "p", "q", "r", "s", "t", "u", "v", "w")


class ParseError(UserError):
    """A malformed expression: says at which column, what was expected and what was found."""

    def __init__(self, text: str, column: int, expected: str, found: str):
        self.text, self.column, self.expected, self.found = text, column, expected, found
        super().__init__(f"cannot parse {text!r}: at column {column}, expected {expected}, found {found}")


# -- tokens ----------------------------------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<num>(?:\d+(?:\.(?![*/^])\d*)?|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z][A-Za-z0-9_]*)
  | (?P<op>\.\*|\./|\.\^|[-+*/^'(),])
""", re.VERBOSE)


@dataclass(frozen=True)
class Token:
    kind: str  # num | name | op | end
    text: str
    column: int  # 1-based


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ParseError(text, pos + 1, "a number, a name, an operator (+ - * .* ./ / ^ .^ ') or a parenthesis",
                             repr(text[pos]))
        if m.lastgroup != "ws":
            tokens.append(Token(m.lastgroup, m.group(), pos + 1))  # type: ignore[arg-type]
        pos = m.end()
    tokens.append(Token("end", "", len(text) + 1))
    return tokens


def _found(tok: Token) -> str:
    return "end of input" if tok.kind == "end" else repr(tok.text)


# -- syntax tree -----------------------------------------------------------------------------


@dataclass
class Node:
    kind: str  # num | var | neg | add | sub | mul | emul | ediv | div | pow | epow | transpose | call
    start: int  # 0-based span in the text, for messages
    end: int
    value: Any = None  # number, name, function name
    args: list[Node] = field(default_factory=list)


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = tokenize(text)
        self.pos = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.pos]

    def advance(self) -> Token:
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def fail(self, expected: str) -> ParseError:
        return ParseError(self.text, self.tok.column, expected, _found(self.tok))

    def parse(self) -> Node:
        if self.tok.kind == "end":
            raise self.fail("an expression")
        node = self.expr()
        if self.tok.kind != "end":
            raise self.fail("an operator or the end of the expression")
        return node

    def expr(self) -> Node:
        left = self.term()
        while self.tok.text in ("+", "-") and self.tok.kind == "op":
            op = self.advance().text
            right = self.term()
            left = Node("add" if op == "+" else "sub", left.start, right.end, args=[left, right])
        return left

    def term(self) -> Node:
        left = self.unary()
        kinds = {"*": "mul", ".*": "emul", "./": "ediv", "/": "div"}
        while self.tok.kind == "op" and self.tok.text in kinds:
            kind = kinds[self.advance().text]
            right = self.unary()
            left = Node(kind, left.start, right.end, args=[left, right])
        return left

    def unary(self) -> Node:
        if self.tok.kind == "op" and self.tok.text in ("-", "+"):
            tok = self.advance()
            operand = self.unary()
            if tok.text == "+":
                return operand
            return Node("neg", tok.column - 1, operand.end, args=[operand])
        return self.power()

    def power(self) -> Node:
        base = self.postfix()
        if self.tok.kind == "op" and self.tok.text in ("^", ".^"):
            kind = "pow" if self.advance().text == "^" else "epow"
            exp_start = self.tok
            exponent = self.unary()
            value = _constant(exponent)
            if value is None:
                raise ParseError(self.text, exp_start.column, "a constant exponent (a number)",
                                 repr(self.text[exponent.start:exponent.end]))
            return Node(kind, base.start, exponent.end, value=value, args=[base])
        return base

    def postfix(self) -> Node:
        node = self.primary()
        while self.tok.kind == "op" and self.tok.text == "'":
            tok = self.advance()
            node = Node("transpose", node.start, tok.column, args=[node])
        return node

    def primary(self) -> Node:
        tok = self.tok
        if tok.kind == "num":
            self.advance()
            return Node("num", tok.column - 1, tok.column - 1 + len(tok.text), value=float(tok.text))
        if tok.kind == "name":
            self.advance()
            if tok.text in FUNCTIONS:
                if not (self.tok.kind == "op" and self.tok.text == "("):
                    raise self.fail(f"'(' after the function name {tok.text!r}")
                self.advance()
                if self.tok.kind == "op" and self.tok.text == ")":
                    raise self.fail(f"an argument of {tok.text}()")
                arg = self.expr()
                if not (self.tok.kind == "op" and self.tok.text == ")"):
                    raise self.fail(f"')' closing {tok.text}( (functions take one argument)")
                close = self.advance()
                return Node("call", tok.column - 1, close.column, value=tok.text, args=[arg])
            if self.tok.kind == "op" and self.tok.text == "(":
                raise ParseError(self.text, tok.column, f"a function name ({', '.join(FUNCTIONS)})",
                                 repr(tok.text))
            return Node("var", tok.column - 1, tok.column - 1 + len(tok.text), value=tok.text)
        if tok.kind == "op" and tok.text == "(":
            self.advance()
            if self.tok.kind == "op" and self.tok.text == ")":
                raise self.fail("an expression inside the parentheses")
            node = self.expr()
            if not (self.tok.kind == "op" and self.tok.text == ")"):
                raise self.fail("')' or an operator")
            close = self.advance()
            node.start, node.end = tok.column - 1, close.column  # include the parentheses in messages
            return node
        raise self.fail("an operand (a variable, a number, a function call or '(')")


def _constant(node: Node) -> float | None:
    """The value of a constant subexpression (numbers and + - * / ^ of numbers), else None."""
    if node.kind == "num":
        return float(node.value)
    vals = [_constant(a) for a in node.args]
    if not node.args or any(v is None for v in vals):
        return None
    try:
        if node.kind == "neg":
            return -vals[0]  # type: ignore[operator]
        a, b = vals[0], (vals[1] if len(vals) > 1 else None)
        if node.kind == "add":
            return a + b  # type: ignore[operator]
        if node.kind == "sub":
            return a - b  # type: ignore[operator]
        if node.kind in ("mul", "emul"):
            return a * b  # type: ignore[operator]
        if node.kind in ("div", "ediv"):
            return a / b  # type: ignore[operator]
        if node.kind in ("pow", "epow"):
            return float(a ** node.value)  # type: ignore[operator]
    except (ZeroDivisionError, OverflowError, TypeError):
        return None
    return None


# -- types and dimension inference -------------------------------------------------------------


@dataclass
class _Type:
    kind: str  # scalar | col | row | mat | ten
    dims: list[int]  # dimension classes (union-find ids)


class _Dims:
    """Union-find over dimension classes; a class may carry a user name or a size."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.name: dict[int, Any] = {}

    def new(self, name: Any = None) -> int:
        self.parent.append(len(self.parent))
        if name is not None:
            self.name[len(self.parent) - 1] = name
        return len(self.parent) - 1

    def find(self, d: int) -> int:
        while self.parent[d] != d:
            self.parent[d] = self.parent[self.parent[d]]
            d = self.parent[d]
        return d

    def label(self, d: int) -> str:
        r = self.find(d)
        return str(self.name[r]) if r in self.name else f"?{r}"

    def unify(self, a: int, b: int) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return True
        na, nb = self.name.get(ra), self.name.get(rb)
        if na is not None and nb is not None and na != nb:
            return False
        self.parent[rb] = ra
        if na is None and nb is not None:
            self.name[ra] = nb
        return True


class _Typer:
    def __init__(self, text: str, kinds: dict[str, Any]):
        self.text = text
        self.kinds = kinds
        self.dims = _Dims()
        self.var_types: dict[str, _Type] = {}
        self.var_order: list[str] = []
        self.types: dict[int, _Type] = {}

    def src(self, node: Node) -> str:
        return self.text[node.start:node.end].strip()

    def describe(self, node: Node) -> str:
        t = self.types[id(node)]
        d = [self.dims.label(x) for x in t.dims]
        what = {"scalar": "scalar", "col": f"column vector of size {d[0] if d else ''}",
                "row": f"row vector of size {d[0] if d else ''}",
                "mat": f"matrix of shape {' x '.join(d)}", "ten": f"tensor of shape {' x '.join(d)}"}[t.kind]
        return f"{self.src(node)} ({what})"

    def shape_error(self, verb: str, a: Node, b: Node, hint: str = "") -> ShapeError:
        msg = f"in {self.text!r}: cannot {verb} {self.describe(a)} and {self.describe(b)}"
        return ShapeError(msg + (f": {hint}" if hint else ""))

    def unify(self, x: int, y: int, verb: str, a: Node, b: Node) -> None:
        if not self.dims.unify(x, y):
            raise self.shape_error(verb, a, b, f"dimension {self.dims.label(x)} is not {self.dims.label(y)}")

    def declare(self, name: str) -> _Type:
        if name in self.var_types:
            return self.var_types[name]
        kind = self.kinds.get(name)
        if kind is None:
            kind = "matrix" if name[0].isupper() else "vector"
        if isinstance(kind, str):
            if kind not in KINDS:
                raise UserError(f"variable {name!r}: kind must be one of {', '.join(KINDS)} or a tuple of "
                                f"dimension names, got {kind!r}")
            t = {"scalar": _Type("scalar", []), "vector": _Type("col", [self.dims.new()]),
                 "matrix": _Type("mat", [self.dims.new(), self.dims.new()])}[kind]
        else:
            try:
                names = [check_dim(int(d) if isinstance(d, str) and d.isdigit() else d) for d in kind]
            except TypeError:
                raise UserError(f"variable {name!r}: kind must be one of {', '.join(KINDS)} or a tuple of "
                                f"dimension names, got {kind!r}") from None
            ids = [self.dims.new(d) for d in names]
            t = _Type({0: "scalar", 1: "col", 2: "mat"}.get(len(ids), "ten"), ids)
        self.var_types[name] = t
        self.var_order.append(name)
        return t

    def type(self, node: Node) -> _Type:
        t = self._type(node)
        self.types[id(node)] = t
        return t

    def _type(self, node: Node) -> _Type:
        k = node.kind
        if k == "num":
            return _Type("scalar", [])
        if k == "var":
            check_name(node.value)
            return self.declare(node.value)
        args = [self.type(a) for a in node.args]
        if k == "neg":
            return args[0]
        if k == "transpose":
            t = args[0]
            if t.kind == "ten":
                raise ShapeError(f"in {self.text!r}: cannot transpose {self.describe(node.args[0])} with '; "
                                 "transpose takes scalars, vectors and matrices")
            flip = {"col": "row", "row": "col", "mat": "mat", "scalar": "scalar"}[t.kind]
            return _Type(flip, list(reversed(t.dims)) if t.kind == "mat" else list(t.dims))
        if k in ("add", "sub", "emul", "ediv"):
            return self.elementwise(node, *args)
        if k == "div":
            a, b = args
            if b.kind != "scalar":
                raise self.shape_error("divide", node.args[0], node.args[1],
                                       "'/' divides by a scalar; use './' for elementwise division")
            return a
        if k == "mul":
            return self.matmul(node, *args)
        if k in ("pow", "epow"):
            if k == "pow" and args[0].kind != "scalar":
                raise ShapeError(f"in {self.text!r}: '^' raises a scalar, but {self.describe(node.args[0])} is not "
                                 "one; use '.^' for an elementwise power")
            return args[0]
        if k == "call":
            return self.call(node, args[0])
        raise AssertionError(k)  # pragma: no cover

    def elementwise(self, node: Node, a: _Type, b: _Type) -> _Type:
        verb = {"add": "add", "sub": "subtract", "emul": "multiply elementwise", "ediv": "divide elementwise"}[node.kind]
        na, nb = node.args
        if a.kind == "scalar":
            return b
        if b.kind == "scalar":
            return a
        if a.kind != b.kind or len(a.dims) != len(b.dims):
            hint = "a column and a row vector (transpose one of them)" if {a.kind, b.kind} == {"col", "row"} \
                else "the shapes differ"
            raise self.shape_error(verb, na, nb, hint)
        for x, y in zip(a.dims, b.dims):
            self.unify(x, y, verb, na, nb)
        return a

    def matmul(self, node: Node, a: _Type, b: _Type) -> _Type:
        na, nb = node.args
        if a.kind == "scalar":
            return b
        if b.kind == "scalar":
            return a
        pair = (a.kind, b.kind)
        if pair == ("mat", "mat"):
            self.unify(a.dims[1], b.dims[0], "multiply", na, nb)
            return _Type("mat", [a.dims[0], b.dims[1]])
        if pair == ("mat", "col"):
            self.unify(a.dims[1], b.dims[0], "multiply", na, nb)
            return _Type("col", [a.dims[0]])
        if pair == ("row", "mat"):
            self.unify(a.dims[0], b.dims[0], "multiply", na, nb)
            return _Type("row", [b.dims[1]])
        if pair == ("row", "col"):
            self.unify(a.dims[0], b.dims[0], "multiply", na, nb)
            return _Type("scalar", [])
        if pair == ("col", "row"):
            return _Type("mat", [a.dims[0], b.dims[0]])
        hints = {("col", "col"): f"write {self.src(na)}'*{self.src(nb)} for the inner product or .* elementwise",
                 ("row", "row"): "write x*y' for the outer product or .* elementwise",
                 ("col", "mat"): "a column vector times a matrix; transpose the vector",
                 ("mat", "row"): "a matrix times a row vector; transpose the vector"}
        raise self.shape_error("multiply", na, nb, hints.get(pair, "'*' takes scalars, vectors and matrices"))

    def call(self, node: Node, a: _Type) -> _Type:
        fn = node.value
        arg = node.args[0]
        if fn in ("exp", "log", "sin", "cos", "tanh", "sigmoid", "sqrt", "abs", "sign"):
            return a
        if fn in ("sum", "norm2"):
            return _Type("scalar", [])
        if fn in ("tr", "det", "logdet", "inv") or (fn == "diag" and a.kind == "mat"):
            if a.kind != "mat":
                raise ShapeError(f"in {self.text!r}: {fn}() needs a square matrix, got {self.describe(arg)}")
            if not self.dims.unify(a.dims[0], a.dims[1]):
                raise ShapeError(f"in {self.text!r}: {fn}() needs a square matrix, got {self.describe(arg)}")
            if fn == "inv":
                return a
            if fn == "diag":
                return _Type("col", [a.dims[0]])
            return _Type("scalar", [])
        if fn == "diag":
            if a.kind not in ("col", "row"):
                raise ShapeError(f"in {self.text!r}: diag() takes a vector or a square matrix, "
                                 f"got {self.describe(arg)}")
            return _Type("mat", [a.dims[0], a.dims[0]])
        raise AssertionError(fn)  # pragma: no cover

    def resolve_names(self) -> dict[int, Any]:
        """Final dimension per class: the user's name or size, else n, m, p, ... in order of appearance."""
        used = {v for v in self.dims.name.values()}
        pool = [d for d in DIM_NAMES if d not in used] + [f"n{i}" for i in range(100)]
        final: dict[int, Any] = {}
        for name in self.var_order:
            for d in self.var_types[name].dims:
                r = self.dims.find(d)
                if r not in final:
                    final[r] = self.dims.name[r] if r in self.dims.name else pool.pop(0)
        return final


# -- lowering to the IR ----------------------------------------------------------------------


class _Lower:
    def __init__(self, typer: _Typer):
        self.t = typer
        final = typer.resolve_names()
        self.vars: dict[str, Expr] = {}
        for name in typer.var_order:
            vt = typer.var_types[name]
            self.vars[name] = ops.tensor(name, tuple(final[typer.dims.find(d)] for d in vt.dims))

    def kind(self, node: Node) -> str:
        return self.t.types[id(node)].kind

    def lower(self, node: Node) -> Expr:
        k = node.kind
        if k == "num":
            return s.const(node.value)
        if k == "var":
            return self.vars[node.value]
        args = [self.lower(a) for a in node.args]
        if k == "neg":
            return ops.negate(args[0])
        if k == "transpose":
            return ops.transpose(args[0]) if self.kind(node.args[0]) == "mat" else args[0]
        if k == "add":
            return ops.add(*args)
        if k == "sub":
            return ops.subtract(*args)
        if k == "emul":
            return ops.multiply(*args)
        if k in ("ediv", "div"):
            return ops.divide(*args)
        if k in ("pow", "epow"):
            return ops.power(args[0], node.value)
        if k == "mul":
            ka, kb = self.kind(node.args[0]), self.kind(node.args[1])
            if "scalar" in (ka, kb):
                return ops.multiply(*args)
            if (ka, kb) == ("col", "row"):
                return ops.outer(*args)
            return ops.matmul(*args)
        if k == "call":
            fn = node.value
            a = args[0]
            table = {"sum": ops.sum, "tr": ops.trace, "det": ops.det, "logdet": ops.logdet, "inv": ops.inv,
                     "norm2": ops.norm2, "diag": ops.diag}
            if fn in table:
                return table[fn](a)
            return s.apply(fn, a)
        raise AssertionError(k)  # pragma: no cover


def parse(text: str, **kinds: Any) -> Expr:
    """Parse a matrixcalculus.org expression into a tensorcalc expression.

    Parameters
    ----------
    text : str
        E.g. ``"x'*A*x"`` or ``"sum(log(exp(-y.*(X*w)) + 1))"``.
    **kinds
        Per variable: ``"scalar"``, ``"vector"``, ``"matrix"`` or a tuple of dimension
        names/sizes such as ``("n", "k")``. Undeclared: upper-case initial -> matrix,
        else vector. Unnamed dimensions are called n, m, p, ... in order of appearance.

    Raises
    ------
    ParseError
        Malformed text (with the column and what was expected).
    ShapeError
        Operands whose shapes cannot fit (names both operands).

    Examples
    --------
    >>> from mlmyths import tensorcalc as tc
    >>> tc.parse("norm2(T - U*V')^2", T="matrix", U=("n", "k"), V=("m", "k")).shape
    ()
    """
    if not isinstance(text, str):
        raise UserError(f"parse() takes the expression as a string, got {type(text).__name__}")
    for name in kinds:
        check_name(name)
        if name in FUNCTIONS:
            raise UserError(f"{name!r} is a function name and cannot be a variable")
    tree = _Parser(text).parse()
    typer = _Typer(text, kinds)
    typer.type(tree)
    return _Lower(typer).lower(tree)
