"""The string language of matrixcalculus.org, parsed into the IR (never eval'd).

Grammar (loosest to tightest binding)::

    expr    := term (('+' | '-') term)*
    term    := unary (('*' | '.*' | './' | '/') unary)*
    unary   := ('-' | '+')* power
    power   := postfix (('^' | '.^') unary)?
    postfix := primary "'"*
    primary := NUMBER | NAME | FUNCTION '(' expr ')' | '(' expr ')'

``*`` is the matrix product (a scalar operand scales), ``.*`` and ``./`` are
elementwise, ``/`` divides by a scalar, ``^`` raises a scalar to a scalar power and
``.^`` raises elementwise (to a number, or to an expression: ``x.^y``, ``a^b``),
``'`` transposes (vectors are columns: ``x'`` is a row, ``x'*y`` an inner and
``x*y'`` an outer product), and a scalar added to a tensor is broadcast
(``exp(v) + 1``). Functions: elementwise ``exp log sin cos tan arcsin arccos arctan
tanh sigmoid sqrt abs sign relu step``; ``sum norm1 norm2 tr det logdet inv adj diag``;
``vector(c)`` and ``matrix(c)``, the vector or matrix with every entry the scalar
``c``, of the size its context requires (``log(exp(x) + vector(1))``). The table of
the whole language, with what matrixcalculus.org accepts, is in
``docs/tensorcalc-language.md``.

Variables are declared with a kind: ``"scalar"``, ``"vector"``, ``"matrix"`` or a
tuple of dimension names/sizes (``("n", "m")``). Undeclared names follow
matrixcalculus.org's defaults by their first letter: ``a``-``g`` are scalars,
``h``-``z`` vectors and ``A``-``Z`` matrices. Dimensions are inferred: ``x'*A*x``
makes ``A`` square. Named dimensions that are forced equal raise
:class:`~mlmyths.tensorcalc.ShapeError` naming both operands; malformed input raises
:class:`ParseError` with the column and what was expected. Hostile input is bounded:
at most :data:`MAX_LENGTH` characters and :data:`MAX_NESTING` levels of nesting
(parentheses, function calls, exponents), and numbers must be finite; sums and
products of any number of terms are flat, not nested.

>>> from mlmyths import tensorcalc as tc
>>> f = tc.parse("x'*A*x", x="vector", A="matrix")
>>> tc.to_string(f), f.shape
("x'*A*x", ())
"""
from __future__ import annotations

import difflib
import itertools
import math
import re
from dataclasses import dataclass, field
from typing import Any

from mlmyths.errors import UserError
from mlmyths.tensorcalc import ops
from mlmyths.tensorcalc import simplify as s
from mlmyths.tensorcalc.ir import Const, Expr, Lin, ShapeError, check_dim, check_name, topological

ELEMENTWISE = ("exp", "log", "sin", "cos", "tan", "arcsin", "arccos", "arctan", "tanh", "sigmoid", "sqrt", "abs",
               "sign", "relu", "step")
FUNCTIONS = ELEMENTWISE + ("sum", "norm1", "norm2", "tr", "det", "logdet", "inv", "adj", "diag", "vector", "matrix")
KINDS = ("scalar", "vector", "matrix")
DIM_NAMES = ("n", "m", "p", "q", "r", "s", "t", "u", "v", "w")
MAX_LENGTH = 100_000  #: characters in one expression
MAX_NESTING = 100  #: levels of parentheses, function calls and exponents inside each other


def _quote(text: str, column: int | None = None, width: int = 60) -> str:
    """``repr(text)``, or of an excerpt of at most ``width`` characters (around ``column``)."""
    if len(text) <= width:
        return repr(text)
    at = (column or 1) - 1
    lo = max(0, min(at - width // 2, len(text) - width))
    excerpt = text[lo:lo + width]
    return ("..." if lo > 0 else "") + repr(excerpt) + ("..." if lo + width < len(text) else "") + \
        f" ({len(text)} characters)"


class ParseError(UserError):
    """A malformed expression: says at which column, what was expected and what was found."""

    def __init__(self, text: str, column: int, expected: str, found: str, message: str | None = None):
        self.text, self.column, self.expected, self.found = text, column, expected, found
        super().__init__(message or f"cannot parse {_quote(text, column)}: at column {column}, expected {expected}, "
                                    f"found {found}")


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
        if m.lastgroup == "num" and not math.isfinite(float(m.group())):
            shown = m.group() if len(m.group()) <= 20 else m.group()[:17] + "..."
            raise ParseError(text, pos + 1, "a finite number (at most about 1.8e308)",
                             f"{shown!r}, which overflows to infinity")
        if m.lastgroup != "ws":
            tokens.append(Token(m.lastgroup, m.group(), pos + 1))  # type: ignore[arg-type]
        pos = m.end()
    tokens.append(Token("end", "", len(text) + 1))
    return tokens


def _found(tok: Token) -> str:
    if tok.kind == "end":
        return "end of input"
    return repr(tok.text if len(tok.text) <= 20 else tok.text[:17] + "...")


# -- syntax tree -----------------------------------------------------------------------------


@dataclass
class Node:
    """A syntax-tree node. Sums and products are flat (n-ary), so that long ones are not deep.

    kind: num | var | neg | transpose | call | sum (value: the sign of each term) |
    chain (value: the operator between consecutive factors, ``*`` ``.*`` ``./`` ``/``) |
    pow | epow (args: base, exponent) | part (the first k operands of a sum or chain, for messages)
    """

    kind: str
    start: int  # 0-based span in the text, for messages
    end: int
    value: Any = None  # number, name, function name, signs or operators
    args: list[Node] = field(default_factory=list)


def _postorder(root: Node) -> list[Node]:
    """The tree's nodes, children before parents (no recursion)."""
    out: list[Node] = []
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if done:
            out.append(node)
            continue
        stack.append((node, True))
        stack.extend((a, False) for a in reversed(node.args))
    return out


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = tokenize(text)
        self.pos = 0
        self.depth = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.pos]

    def advance(self) -> Token:
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def fail(self, expected: str) -> ParseError:
        return ParseError(self.text, self.tok.column, expected, _found(self.tok))

    def enter(self, tok: Token) -> None:
        """One level deeper (a parenthesis, a call, an exponent); bounded by MAX_NESTING."""
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise ParseError(self.text, tok.column, f"at most {MAX_NESTING} levels of nesting", "deeper nesting",
                             message=f"expression nested deeper than {MAX_NESTING} levels (parentheses, function "
                                     f"calls and exponents inside each other) at column {tok.column} of "
                                     f"{_quote(self.text, tok.column)}; write it with fewer levels")

    def is_op(self, *texts: str) -> bool:
        return self.tok.kind == "op" and self.tok.text in texts

    def parse(self) -> Node:
        if self.tok.kind == "end":
            raise self.fail("an expression")
        node = self.expr()
        if self.tok.kind != "end":
            raise self.fail("an operator or the end of the expression")
        return node

    def expr(self) -> Node:
        terms = [self.term()]
        signs = [1]
        while self.is_op("+", "-"):
            signs.append(1 if self.advance().text == "+" else -1)
            terms.append(self.term())
        if len(terms) == 1:
            return terms[0]
        return Node("sum", terms[0].start, terms[-1].end, value=signs, args=terms)

    def term(self) -> Node:
        factors = [self.unary()]
        operators: list[str] = []
        while self.is_op("*", ".*", "./", "/"):
            operators.append(self.advance().text)
            factors.append(self.unary())
        if len(factors) == 1:
            return factors[0]
        return Node("chain", factors[0].start, factors[-1].end, value=operators, args=factors)

    def unary(self) -> Node:
        first = self.tok
        negative = False
        while self.is_op("-", "+"):
            negative ^= self.advance().text == "-"
        operand = self.power()
        if negative:
            return Node("neg", first.column - 1, operand.end, args=[operand])
        return operand

    def power(self) -> Node:
        base = self.postfix()
        if self.is_op("^", ".^"):
            op = self.advance()
            self.enter(op)
            exponent = self.unary()
            self.depth -= 1
            return Node("pow" if op.text == "^" else "epow", base.start, exponent.end, args=[base, exponent])
        return base

    def postfix(self) -> Node:
        node = self.primary()
        count = 0
        while self.is_op("'"):
            end = self.advance().column
            count += 1
        if count % 2:  # x'' = x
            node = Node("transpose", node.start, end, args=[node])
        return node

    def primary(self) -> Node:
        tok = self.tok
        if tok.kind == "num":
            self.advance()
            return Node("num", tok.column - 1, tok.column - 1 + len(tok.text), value=float(tok.text))
        if tok.kind == "name":
            self.advance()
            if tok.text in FUNCTIONS:
                if not self.is_op("("):
                    raise self.fail(f"'(' after the function name {tok.text!r}")
                self.enter(self.advance())
                if self.is_op(")"):
                    raise self.fail(f"an argument of {tok.text}()")
                arg = self.expr()
                if not self.is_op(")"):
                    raise self.fail(f"')' closing {tok.text}( (functions take one argument)")
                close = self.advance()
                self.depth -= 1
                return Node("call", tok.column - 1, close.column, value=tok.text, args=[arg])
            if self.is_op("("):
                raise ParseError(self.text, tok.column, f"a function name ({', '.join(FUNCTIONS)})",
                                 _found(tok))
            return Node("var", tok.column - 1, tok.column - 1 + len(tok.text), value=tok.text)
        if self.is_op("("):
            self.enter(self.advance())
            if self.is_op(")"):
                raise self.fail("an expression inside the parentheses")
            node = self.expr()
            if not self.is_op(")"):
                raise self.fail("')' or an operator")
            close = self.advance()
            self.depth -= 1
            node.start, node.end = tok.column - 1, close.column  # include the parentheses in messages
            return node
        raise self.fail("an operand (a variable, a number, a function call or '(')")


def _constant(root: Node) -> float | None:
    """The value of a constant subexpression (numbers and + - * / ^ of numbers), else None."""
    values: dict[int, float | None] = {}
    for node in _postorder(root):
        vals = [values[id(a)] for a in node.args]
        value: float | None = None
        if node.kind == "num":
            value = float(node.value)
        elif node.args and all(v is not None for v in vals):
            try:
                if node.kind == "neg":
                    value = -vals[0]  # type: ignore[operator]
                elif node.kind == "sum":
                    value = sum(sign * v for sign, v in zip(node.value, vals))  # type: ignore[misc]
                elif node.kind == "chain":
                    value = vals[0]
                    for op, v in zip(node.value, vals[1:]):
                        value = value * v if op in ("*", ".*") else value / v  # type: ignore[operator]
                elif node.kind in ("pow", "epow"):
                    value = float(vals[0] ** vals[1])  # type: ignore[operator]
                elif node.kind == "transpose":
                    value = vals[0]
            except (ZeroDivisionError, OverflowError, TypeError):
                value = None
            if isinstance(value, complex) or (value is not None and not math.isfinite(value)):
                value = None
        values[id(node)] = value
    return values[id(root)]


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


def default_kind(name: str) -> str:
    """matrixcalculus.org's default kind of an undeclared name, by its first letter:
    ``a``-``g`` scalar, ``h``-``z`` vector, ``A``-``Z`` matrix."""
    first = name[0]
    if first.isupper():
        return "matrix"
    return "scalar" if first in "abcdefg" else "vector"


def kind_from_text(text: str, what: str = "kind") -> Any:
    """A variable kind written as text (the command line's ``--var NAME=KIND``).

    ``scalar``, ``vector`` or ``matrix``, or dimension names/sizes separated by commas
    (``n,m``: a matrix with n rows and m columns; ``k``: a vector of size k). A single
    word that looks like a misspelt kind (``matirx``, ``Vector``) is rejected with a
    suggestion instead of becoming a dimension name.

    >>> kind_from_text("n,3")
    ('n', 3)
    """
    expected = "scalar, vector, matrix, or dimension names/sizes separated by commas such as n,m"
    kind = text.strip()
    if kind in KINDS:
        return kind
    parts = [part.strip() for part in kind.split(",")]
    if not kind or any(not part for part in parts):
        raise UserError(f"{what}: expected {expected}, got {text!r}")
    dims: list[Any] = []
    for part in parts:
        if part.isdigit():
            if int(part) < 1:
                raise UserError(f"{what}: a dimension size must be a positive integer, got {part!r} in {text!r}")
            dims.append(int(part))
        elif re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", part):
            dims.append(part)
        else:
            raise UserError(f"{what}: {part!r} is not a dimension name (a letter, then letters, digits or '_') "
                            f"or size; expected {expected}, got {text!r}")
    if len(parts) == 1:
        close = difflib.get_close_matches(parts[0].lower(), KINDS, n=1, cutoff=0.6)
        if close:
            raise UserError(f"{what}: unknown kind {parts[0]!r}; did you mean {close[0]!r}? (expected {expected}; "
                            f"a dimension name that looks like a kind is not accepted)")
    return tuple(dims)


class _Typer:
    """Types every node bottom-up and unifies dimensions (union-find), without recursion."""

    def __init__(self, text: str, kinds: dict[str, Any]):
        self.text = text
        self.kinds = kinds
        self.dims = _Dims()
        self.var_types: dict[str, _Type] = {}
        self.var_order: list[str] = []
        self.types: dict[int, _Type] = {}
        self.partials: dict[int, list[_Type]] = {}  # sum/chain -> type after each operand
        self.parts: list[Node] = []  # the nodes made for messages, alive while their ids are keys
        self.made_dims: list[int] = []  # dimension classes created by vector()/matrix()

    def src(self, node: Node) -> str:
        text = self.text[node.start:node.end].strip()
        return text if len(text) <= 40 else text[:18] + "..." + text[-18:]

    def describe(self, node: Node) -> str:
        t = self.types[id(node)]
        d = [self.dims.label(x) for x in t.dims]
        what = {"scalar": "scalar", "col": f"column vector of size {d[0] if d else ''}",
                "row": f"row vector of size {d[0] if d else ''}",
                "mat": f"matrix of shape {' x '.join(d)}", "ten": f"tensor of shape {' x '.join(d)}"}[t.kind]
        return f"{self.src(node)} ({what})"

    def where(self) -> str:
        return f"in {_quote(self.text)}"

    def shape_error(self, verb: str, a: Node, b: Node, hint: str = "") -> ShapeError:
        msg = f"{self.where()}: cannot {verb} {self.describe(a)} and {self.describe(b)}"
        return ShapeError(msg + (f": {hint}" if hint else ""))

    def unify(self, x: int, y: int, verb: str, a: Node, b: Node) -> None:
        if not self.dims.unify(x, y):
            raise self.shape_error(verb, a, b, f"dimension {self.dims.label(x)} is not {self.dims.label(y)}")

    def declare(self, name: str) -> _Type:
        if name in self.var_types:
            return self.var_types[name]
        kind = self.kinds.get(name)
        if kind is None:
            kind = default_kind(name)
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

    def type(self, root: Node) -> _Type:
        for node in _postorder(root):
            self.types[id(node)] = self._type(node)
        return self.types[id(root)]

    def _part(self, node: Node, upto: int, t: _Type) -> Node:
        """The first ``upto + 1`` operands of a sum/chain as a node of type ``t`` (for messages)."""
        part = Node("part", node.args[0].start, node.args[upto].end)
        self.parts.append(part)
        self.types[id(part)] = t
        return part

    def _type(self, node: Node) -> _Type:
        k = node.kind
        if k == "num":
            return _Type("scalar", [])
        if k == "var":
            check_name(node.value)
            return self.declare(node.value)
        args = [self.types[id(a)] for a in node.args]
        if k == "neg":
            return args[0]
        if k == "transpose":
            t = args[0]
            if t.kind == "ten":
                raise ShapeError(f"{self.where()}: cannot transpose {self.describe(node.args[0])} with '; "
                                 "transpose takes scalars, vectors and matrices")
            flip = {"col": "row", "row": "col", "mat": "mat", "scalar": "scalar"}[t.kind]
            return _Type(flip, list(reversed(t.dims)) if t.kind == "mat" else list(t.dims))
        if k in ("sum", "chain"):
            t = args[0]
            partials = [t]
            for q in range(1, len(args)):
                left = self._part(node, q - 1, t)
                right = node.args[q]
                if k == "sum":
                    t = self.elementwise("add" if node.value[q] > 0 else "subtract", left, right, t, args[q])
                else:
                    t = self.binary(node.value[q - 1], left, right, t, args[q])
                partials.append(t)
            self.partials[id(node)] = partials
            return t
        if k == "pow":
            base, exponent = args
            if base.kind != "scalar":
                raise ShapeError(f"{self.where()}: '^' raises a scalar, but {self.describe(node.args[0])} is not "
                                 "one; use '.^' for an elementwise power")
            if exponent.kind != "scalar":
                raise ShapeError(f"{self.where()}: '^' raises to a scalar power, but {self.describe(node.args[1])} "
                                 "is not one; use '.^' for an elementwise power")
            return base
        if k == "epow":
            return self.elementwise("raise elementwise", node.args[0], node.args[1], *args)
        if k == "call":
            return self.call(node, args[0])
        raise AssertionError(k)  # pragma: no cover

    def binary(self, op: str, na: Node, nb: Node, a: _Type, b: _Type) -> _Type:
        if op == "*":
            return self.matmul(na, nb, a, b)
        if op in (".*", "./"):
            return self.elementwise("multiply elementwise" if op == ".*" else "divide elementwise", na, nb, a, b)
        if b.kind != "scalar":  # '/'
            raise self.shape_error("divide", na, nb, "'/' divides by a scalar; use './' for elementwise division")
        return a

    def elementwise(self, verb: str, na: Node, nb: Node, a: _Type, b: _Type) -> _Type:
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

    def matmul(self, na: Node, nb: Node, a: _Type, b: _Type) -> _Type:
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
        if fn in ELEMENTWISE:
            return a
        if fn in ("sum", "norm1", "norm2"):
            return _Type("scalar", [])
        if fn in ("vector", "matrix"):
            if a.kind != "scalar":
                raise ShapeError(f"{self.where()}: {fn}() takes a scalar (the value of every entry; the size comes "
                                 f"from the context), got {self.describe(arg)}")
            dims = [self.dims.new() for _ in range(1 if fn == "vector" else 2)]
            self.made_dims += dims
            return _Type("col" if fn == "vector" else "mat", dims)
        if fn in ("tr", "det", "logdet", "inv", "adj") or (fn == "diag" and a.kind == "mat"):
            if a.kind != "mat":
                raise ShapeError(f"{self.where()}: {fn}() needs a square matrix, got {self.describe(arg)}")
            if not self.dims.unify(a.dims[0], a.dims[1]):
                raise ShapeError(f"{self.where()}: {fn}() needs a square matrix, got {self.describe(arg)}")
            if fn in ("inv", "adj"):
                return a
            if fn == "diag":
                return _Type("col", [a.dims[0]])
            return _Type("scalar", [])
        if fn == "diag":
            if a.kind not in ("col", "row"):
                raise ShapeError(f"{self.where()}: diag() takes a vector or a square matrix, "
                                 f"got {self.describe(arg)}")
            return _Type("mat", [a.dims[0], a.dims[0]])
        raise AssertionError(fn)  # pragma: no cover

    def resolve_names(self) -> dict[int, Any]:
        """Final dimension per class: the user's name or size, else n, m, p, ... in order of
        appearance (variables first, then the sizes of vector()/matrix() fixed by nothing)."""
        used = {v for v in self.dims.name.values()}
        candidates = itertools.chain(DIM_NAMES, (f"n{i}" for i in itertools.count()))
        pool = (d for d in candidates if d not in used)
        final: dict[int, Any] = {}
        classes = [d for name in self.var_order for d in self.var_types[name].dims] + self.made_dims
        for d in classes:
            r = self.dims.find(d)
            if r not in final:
                final[r] = self.dims.name[r] if r in self.dims.name else next(pool)
        return final


# -- lowering to the IR ----------------------------------------------------------------------


class _Lower:
    """Builds the IR bottom-up from the typed tree, without recursion."""

    def __init__(self, typer: _Typer):
        self.t = typer
        self.final = typer.resolve_names()
        self.vars: dict[str, Expr] = {}
        for name in typer.var_order:
            self.vars[name] = ops.tensor(name, self.shape(typer.var_types[name]))

    def shape(self, t: _Type) -> tuple[Any, ...]:
        return tuple(self.final[self.t.dims.find(d)] for d in t.dims)

    def kind(self, node: Node) -> str:
        return self.t.types[id(node)].kind

    def lower(self, root: Node) -> Expr:
        done: dict[int, Expr] = {}
        for node in _postorder(root):
            done[id(node)] = self._lower(node, [done[id(a)] for a in node.args])
        return done[id(root)]

    def _lower(self, node: Node, args: list[Expr]) -> Expr:
        k = node.kind
        if k == "num":
            return s.const(node.value)
        if k == "var":
            return self.vars[node.value]
        if k == "neg":
            return ops.negate(args[0])
        if k == "transpose":
            return ops.transpose(args[0]) if self.kind(node.args[0]) == "mat" else args[0]
        if k == "sum":  # one linear combination, scalars broadcast: flat for any number of terms
            shape = self.shape(self.t.types[id(node)])
            return s.lin([(float(sign), ops.broadcast(a, shape)) for sign, a in zip(node.value, args)], shape)
        if k == "chain":
            partials = self.t.partials[id(node)]
            acc = args[0]
            for q, (op, b) in enumerate(zip(node.value, args[1:])):
                acc = self.binary(op, acc, b, partials[q].kind, self.kind(node.args[q + 1]))
            return acc
        if k in ("pow", "epow"):
            value = _constant(node.args[1])
            return ops.power(args[0], value if value is not None else args[1])
        if k == "call":
            fn = node.value
            a = args[0]
            if fn in ("vector", "matrix"):
                return ops.broadcast(a, self.shape(self.t.types[id(node)]))
            table = {"sum": ops.sum, "tr": ops.trace, "det": ops.det, "logdet": ops.logdet, "inv": ops.inv,
                     "adj": ops.adj, "norm1": ops.norm1, "norm2": ops.norm2, "diag": ops.diag}
            if fn in table:
                return table[fn](a)
            return s.apply(fn, a)
        raise AssertionError(k)  # pragma: no cover

    @staticmethod
    def binary(op: str, a: Expr, b: Expr, ka: str, kb: str) -> Expr:
        if op == ".*":
            return ops.multiply(a, b)
        if op in ("./", "/"):
            return ops.divide(a, b)
        if "scalar" in (ka, kb):
            return ops.multiply(a, b)
        if (ka, kb) == ("col", "row"):
            return ops.outer(a, b)
        return ops.matmul(a, b)


def _check_finite(text: str, expr: Expr) -> None:
    """Constant arithmetic that overflowed (``1e300*1e300``) is an error, not an inf."""
    for node in topological(expr):
        bad = (isinstance(node, Const) and not math.isfinite(node.value)) or \
            (isinstance(node, Lin) and not all(math.isfinite(c) for c, _ in node.terms))
        if bad:
            raise UserError(f"in {_quote(text)}: the constants overflow to a non-finite number; "
                            "use numbers of a smaller magnitude")


def parse(text: str, **kinds: Any) -> Expr:
    """Parse a matrixcalculus.org expression into a tensorcalc expression.

    Parameters
    ----------
    text : str
        E.g. ``"x'*A*x"`` or ``"sum(log(exp(-y.*(X*w)) + vector(1)))"``.
    **kinds
        Per variable: ``"scalar"``, ``"vector"``, ``"matrix"`` or a tuple of dimension
        names/sizes such as ``("n", "k")``. Undeclared: by the first letter, ``a``-``g``
        scalar, ``h``-``z`` vector, ``A``-``Z`` matrix. Unnamed dimensions are called
        n, m, p, ... in order of appearance.

    Raises
    ------
    ParseError
        Malformed text (with the column and what was expected), a non-finite number,
        more than ``MAX_NESTING`` levels of nesting or ``MAX_LENGTH`` characters.
    ShapeError
        Operands whose shapes cannot fit (names both operands).

    Examples
    --------
    >>> from mlmyths import tensorcalc as tc
    >>> tc.parse("norm2(T - U*V')^2", T="matrix", U=("n", "k"), V=("m", "k")).shape
    ()
    >>> f = tc.parse("sum(log(exp(-y.*(X*w)) + vector(1)))")
    >>> [(v.name, v.shape) for v in tc.variables(f)]
    [('X', ('n', 'm')), ('w', ('m',)), ('y', ('n',))]
    """
    if not isinstance(text, str):
        raise UserError(f"parse() takes the expression as a string, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ParseError(text, MAX_LENGTH + 1, f"at most {MAX_LENGTH} characters", f"{len(text)} characters",
                         message=f"the expression has {len(text)} characters, more than the {MAX_LENGTH} accepted")
    for name in kinds:
        check_name(name)
        if name in FUNCTIONS:
            raise UserError(f"{name!r} is a function name and cannot be a variable")
    tree = _Parser(text).parse()
    typer = _Typer(text, kinds)
    typer.type(tree)
    expr = _Lower(typer).lower(tree)
    _check_finite(text, expr)
    return expr
