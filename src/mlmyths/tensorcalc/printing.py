"""Printing expressions: matrix notation where possible, Einstein index notation otherwise.

Matrix notation follows matrixcalculus.org: ``*`` matrix product, ``.*`` elementwise
product, ``'`` transpose, ``.^`` elementwise power, ``diag(v)`` for a diagonal
scaling, ``eye(n)`` for the identity, ``adj(X)`` for the adjugate (``adj(X)'``, the
cofactor matrix, is the derivative of ``det(X)``; the k-th derivative tensor of ``det``
prints as ``det_dk(X)``), ``step(x)`` for the Heaviside step (the derivative of
``relu``). A product that has no matrix form (a 4th-order
Hessian, say) prints in index notation ``(δ[i,k] * (V'*V)[j,l])[i,j,k,l]``: the
factors with their index labels, then the labels of the result in brackets; a label
that is repeated and not in the result is summed over. A subexpression used more than
once is printed once, as ``t0`` in a ``where`` list.

>>> from mlmyths import tensorcalc as tc
>>> tc.to_string(tc.hessian(tc.parse("sum(exp(X*w))"), "w"))
"X'*diag(exp(X*w))*X"
>>> tc.to_string(tc.hessian(tc.parse("norm2(T - U*V')^2", U=("n", "k")), "U"))
"2*(δ[i,k] * (V'*V)[j,l])[i,j,k,l]"
>>> print(tc.to_string(tc.gradient(tc.parse("sum(tanh(A*x).*sin(tanh(A*x)))"), "x")))
A'*((-t0.^2 + 1).*(sin(t0) + t0.*cos(t0)))
  where
    t0 = tanh(A*x)
"""
from __future__ import annotations

from collections import Counter
from typing import Any

from mlmyths.tensorcalc.ir import Apply, Const, Delta, Expr, Lin, MatFn, Pow, Product, Var, parents_count, topological

LETTERS = "ijklpqrsuvwabcdefghmnotxyz"


def index_name(k: int) -> str:
    """The k-th index name: i, j, k, ..., then i1, j1, ... (never two labels with one name)."""
    return LETTERS[k % len(LETTERS)] + (str(k // len(LETTERS)) if k >= len(LETTERS) else "")

# text classes, from tightest to loosest
ATOM, POSTFIX, POWER, UNARY, ELEM, CHAIN, SUM = range(7)


def number(value: float) -> str:
    """``2.0 -> "2"``, ``0.5 -> "0.5"``."""
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


class _Printer:
    def __init__(self, root: Expr, share: bool):
        self.root = root
        self.texts: dict[Expr, tuple[str, int]] = {}
        self.names: dict[Expr, str] = {}
        self.defs: list[tuple[str, str]] = []
        counts = parents_count(root)
        for node in topological(root):
            text = self.render(node)
            if share and node is not root and counts.get(node, 0) >= 2 and self._worth_naming(node, text[0]):
                name = f"t{len(self.names)}"
                self.names[node] = name
                self.defs.append((name, text[0]))
                text = (name, ATOM)
            self.texts[node] = text

    @staticmethod
    def _worth_naming(node: Expr, text: str) -> bool:
        return not isinstance(node, (Var, Const, Delta)) and len(text) > 8

    def get(self, node: Expr) -> tuple[str, int]:
        return self.texts[node]

    def wrap(self, node: Expr, tightest_ok: int) -> str:
        text, cls = self.get(node)
        return text if cls <= tightest_ok else f"({text})"

    # -- per node type
    def render(self, node: Expr) -> tuple[str, int]:
        if isinstance(node, Var):
            return node.name, ATOM
        if isinstance(node, Const):
            if node.value == 0.0 or node.rank == 0:
                return number(node.value), ATOM if node.value >= 0 else UNARY
            dims = ",".join(str(d) for d in node.shape)
            return (f"ones({dims})" if node.value == 1.0 else f"{number(node.value)}*ones({dims})"), (
                ATOM if node.value == 1.0 else CHAIN)
        if isinstance(node, Delta):
            if len(node.dims) == 1:
                return f"eye({node.dims[0]})", ATOM
            r = len(node.dims)
            pairs = " * ".join(f"δ[{index_name(i)},{index_name(r + i)}]" for i in range(r))
            return f"({pairs})[{','.join(index_name(k) for k in range(2 * r))}]", ATOM
        if isinstance(node, Lin):
            return self.render_lin(node)
        if isinstance(node, Apply):
            if node.fn == "power":
                op = ".^" if node.arg.rank else "^"
                return f"{self.wrap(node.arg, POSTFIX)}{op}{number(node.param)}", POWER  # type: ignore[arg-type]
            return f"{node.fn}({self.get(node.arg)[0]})", ATOM
        if isinstance(node, Pow):
            op = ".^" if node.rank else "^"
            return f"{self.wrap(node.base, POSTFIX)}{op}{self.wrap(node.exponent, POSTFIX)}", POWER
        if isinstance(node, MatFn):
            if node.fn == "det" and node.order == 1:
                return f"adj({self.get(node.arg)[0]})'", POSTFIX  # the cofactor matrix
            if node.fn == "det" and node.order > 1:
                return f"det_d{node.order}({self.get(node.arg)[0]})", ATOM
            return f"{node.fn}({self.get(node.arg)[0]})", ATOM
        if isinstance(node, Product):
            return self.render_matrix(node) or self.render_index(node)
        raise TypeError(type(node).__name__)  # pragma: no cover

    def render_lin(self, node: Lin) -> tuple[str, int]:
        terms = []
        for c, t in node.terms:
            if isinstance(t, Const):
                terms.append((c * t.value, None))
            else:
                terms.append((c, t))
        # readable order: simpler terms first, constants last
        terms.sort(key=lambda ct: (ct[1] is None, len(self.get(ct[1])[0]) if ct[1] is not None else 0,
                                   self.get(ct[1])[0] if ct[1] is not None else ""))
        parts: list[str] = []
        for k, (c, t) in enumerate(terms):
            if t is None:
                body, mag = number(abs(c)), 1.0
            else:
                body = self.wrap(t, CHAIN)
                mag = abs(c)
                if mag != 1.0:
                    body = f"{number(mag)}*{body}"
            sign = "-" if c < 0 else "+"
            if k == 0:
                parts.append(("-" if sign == "-" else "") + body)
            else:
                parts.append(f" {sign} {body}")
        text = "".join(parts)
        if len(terms) == 1:
            return text, UNARY if terms[0][0] < 0 else CHAIN
        return text, SUM

    def operand_text(self, node: Expr, transposed: bool) -> str:
        """An operand inside a matrix-product chain, transposed if asked."""
        text, cls = self.get(node)
        if transposed and isinstance(node, MatFn) and node.fn == "det" and node.order == 1 and node not in self.names:
            return f"adj({self.get(node.arg)[0]})"  # (adj(X)')' = adj(X)
        if transposed and node.rank:  # vectors too: a transposed column is a row
            if isinstance(node, Product) and node not in self.names:
                if _is_transpose(node):
                    return self.wrap(node.operands[0], CHAIN)  # (X')' = X
                flipped = self.render_matrix(node, transposed=True)
                if flipped is not None and flipped[1] == CHAIN:
                    return flipped[0]  # (A'*x)' printed as x'*A
            return (text if cls <= POSTFIX and not text.endswith("'") else f"({text})") + "'"
        return text if cls <= CHAIN else f"({text})"

    def render_matrix(self, node: Product, transposed: bool = False) -> tuple[str, int] | None:
        ops = list(zip(node.operands, node.indices))
        out = node.output
        if len(out) > 2 or any(op.rank > 2 for op, _ in ops):
            return None
        if any(isinstance(op, Const) or (isinstance(op, Delta) and len(op.dims) != 1) for op, _ in ops):
            return None
        if len(ops) == 1 and not transposed:
            op, idx = ops[0]
            if not out and len(set(idx)) == len(idx):
                return f"sum({self.get(op)[0]})", ATOM
            if len(idx) == 2 and idx[0] == idx[1] and out == (idx[0],):
                return f"diag({self.get(op)[0]})", ATOM
        scalars = [op for op, idx in ops if not idx]
        tensors = [(op, idx) for op, idx in ops if idx]
        prefix = "".join(f"{self.wrap(op, POWER)}*" for op in scalars)
        if not tensors:
            return prefix[:-1], CHAIN
        # elementwise: every factor carries exactly the output labels
        if not node.summed() and all(idx == out for _, idx in tensors) and len(tensors) > 1 and not transposed:
            if any(isinstance(op, Delta) for op, _ in tensors):
                return None
            return prefix + ".*".join(self.wrap(op, POWER) for op, _ in tensors), ELEM
        chain = self._chain(tensors, out, transposed)
        if chain is None:
            return None
        return prefix + chain, CHAIN

    def _chain(self, tensors: list[tuple[Expr, tuple[int, ...]]], out: tuple[int, ...],
               transposed: bool = False) -> str | None:
        """The product as a chain of matrix products (``transposed``: of its transpose)."""
        occ = Counter(label for _, idx in tensors for label in idx) + Counter(out)
        # vectors on a label seen 3+ times are diagonal scalings diag(v) inserted in the chain
        scalings: dict[int, list[Expr]] = {}
        rest = []
        for op, idx in tensors:
            if len(idx) == 1 and occ[idx[0]] >= 3 and not isinstance(op, Delta):
                scalings.setdefault(idx[0], []).append(op)
            else:
                rest.append([op, list(idx)])
        ONE = object()
        items: list[list[Any]] = []  # [text_fn(transposed) -> str, a, b, is_identity]
        next_label = max([label for _, idx in tensors for label in idx] + list(out) + [0]) + 1
        for label, vecs in list(scalings.items()):
            others = occ[label] - len(vecs)
            if others in (0, 1):
                # an elementwise product of vectors, used as one vector (x'*(a.*b)) or as
                # an inner product of two ((a.*b)'*c)
                keep = vecs if others == 1 else vecs[:-1]
                text = ".*".join(self.wrap(v, POWER) for v in keep)
                items_vec = [(lambda t, s=text: f"({s})" + ("'" if t else ""), label)]
                if others == 0:
                    items_vec.append((lambda t, o=vecs[-1]: self.operand_text(o, t), label))
                for fn, lb in items_vec:
                    rest.append([_Text(fn), [lb]])
                del scalings[label]
                continue
            if others != 2:
                return None
            new = next_label
            next_label += 1
            # rename one other occurrence (in an operand, never in the output) to the new label
            for entry in rest:
                if label in entry[1]:
                    entry[1][entry[1].index(label)] = new
                    break
            else:
                return None
            inner = ".*".join(self.wrap(v, POWER) for v in vecs)
            items.append([lambda t, s=inner: f"diag({s})", label, new, False])
        for op, idx in rest:
            if isinstance(op, _Text):
                items.append([op.fn, idx[0], ONE, False])
            elif len(idx) == 2:
                items.append([lambda t, o=op: self.operand_text(o, t), idx[0], idx[1], isinstance(op, Delta)])
            else:
                items.append([lambda t, o=op: self.operand_text(o, t), idx[0], ONE, False])
        counts = Counter(label for it in items for label in (it[1], it[2]) if label is not ONE) + Counter(out)
        if any(c != 2 for c in counts.values()):
            return None
        used: set[int] = set()
        parts: list[tuple[str, bool]] = []

        def take(current: Any) -> Any:
            """Append the unused item that continues the chain at ``current``; its other end."""
            for k, (text_fn, a, b, ident) in enumerate(items):
                if k in used:
                    continue
                if current is not ONE and a == current:
                    used.add(k)
                    parts.append((text_fn(False), ident))
                    return b
                if (b is ONE) == (current is ONE) and (b is ONE or b == current):
                    used.add(k)
                    parts.append((text_fn(True), ident))
                    return a
            return None

        if len(out) == 2:
            if transposed:
                out = (out[1], out[0])
            current: Any = out[0]
            while current != out[1] or not parts:
                current = take(current)
                if current is None:
                    return None
                if current is ONE:  # an outer product x*y': continue with a row vector
                    current = take(ONE)
                    if current is None:
                        return None
        elif len(out) == 1 and transposed:  # a row vector: from the '1' end to the output label
            current = take(ONE)
            while current != out[0]:
                if current is None or current is ONE:
                    return None
                current = take(current)
        elif len(out) == 1:
            current = out[0]
            while current is not ONE:
                current = take(current)
                if current is None:
                    return None
        else:
            vectors = [k for k, it in enumerate(items) if it[2] is ONE]
            if vectors:
                current = take(ONE)
                while current is not ONE:
                    if current is None:
                        return None
                    current = take(current)
            else:  # a cycle: the trace of the chain
                start = items[0][1]
                current = take(start)
                while current != start:
                    if current is None:
                        return None
                    current = take(current)
                if len(used) != len(items):
                    return None
                texts = [t for t, ident in parts if not ident] or ["eye"]
                return f"tr({'*'.join(texts)})"
        if len(used) != len(items):
            return None
        texts = [t for t, ident in parts if not ident]
        if not texts:
            dims = None
            for op, _ in tensors:
                if isinstance(op, Delta):
                    dims = op.dims[0]
            return f"eye({dims})"
        return "*".join(texts)

    def render_index(self, node: Product) -> tuple[str, int]:
        names: dict[int, str] = {}
        for label in node.output:
            names[label] = index_name(len(names))
        for idx in node.indices:
            for label in idx:
                if label not in names:
                    names[label] = index_name(len(names))
        factors = []
        for op, idx in zip(node.operands, node.indices):
            if isinstance(op, Delta):
                r = len(op.dims)
                factors += [f"δ[{names[idx[i]]},{names[idx[r + i]]}]" for i in range(r)]
            elif isinstance(op, Const):
                factors.append(f"{number(op.value)}[{','.join(names[label] for label in idx)}]")
            elif idx:
                factors.append(f"{self.wrap(op, POSTFIX)}[{','.join(names[label] for label in idx)}]")
            else:
                factors.append(self.wrap(op, POSTFIX))
        return f"({' * '.join(factors)})[{','.join(names[label] for label in node.output)}]", ATOM

    def result(self) -> str:
        text = self.get(self.root)[0]
        if not self.defs:
            return text
        lines = [text, "  where"] + [f"    {name} = {body}" for name, body in self.defs]
        return "\n".join(lines)


class _Text:
    """A chain item given by its text (a vector built from several factors)."""

    def __init__(self, fn: Any):
        self.fn = fn


def _is_transpose(node: Product) -> bool:
    return len(node.operands) == 1 and node.indices[0] == (1, 0) and node.output == (0, 1)


def to_string(expr: Expr, share: bool = True) -> str:
    """The expression in matrix notation where possible, index notation otherwise.

    With ``share`` (default), subexpressions used more than once are printed once,
    named ``t0, t1, ...`` in a ``where`` list below the expression.

    >>> from mlmyths import tensorcalc as tc
    >>> tc.to_string(tc.hessian(tc.parse("x'*A*x"), "x"))
    "A + A'"
    """
    if not isinstance(expr, Expr):
        from mlmyths.errors import UserError

        raise UserError(f"to_string() takes a tensorcalc expression, got {type(expr).__name__}")
    return _Printer(expr, share).result()
