"""Code generation: an expression DAG -> a Python function of numpy, torch or jax arrays.

Every node of the DAG is computed once, into a temporary (common subexpressions are
shared). A tree of products is gathered into one n-ary contraction whose pairwise
order is chosen by opt_einsum for the actual sizes, and every pairwise step is
written as the cheapest array primitive: ``a @ b`` with free transposes (BLAS gemm/
gemv), a broadcast multiply ``v[:, None] * X`` for diagonal scalings,
``tensordot`` for other contractions and ``einsum`` only for batched contractions.
A product with a structural delta (``δ[a, p] ⊗ core``) is never multiplied by a
dense identity: the output is allocated with zeros and the core is written into a
strided diagonal view of it (numpy ``as_strided``, torch ``as_strided``; jax
``.at[].set``). Sums that include such terms add them in place.

Only validated identifiers (variable and dimension names) and numbers formatted here
reach the generated source; nothing from a user's string is evaluated.

>>> import numpy as np
>>> from mlmyths import tensorcalc as tc
>>> H = tc.hessian(tc.parse("x'*A*x", x="vector", A="matrix"), "x")
>>> fn = tc.compile(H)
>>> A = np.arange(4.0).reshape(2, 2)
>>> fn(x=np.ones(2), A=A).tolist()
[[0.0, 3.0], [3.0, 6.0]]
"""
from __future__ import annotations

import builtins
import itertools
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import opt_einsum

from mlmyths.errors import UserError
from mlmyths.tensorcalc.ir import (
    Apply,
    Const,
    Delta,
    Dim,
    Expr,
    Lin,
    MatFn,
    Pow,
    Product,
    ShapeError,
    Var,
    parents_count,
    shape_text,
    topological,
    variables,
)
from mlmyths.tensorcalc.ir import variables as variables_of
from mlmyths.tensorcalc.diff import origin_variables
from mlmyths.tensorcalc.simplify import label_classes

BACKENDS = ("numpy", "torch", "jax")
DEFAULT_SIZE = 1000  # assumed size of every symbolic dimension when printing source without sizes
_SUM_CHUNK = 64  # terms per generated statement of a long sum


def _lit(value: float) -> str:
    value = float(value)
    if math.isnan(value):
        return "float('nan')"
    if math.isinf(value):
        return "float('inf')" if value > 0 else "-float('inf')"
    return repr(value)


class _Backend:
    """How each primitive is spelled for one array library."""

    def __init__(self, name: str):
        if name not in BACKENDS:
            raise UserError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
        self.name = name
        self.m = {"numpy": "_np", "torch": "_torch", "jax": "_jnp"}[name]

    def namespace(self) -> dict[str, Any]:
        from mlmyths.tensorcalc.kernels import det_derivative

        if self.name == "numpy":
            import numpy

            return {"_np": numpy, "_det_derivative": det_derivative}
        if self.name == "torch":
            try:
                import torch
            except ImportError:  # pragma: no cover - torch is a dependency
                raise UserError("backend 'torch' needs PyTorch installed") from None
            return {"_torch": torch, "_det_derivative": det_derivative}
        try:
            import jax
            import jax.numpy as jnp
        except ImportError:
            raise UserError("backend 'jax' needs JAX installed: pip install 'mlmyths[bench]'") from None
        return {"_jax": jax, "_jnp": jnp, "_det_derivative": det_derivative}

    def imports(self, kernels: bool = False) -> str:
        lines = {"numpy": "import numpy as _np", "torch": "import torch as _torch",
                 "jax": "import jax as _jax\nimport jax.numpy as _jnp"}[self.name]
        if kernels:
            lines += "\nfrom mlmyths.tensorcalc.kernels import det_derivative as _det_derivative"
        return lines

    def transpose(self, a: str, perm: Sequence[int]) -> str:
        if list(perm) == [1, 0]:
            return f"{a}.T"
        p = tuple(perm)
        return f"{a}.permute{p}" if self.name == "torch" else f"{a}.transpose{p}"

    def sum(self, a: str, axes: Sequence[int], rank: int) -> str:
        if len(axes) == rank:
            return f"{a}.sum()"
        kw = "dim" if self.name == "torch" else "axis"
        ax = axes[0] if len(axes) == 1 else tuple(axes)
        return f"{a}.sum({kw}={ax})"

    def tensordot(self, a: str, b: str, axa: Sequence[int], axb: Sequence[int]) -> str:
        kw = "dims" if self.name == "torch" else "axes"
        return f"{self.m}.tensordot({a}, {b}, {kw}=({list(axa)}, {list(axb)}))"

    def einsum(self, spec: str, *args: str) -> str:
        return f"{self.m}.einsum({spec!r}, {', '.join(args)})"

    def alloc(self, kind: str, shape: str, value: float = 0.0) -> str:
        opts = "dtype=_dtype, device=_device" if self.name == "torch" else "dtype=_dtype"
        if kind == "zeros":
            return f"{self.m}.zeros({shape}, {opts})"
        if kind == "ones":
            return f"{self.m}.ones({shape}, {opts})"
        return f"{self.m}.full({shape}, {_lit(value)}, {opts})"

    def copy(self, a: str) -> str:
        return {"numpy": f"{a}.copy()", "torch": f"{a}.clone()", "jax": a}[self.name]

    def unary(self, fn: str, a: str, param: float | None) -> str:
        m = self.m
        if fn == "power":
            p = float(param)  # type: ignore[arg-type]
            if p == 2.0:
                return f"{m}.square({a})"
            if p == -1.0:
                return f"1.0 / {a}"
            if p == -2.0:
                return f"1.0 / {m}.square({a})"
            if p == 0.5:
                return f"{m}.sqrt({a})"
            if p == 3.0:
                return f"{a} * {a} * {a}"
            return f"{a} ** {_lit(p)}"
        if fn == "sigmoid":
            if self.name == "numpy":
                return f"0.5 + 0.5 * {m}.tanh(0.5 * {a})"
            return f"_torch.sigmoid({a})" if self.name == "torch" else f"_jax.nn.sigmoid({a})"
        if fn == "relu":
            return f"_torch.relu({a})" if self.name == "torch" else f"{m}.maximum({a}, 0.0)"
        if fn == "step":  # Heaviside: 1 where positive, else 0
            return f"({_paren(a)} > 0).to({_paren(a)}.dtype)" if self.name == "torch" else f"{m}.heaviside({a}, 0.0)"
        return f"{m}.{fn}({a})"

    def matfn(self, fn: str, a: str, order: int = 0) -> str:
        m = self.m
        if fn == "logdet":
            return f"{m}.linalg.slogdet({a})[1]"
        if fn == "det" and order:
            return f"_det_derivative({a}, {int(order)}, {m})"
        return f"{m}.linalg.{fn}({a})"

    def trace(self, a: str) -> str:
        return f"{self.m}.trace({a})"


# -- the generator ---------------------------------------------------------------------------


class _Gen:
    def __init__(self, root: Expr, backend: _Backend, sizes: Mapping[Dim, int],
                 params: Sequence[Var], dim_params: Sequence[Dim]):
        self.root = root
        self.be = backend
        self.sizes = sizes
        self.lines: list[str] = []
        self.names: dict[Expr, str] = {}
        self.counter = itertools.count()
        self.uses = parents_count(root)
        self.params = list(params)
        self.dim_params = list(dim_params)
        self.needs_dtype = False
        self.parent_of: dict[Expr, Expr] = {}
        for node in topological(root):
            for child in node.children():
                self.parent_of.setdefault(child, node)
        self.dim_code: dict[Dim, str] = {}
        for v in self.params:
            for axis, d in enumerate(v.shape):
                if isinstance(d, str) and d not in self.dim_code:
                    self.dim_code[d] = f"{v.name}.shape[{axis}]"
        for d in self.dim_params:
            self.dim_code[d] = str(d)

    # -- helpers
    def tmp(self) -> str:
        return f"_t{next(self.counter)}"

    def assign(self, code: str, name: str | None = None) -> str:
        name = name or self.tmp()
        self.lines.append(f"{name} = {code}")
        return name

    def dim(self, d: Dim) -> str:
        if isinstance(d, int):
            return str(d)
        return f"_d_{d}"

    def shape_code(self, shape: Sequence[Dim]) -> str:
        if len(shape) == 1:
            return f"({self.dim(shape[0])},)"
        return "(" + ", ".join(self.dim(d) for d in shape) + ")"

    def size(self, d: Dim) -> int:
        return d if isinstance(d, int) else int(self.sizes.get(d, DEFAULT_SIZE))

    def inlined(self, node: Expr) -> bool:
        """A delta-free product used once, by a product: part of its parent's contraction."""
        return (isinstance(node, Product) and self.uses.get(node, 0) == 1 and node is not self.root
                and isinstance(self.parent_of.get(node), Product)
                and not any(isinstance(op, (Delta, Const)) for op in node.operands))

    # -- top level
    def materialized(self, node: Expr) -> bool:
        """Whether ``node`` gets its own temporary (else it is written into its parent's code)."""
        if isinstance(node, (Var, Const, Delta)):
            return False
        if isinstance(node, Product) and node is not self.root and self.uses.get(node, 0) == 1:
            parent = self.parent_of.get(node)
            if isinstance(parent, Lin) or self.inlined(node):
                return False  # folded into a sum's term or into its parent's contraction
        return True

    def generate(self, fname: str) -> str:
        # Emit every node with its own temporary children first (topological order), so that
        # value() never recurses more than one level: expressions of any depth generate.
        for node in topological(self.root):
            if self.materialized(node):
                self.value(node)
        result = self.value(self.root)
        header = [f"def {fname}({', '.join([v.name for v in self.params] + [str(d) for d in self.dim_params])}):"]
        body: list[str] = []
        text = "\n".join(self.lines)
        for d in sorted(self.dim_code, key=str):
            if f"_d_{d}" in text:
                body.append(f"_d_{d} = {self.dim_code[d]}")
        if self.needs_dtype:
            body += self.dtype_lines()
        body += self.lines
        body.append(f"return {result}")
        return "\n".join(header + ["    " + line for line in body]) + "\n"

    def dtype_lines(self) -> list[str]:
        if self.be.name == "torch":
            if self.params:
                v = self.params[0].name
                return [f"_dtype = {v}.dtype", f"_device = {v}.device"]
            return ["_dtype = _torch.get_default_dtype()", "_device = None"]
        if self.be.name == "numpy":
            if self.params:
                return [f"_dtype = _np.result_type({', '.join(v.name for v in self.params)}, 1.0)"]
            return ["_dtype = _np.float64"]
        if self.params:
            return [f"_dtype = _jnp.result_type({', '.join(v.name for v in self.params)})"]
        return ["_dtype = _jnp.float32"]

    def value(self, node: Expr) -> str:
        """The name (or literal) holding ``node``'s value, emitting its code on first use."""
        name = self.names.get(node)
        if name is None:
            name = self.emit(node)
            self.names[node] = name
        return name

    def emit(self, node: Expr) -> str:
        be = self.be
        if isinstance(node, Var):
            return node.name
        if isinstance(node, Const):
            if node.rank == 0:
                return _lit(node.value)
            self.needs_dtype = True
            return self.assign(be.alloc("full", self.shape_code(node.shape), node.value))
        if isinstance(node, Delta):
            return self.place_terms(node.shape, [], [(1.0, node)])
        if isinstance(node, Apply):
            return self.assign(be.unary(node.fn, self.value(node.arg), node.param))
        if isinstance(node, Pow):
            return self.assign(f"{_paren(self.value(node.base))} ** {_paren(self.value(node.exponent))}")
        if isinstance(node, MatFn):
            return self.assign(be.matfn(node.fn, self.value(node.arg), node.order))
        if isinstance(node, Lin):
            return self.emit_lin(node)
        if isinstance(node, Product):
            if _has_structure(node):
                return self.place_terms(node.shape, [], [(1.0, node)])
            return self.assign(self.contract_product(node))
        raise TypeError(type(node).__name__)  # pragma: no cover

    # -- linear combinations
    def emit_lin(self, node: Lin) -> str:
        dense: list[tuple[float, Expr]] = []
        structured: list[tuple[float, Expr]] = []
        const_total = 0.0
        for c, t in node.terms:
            if isinstance(t, Const):
                const_total += c * t.value
            elif isinstance(t, Delta) or (isinstance(t, Product) and _has_structure(t)):
                structured.append((c, t))
            else:
                dense.append((c, t))
        if structured:
            return self.place_terms(node.shape, dense, structured, const_total)
        return self.assign(self.lin_code(dense, const_total))

    def lin_code(self, dense: list[tuple[float, Expr]], const_total: float) -> str:
        """``c1*t1 + c2*t2 + ...``; a product used only here gets its coefficient folded
        into its smallest operand (no extra pass over a large result)."""
        parts: list[str] = []
        for c, t in dense:
            if isinstance(t, Product) and self.uses.get(t, 0) == 1 and t not in self.names:
                body, c = _paren(self.contract_product(t, coef=c)), 1.0
            else:
                body = self.value(t)
            mag = abs(c)
            if mag != 1.0:
                body = f"{_lit(mag)} * {body}"
            if not parts:
                parts.append(body if c > 0 else f"-{body}")
            else:
                parts.append(f"{'+' if c > 0 else '-'} {body}")
        if const_total:
            parts.append(f"{'+' if const_total > 0 else '-'} {_lit(abs(const_total))}")
        # long sums in statements of at most _SUM_CHUNK terms (Python's compiler recurses
        # once per binary operator and fails on sums of a few thousand terms)
        while len(parts) > _SUM_CHUNK:
            head = self.assign(" ".join(parts[:_SUM_CHUNK]))
            parts = [head] + parts[_SUM_CHUNK:]
        return " ".join(parts)

    # -- structured (delta) terms: written into strided diagonal views
    def place_terms(self, shape: Sequence[Dim], dense: list[tuple[float, Expr]],
                    structured: list[tuple[float, Expr]], const_total: float = 0.0) -> str:
        be = self.be
        if dense:
            code = self.lin_code(dense, const_total)
            if len(dense) == 1 and dense[0][0] == 1.0 and not const_total and _is_simple(code):
                code = be.copy(code)
            acc = self.assign(code)
        else:
            self.needs_dtype = True
            acc = self.assign(be.alloc("full", self.shape_code(shape), const_total) if const_total
                              else be.alloc("zeros", self.shape_code(shape)))
        fresh_zeros = not dense and not const_total
        for k, (c, t) in enumerate(structured):
            first_write = fresh_zeros and k == 0
            if isinstance(t, Delta):
                r = len(t.dims)
                labels = tuple(range(2 * r))
                pairs = [(i, r + i) for i in range(r)]
                self.write_diagonal(acc, labels, pairs, shape, None, (), c, first_write)
                continue
            assert isinstance(t, Product)
            flat = self.gather(t)
            pairs, dense_ops = [], []
            for op, idx in flat:
                if isinstance(op, Delta) and all(idx[i] != idx[len(op.dims) + i] for i in range(len(op.dims))):
                    r = len(op.dims)
                    pairs += [(idx[i], idx[r + i]) for i in range(r)]
                else:
                    dense_ops.append((op, idx))
            rep = label_classes(pairs, t.output)  # labels equal on the diagonal -> representative
            pairs = [(r, label) for label, r in rep.items() if label != r]
            dense_ops = [(op, tuple(rep.get(label, label) for label in idx)) for op, idx in dense_ops]
            reduced = [label for label in t.output if rep.get(label, label) == label]
            core_labels: tuple[int, ...] = ()
            core = None
            if dense_ops:
                have = {label for _, idx in dense_ops for label in idx}
                core_labels = tuple(label for label in reduced if label in have)
                core = self.contract([(self.operand_code(op), idx, op.shape) for op, idx in dense_ops], core_labels)
            self.write_diagonal(acc, t.output, pairs, shape, core, core_labels, c, first_write)
        return acc

    def write_diagonal(self, acc: str, labels: Sequence[int], pairs: Sequence[tuple[int, int]],
                       shape: Sequence[Dim], core: str | None, core_labels: Sequence[int], coef: float,
                       first_write: bool) -> None:
        """``acc[diagonal view] (+)= coef * core`` (broadcast along labels the core lacks)."""
        be = self.be
        pos = {label: p for p, label in enumerate(labels)}
        merged = {b: a for a, b in pairs}
        reduced = [label for label in labels if label not in merged]
        if core is None:
            value = _lit(coef)
        else:
            index = [":" if label in core_labels else "None" for label in reduced]
            while index and index[0] == "None":
                index.pop(0)
            aligned = core if all(i == ":" for i in index) else f"{_paren(core)}[{', '.join(index)}]"
            value = aligned if coef == 1.0 else f"{_lit(coef)} * {_paren(aligned)}"
        view_shape = "(" + ", ".join(self.dim(shape[pos[label]]) for label in reduced) + ("," if len(reduced) == 1 else "") + ")"
        if be.name == "jax":
            idx = []
            nr = len(reduced)
            for label in labels:
                r = reduced.index(merged.get(label, label))
                bshape = ["1"] * nr
                bshape[r] = "-1"
                idx.append(f"_jnp.arange({self.dim(shape[pos[label]])}).reshape({', '.join(bshape)}{',' if nr == 1 else ''})")
            op = "set" if first_write else "add"
            self.lines.append(f"{acc} = {acc}.at[({', '.join(idx)},)].{op}({value})")
            return
        strides_src = f"{acc}.strides" if be.name == "numpy" else f"{acc}.stride()"
        st = self.tmp()
        self.lines.append(f"{st} = {strides_src}")
        stride_terms = []
        for label in reduced:
            terms = [f"{st}[{pos[label]}]"] + [f"{st}[{pos[b]}]" for b, a in merged.items() if a == label]
            stride_terms.append(" + ".join(terms))
        strides = "(" + ", ".join(stride_terms) + ("," if len(stride_terms) == 1 else "") + ")"
        if be.name == "numpy":
            view = f"_np.lib.stride_tricks.as_strided({acc}, {view_shape}, {strides})"
            v = self.assign(view)
            self.lines.append(f"{v}[...] = {value}" if first_write else f"{v} += {value}")
        else:
            view = f"{acc}.as_strided({view_shape}, {strides})"
            method = "copy_" if first_write else "add_"
            if core is None:
                self.lines.append(f"{view}.fill_({value})" if first_write else f"{view}.add_({value})")
            else:
                self.lines.append(f"{view}.{method}({value})")

    # -- products
    def gather(self, node: Product) -> list[tuple[Expr, tuple[int, ...]]]:
        """Operands of ``node`` with inlined child products expanded, in global labels."""
        top = max([label for idx in node.indices for label in idx] + [0]) + 1
        fresh = itertools.count(top)
        out: list[tuple[Expr, tuple[int, ...]]] = []
        # depth first, operands in order, with an explicit stack (chains of any length)
        stack: list[tuple[Product, dict[int, int], int]] = [(node, {label: label for label in node.output}, 0)]
        while stack:
            p, mapping, k = stack.pop()
            if k == len(p.operands):
                continue
            stack.append((p, mapping, k + 1))
            op, idx = p.operands[k], p.indices[k]
            g = []
            for label in idx:
                if label not in mapping:
                    mapping[label] = next(fresh)
                g.append(mapping[label])
            if self.inlined(op):
                assert isinstance(op, Product)
                stack.append((op, {label: g[q] for q, label in enumerate(op.output)}, 0))
            else:
                out.append((op, tuple(g)))
        return out

    def operand_code(self, op: Expr) -> str:
        if isinstance(op, Const):
            self.needs_dtype = True
            return self.be.alloc("full", self.shape_code(op.shape), op.value)
        if isinstance(op, Delta):  # a trace-like delta that could not be contracted: materialize
            self.needs_dtype = True
            n = "*".join(self.dim(d) for d in op.dims) or "1"
            eye = f"{self.be.m}.eye({n}, dtype=_dtype{', device=_device' if self.be.name == 'torch' else ''})"
            return f"{eye}.reshape({self.shape_code(op.shape)[1:-1]})" if len(op.dims) > 1 else eye
        return self.value(op)

    def contract_product(self, node: Product, coef: float = 1.0) -> str:
        flat = self.gather(node)
        return self.contract([(self.operand_code(op), idx, op.shape) for op, idx in flat], node.output, coef)

    def contract(self, operands: list[tuple[str, tuple[int, ...], tuple[Dim, ...]]], out: Sequence[int],
                 coef: float = 1.0) -> str:
        """Code for ``out[out] = coef * Σ Π operands`` via pairwise steps (opt_einsum's order)."""
        out = tuple(out)
        dims: dict[int, Dim] = {}
        for _, idx, shape in operands:
            for label, d in zip(idx, shape):
                dims[label] = d
        ops: list[tuple[str, tuple[int, ...]]] = [(code, idx) for code, idx, _ in operands]
        if coef != 1.0 and ops:  # scale the smallest operand
            k = min(range(len(ops)), key=lambda q: math.prod(self.size(dims[label]) for label in ops[q][1]))
            code, idx = ops[k]
            ops[k] = (f"(-{code})" if coef == -1.0 and _is_simple(code) else
                      f"(-{_paren(code)})" if coef == -1.0 else f"({_lit(coef)} * {_paren(code)})", idx)
        # pre-reduce: take diagonals and sum labels no other operand or the output needs
        for k in range(len(ops)):
            code, idx = ops[k]
            others = set(out).union(*[set(ix) for q, (_, ix) in enumerate(ops) if q != k])
            keep = tuple(dict.fromkeys(label for label in idx if label in others))
            if keep != idx:
                ops[k] = (self.single(code, idx, keep, final=False), keep)
        if not ops:
            return _lit(coef)
        if len(ops) == 1:
            return self.single(ops[0][0], ops[0][1], out, final=True)
        if len(ops) == 2:
            path: list[tuple[int, ...]] = [(0, 1)]
        else:
            path = self.path([idx for _, idx in ops], out, dims)
        for step, pair in enumerate(path):
            i, j = sorted(pair)
            b = ops.pop(j)
            a = ops.pop(i)
            final = step == len(path) - 1
            needed = set(out).union(*[set(ix) for _, ix in ops])
            code, labels = self.pair(a, b, needed, out if final else None)
            if final:
                if tuple(labels) != out:
                    code = self.be.transpose(_paren(code), [labels.index(label) for label in out])
                return code
            ops.append((self.assign(code), tuple(labels)))
        raise AssertionError("empty contraction path")  # pragma: no cover

    def path(self, indices: list[tuple[int, ...]], out: tuple[int, ...], dims: dict[int, Dim]) -> list[tuple[int, ...]]:
        sym = {label: opt_einsum.get_symbol(k) for k, label in enumerate(sorted(dims))}
        eq = ",".join("".join(sym[label] for label in idx) for idx in indices) + "->" + "".join(sym[label] for label in out)
        shapes = [tuple(self.size(dims[label]) for label in idx) for idx in indices]
        path, _ = opt_einsum.contract_path(eq, *shapes, shapes=True, optimize="auto")
        return [tuple(p) for p in path]

    def single(self, code: str, idx: tuple[int, ...], target: tuple[int, ...], final: bool) -> str:
        """One operand: diagonal, sum over labels, permutation."""
        be = self.be
        if idx == target:
            return code
        if len(set(idx)) == len(idx):
            summed = [k for k, label in enumerate(idx) if label not in target]
            if summed:
                code = be.sum(_paren(code), summed, len(idx))
                idx = tuple(label for label in idx if label in target)
            if idx != target:
                code = be.transpose(_paren(code), [idx.index(label) for label in target])
            return code
        if len(idx) == 2 and not target:
            return be.trace(code)
        letters = {label: opt_einsum.get_symbol(k) for k, label in enumerate(dict.fromkeys(idx + target))}
        spec = "".join(letters[label] for label in idx) + "->" + "".join(letters[label] for label in target)
        return be.einsum(spec, code)

    def pair(self, a: tuple[str, tuple[int, ...]], b: tuple[str, tuple[int, ...]], needed: set[int],
             final_out: tuple[int, ...] | None) -> tuple[str, list[int]]:
        be = self.be
        (ca, la), (cb, lb) = a, b
        # sum labels of one side that nothing else needs
        for side in (0, 1):
            code, labels, other = (ca, la, lb) if side == 0 else (cb, lb, la)
            drop = [label for label in labels if label not in other and label not in needed]
            if drop:
                keep = tuple(label for label in labels if label not in drop)
                code = self.single(code, labels, keep, final=False)
                if side == 0:
                    ca, la = code, keep
                else:
                    cb, lb = code, keep
        sa, sb = set(la), set(lb)
        batch = [label for label in la if label in sb and label in needed]
        contracted = [label for label in la if label in sb and label not in needed]
        free_a = [label for label in la if label not in sb]
        free_b = [label for label in lb if label not in sa]
        if not batch and contracted:
            if len(contracted) == 1 and len(la) <= 2 and len(lb) <= 2:
                c = contracted[0]
                if len(la) == 1 and len(lb) == 2 and lb[1] == c:  # x @ B.T -> B @ x
                    return f"{_paren(cb)} @ {_paren(ca)}", free_b
                if len(lb) == 1 and len(la) == 2 and la[0] == c:  # A.T @ y -> y @ A
                    return f"{_paren(cb)} @ {_paren(ca)}", free_a
                am = _paren(ca) if la[-1] == c else be.transpose(_paren(ca), [1, 0])
                bm = _paren(cb) if lb[0] == c else be.transpose(_paren(cb), [1, 0])
                if final_out is not None and free_a and free_b and list(final_out) == free_b + free_a:
                    # (A @ B).T == B.T @ A.T: write the product in the output's order
                    bt = _paren(cb) if lb[-1] == c else be.transpose(_paren(cb), [1, 0])
                    at = _paren(ca) if la[0] == c else be.transpose(_paren(ca), [1, 0])
                    return f"{bt} @ {at}", free_b + free_a
                return f"{am} @ {bm}", free_a + free_b
            axa = [la.index(label) for label in contracted]
            axb = [lb.index(label) for label in contracted]
            return be.tensordot(ca, cb, axa, axb), free_a + free_b
        if not contracted:  # elementwise / broadcasting product
            res = list(la) + free_b
            return f"{self.align(ca, la, res)} * {self.align(cb, lb, res)}", res
        res = batch + free_a + free_b
        letters = {label: opt_einsum.get_symbol(k) for k, label in enumerate(dict.fromkeys(la + lb))}
        spec = ("".join(letters[label] for label in la) + "," + "".join(letters[label] for label in lb) + "->"
                + "".join(letters[label] for label in res))
        return be.einsum(spec, ca, cb), res

    def align(self, code: str, labels: Sequence[int], res: Sequence[int]) -> str:
        """``code`` (axes ``labels``) transposed and expanded with ``None`` to broadcast against ``res``."""
        order = sorted(labels, key=lambda label: res.index(label))
        if list(order) != list(labels):
            code = self.be.transpose(_paren(code), [list(labels).index(label) for label in order])
        index = [":" if label in labels else "None" for label in res]
        while index and index[0] == "None":
            index.pop(0)
        if all(i == ":" for i in index):
            return _paren(code) if not _is_simple(code) else code
        return f"{_paren(code)}[{', '.join(index)}]"


def _has_structure(node: Product) -> bool:
    """A product with a delta pair whose two labels are kept (written into a diagonal view)."""
    for op, idx in zip(node.operands, node.indices):
        if isinstance(op, Delta):
            r = len(op.dims)
            if all(idx[i] != idx[r + i] for i in range(r)) and all(label in node.output for label in idx):
                return True
    return False


def _is_simple(code: str) -> bool:
    return code.replace("_", "a").replace(".", "a").isalnum()


def _is_wrapped(code: str) -> bool:
    """``(...)`` whose first parenthesis closes at the very end."""
    if not code.startswith("("):
        return False
    depth = 0
    for k, ch in enumerate(code):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0:
            return k == len(code) - 1
    return False


def _paren(code: str) -> str:
    if _is_simple(code) or _is_wrapped(code) or (code.endswith(")") and code.count("(") == 1 and code.startswith(("_np.", "_torch.", "_jnp."))):
        return code
    if code.endswith(".T") and _is_simple(code[:-2]):
        return code
    return f"({code})"


# -- public API ----------------------------------------------------------------------------


class Compiled:
    """A compiled expression: call with arrays by variable name (or positionally).

    ``fn(x=..., A=...)`` takes the arrays of the expression's variables and, for a
    derivative, those of the expression it was derived from (or of ``variables=``): a
    Hessian that no longer contains ``x`` is called like the function it came from, and
    a dimension that its own inputs do not fix (the ``n`` of ``U`` in the Hessian
    ``2 δ ⊗ V'V`` of ``||T - UV'||²``) is read from the shape of any input that has it
    (``U`` or ``T``), or given as a keyword (``n=5``). Inputs the expression does not use
    are read only for such dimensions (and checked against the others); other keywords
    are ignored. One specialization per combination of input shapes is generated (the
    contraction order depends on the sizes) and cached.
    """

    def __init__(self, expr: Expr, backend: str, variables_from: Iterable[Var] = (), name: str = "evaluate"):
        self.expr = expr
        self.backend = _Backend(backend)
        self.name = name
        own = variables(expr)
        names = {v.name for v in own}
        if len(names) != len(own):
            raise UserError("the expression has two variables with one name and different shapes")
        # inputs read only for their dimensions: the origin's variables not in the expression
        optional: list[Var] = []
        for v in variables_from:
            if v.name not in names:
                names.add(v.name)
                optional.append(v)
        self.params: list[Var] = list(own)
        self.optional: list[Var] = optional
        bound = {d for v in own for d in v.shape if isinstance(d, str)}
        needed = {d for n in topological(expr) for d in n.shape if isinstance(d, str)}
        free = sorted(needed - bound, key=str)
        #: dimension -> [(input name, axis)] that fix it
        self.dim_sources: dict[Dim, list[tuple[str, int]]] = {
            d: [(v.name, axis) for v in optional for axis, e in enumerate(v.shape) if e == d] for d in free}
        self.dim_params: list[Dim] = free
        clash = [d for d in free if str(d) in names and not self.dim_sources[d]]
        if clash:
            raise UserError(f"dimension {clash[0]!r} is not fixed by any input and has the name of a variable; "
                            "pass variables=<the original expression> to tc.compile")
        self._by_name = {v.name: v for v in own + optional}
        self._own_names = [v.name for v in own]
        self._optional_names = [v.name for v in optional]
        self._dim_keywords = [str(d) for d in free if str(d) not in self._by_name]
        self._sizes: dict[tuple[Any, ...], tuple[int, ...]] = {}  # checked sizes of free dims, by shapes
        self.param_names = self._own_names + [v.name for v in optional] + \
            [str(d) for d in free if not self.dim_sources[d]]
        self._cache: dict[tuple[Any, ...], Callable[..., Any]] = {}
        self._lock = threading.Lock()

    def source(self, sizes: Mapping[Dim, int] | None = None) -> str:
        """The generated Python source (contraction order chosen for ``sizes``)."""
        gen = _Gen(self.expr, self.backend, dict(sizes or {}), self.params, self.dim_params)
        body = gen.generate(self.name)
        from mlmyths.tensorcalc.printing import to_string

        comment = "\n".join("# " + line for line in to_string(self.expr).splitlines())
        kernels = any(isinstance(n, MatFn) and n.order for n in topological(self.expr))
        return f"{self.backend.imports(kernels)}\n\n# generated by mlmyths.tensorcalc\n{comment}\n{body}"

    def _specialize(self, args: list[Any]) -> Callable[..., Any]:
        sizes: dict[Dim, int] = {}
        for v, arr in zip(self.params, args):
            shape = tuple(getattr(arr, "shape", None) or ())
            if len(shape) != v.rank:
                raise ShapeError(f"input {v.name!r} must have shape {shape_text(v.shape)} "
                                 f"({v.rank} axes), got an array of shape {tuple(shape)}")
            for d, got in zip(v.shape, shape):
                want = sizes.setdefault(d, int(got)) if isinstance(d, str) else d
                if int(got) != want:
                    other = next(p.name for p in self.params if d in p.shape)
                    raise ShapeError(f"input {v.name!r} has size {got} along dimension {d}, but {other!r} "
                                     f"has {want}")
        for d, value in zip(self.dim_params, args[len(self.params):]):
            sizes[d] = value
        source = self.source(sizes)
        namespace = self.backend.namespace()
        code = builtins.compile(source, f"<tensorcalc {self.name}>", "exec")
        exec(code, namespace)  # our own generated source; user input reaches it only as validated names
        fn = namespace[self.name]
        if self.backend.name == "jax":
            fn = namespace["_jax"].jit(fn, static_argnums=tuple(range(len(self.params), len(args))))
        return fn

    def _free_sizes(self, kwargs: Mapping[str, Any], values: Sequence[Any]) -> tuple[int, ...]:
        """Sizes of the dimensions no input of the expression fixes: from a keyword
        (``n=5``) or the shape of any input of the origin that has them (checked)."""
        own_sizes: dict[Dim, tuple[int, str]] = {}
        for v, arr in zip(self.params, values):
            for d, got in zip(v.shape, tuple(getattr(arr, "shape", ()))):
                own_sizes.setdefault(d, (int(got), v.name))
        found: dict[Dim, tuple[int, str]] = {}
        for v in self.optional:  # every given origin input: its rank and the dimensions it shares
            if v.name not in kwargs:
                continue
            shape = tuple(getattr(kwargs[v.name], "shape", None) or ())
            if len(shape) != v.rank:
                raise ShapeError(f"input {v.name!r} must have shape {shape_text(v.shape)} "
                                 f"({v.rank} axes), got an array of shape {shape}")
            for d, got in zip(v.shape, shape):
                got = int(got)
                if isinstance(d, int) and got != d:
                    raise ShapeError(f"input {v.name!r} must have size {d} along axis {v.shape.index(d)}, got {got}")
                known = own_sizes.get(d) or found.get(d)
                if known is not None and known[0] != got:
                    raise ShapeError(f"input {v.name!r} has size {got} along dimension {d}, but {known[1]!r} "
                                     f"has {known[0]}")
                if d in self.dim_sources:
                    found.setdefault(d, (got, v.name))
        sizes = []
        missing = []
        for d in self.dim_params:
            given = kwargs.get(str(d)) if str(d) not in self._by_name else None
            if given is not None:
                if isinstance(given, bool) or not isinstance(given, int) or given < 1:
                    raise UserError(f"dimension {d!r} must be given as a positive integer, got {given!r}")
                if d in found and found[d][0] != given:
                    raise ShapeError(f"dimension {d} was given as {given}, but input {found[d][1]!r} has size "
                                     f"{found[d][0]} along it")
                sizes.append(given)
            elif d in found:
                sizes.append(found[d][0])
            else:
                sources = [name for name, _ in self.dim_sources[d]]
                missing.append(f"{' or '.join(sources)} (for dimension {d}) or {d}=<size>" if sources else str(d))
        if missing:
            raise UserError(f"missing input(s) {', '.join(missing)}; this expression takes "
                            f"{', '.join(self.param_names)}")
        return tuple(sizes)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if args:
            if len(args) > len(self.param_names):
                raise UserError(f"{self.name}() takes {len(self.param_names)} inputs "
                                f"({', '.join(self.param_names)}), got {len(args)}")
            kwargs = {**dict(zip(self.param_names, args)), **kwargs}
        try:  # the hot path: arrays by name, one dict lookup by their shapes
            values = [kwargs[p] for p in self._own_names]
            key = tuple([v.shape for v in values])
        except KeyError:
            missing = [p for p in self._own_names if p not in kwargs]
            raise UserError(f"missing input(s) {', '.join(missing)}; this expression takes "
                            f"{', '.join(self.param_names)}") from None
        except AttributeError:  # scalars as Python numbers, array-likes without a shape
            key = tuple([getattr(v, "shape", ()) for v in values])
        if self.dim_params:  # read (and check) once per combination of shapes
            get = kwargs.get
            shapes = (key, tuple([getattr(get(name), "shape", None) for name in self._optional_names]),
                      tuple([get(name) for name in self._dim_keywords]))
            try:
                sizes = self._sizes[shapes]
            except (KeyError, TypeError):  # TypeError: an unhashable dimension value, rejected below
                sizes = self._free_sizes(kwargs, values)
                if len(self._sizes) < 1024:
                    self._sizes[shapes] = sizes
            values += sizes
            key += sizes
        fn = self._cache.get(key)
        if fn is None:
            with self._lock:
                fn = self._cache.get(key)
                if fn is None:
                    fn = self._specialize(values)
                    self._cache[key] = fn
        return fn(*values)

    def __repr__(self) -> str:
        return f"<tensorcalc compiled {self.backend.name} {self.name}({', '.join(self.param_names)})>"


_COMPILED: OrderedDict[tuple[Any, ...], Compiled] = OrderedDict()
_COMPILED_MAX = 256


def compile(expr: Expr, backend: str = "numpy", variables: Expr | Iterable[Var] | None = None) -> Compiled:  # noqa: A001
    """Compile ``expr`` into a function of arrays (cached by expression and backend).

    Parameters
    ----------
    expr : Expr
        The expression, e.g. a Hessian from :func:`tc.hessian`.
    backend : {"numpy", "torch", "jax"}, default "numpy"
        Array library of the generated code (jax functions are ``jax.jit``-ed).
    variables : Expr or iterable of variables, optional
        Further inputs the function accepts, read for the dimensions that ``expr`` itself
        does not fix (the Hessian of ``sum(x.^2)`` is ``2*eye(n)`` and has no input).
        Default: for a derivative, the variables of the expression it was derived from
        (so that it takes the same inputs); else none. Dimensions fixed by no input
        become keyword arguments (``fn(n=5)``).

    Returns
    -------
    Compiled
        ``fn(**arrays)``; ``fn.source()`` shows the generated code.
    """
    if not isinstance(expr, Expr):
        raise UserError(f"compile() takes a tensorcalc expression, got {type(expr).__name__}")
    extra: list[Var] = []
    if isinstance(variables, Expr):
        extra = variables_of(variables)
    elif variables is not None:
        extra = list(variables)
        if not all(isinstance(v, Var) for v in extra):
            raise UserError("variables= takes an expression or tensorcalc variables")
    else:
        extra = list(origin_variables(expr))
    key = (expr, backend, tuple(extra))
    fn = _COMPILED.get(key)
    if fn is None:
        fn = Compiled(expr, backend, extra)
        _COMPILED[key] = fn
        if len(_COMPILED) > _COMPILED_MAX:
            _COMPILED.popitem(last=False)
    else:
        _COMPILED.move_to_end(key)
    return fn


def source(expr: Expr, backend: str = "numpy", sizes: Mapping[Dim, int] | None = None,
           variables: Expr | Iterable[Var] | None = None) -> str:
    """The Python source that :func:`compile` generates for ``expr``.

    Contraction orders are chosen for ``sizes`` (default: every dimension 1000).
    """
    return compile(expr, backend, variables).source(sizes)
