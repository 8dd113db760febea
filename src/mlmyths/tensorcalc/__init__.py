"""Tensor calculus: derivatives of any order of matrix and tensor expressions, compiled.

Myth 1 of Chang (2019), "TensorFlow is a tensor manipulation library": deep-learning
frameworks differentiate with matrix calculus and build large, different graphs for
forward and reverse mode. Laue, Mitterreiter & Giesen ("Computing Higher Order
Derivatives of Matrix and Tensor Expressions", NeurIPS 2018; "A Simple and Efficient
Tensor Calculus", AAAI 2020) differentiate in index notation, where one rule for the
generalized product covers both modes and derivatives stay compact. This package is
that method:

- :mod:`.ir` the expression DAG (symbolic dimensions, generalized products);
- :mod:`.simplify` smart constructors that keep it canonical and compact;
- :mod:`.ops` the operator API with shape checks;
- :mod:`.parse` the matrixcalculus.org string language;
- :mod:`.diff` forward and reverse mode, any order;
- :mod:`.printing` matrix / index notation;
- :mod:`.codegen` compilation to numpy, torch or jax code;
- :mod:`.kernels` numeric kernels the generated code calls (the derivatives of ``det``);
- :mod:`.bench` the paper's three Hessian problems and the peer frameworks.

>>> from mlmyths import tensorcalc as tc
>>> f = tc.parse("x'*A*x", x="vector", A="matrix")
>>> H = tc.derivative(f, "x", order=2)
>>> tc.to_string(H)
"A + A'"
>>> import numpy as np
>>> tc.compile(H)(x=np.ones(2), A=np.eye(2)).tolist()
[[2.0, 0.0], [0.0, 2.0]]
"""
from __future__ import annotations

from mlmyths.tensorcalc.codegen import BACKENDS, Compiled, compile, source
from mlmyths.tensorcalc.diff import derivative, forward, gradient, hessian, reverse
from mlmyths.tensorcalc.ir import Dim, Expr, ShapeError, Var, node_count, topological, variables
from mlmyths.tensorcalc.ops import (
    abs,
    adj,
    arccos,
    arcsin,
    arctan,
    cos,
    det,
    diag,
    divide,
    einsum,
    exp,
    identity,
    inv,
    log,
    logdet,
    matmul,
    matrix,
    multiply,
    norm1,
    norm2,
    outer,
    power,
    relu,
    scalar,
    sigmoid,
    sign,
    sin,
    sqrt,
    step,
    sum,
    tan,
    tanh,
    tensor,
    trace,
    transpose,
    vector,
)
from mlmyths.tensorcalc.parse import ParseError, parse
from mlmyths.tensorcalc.printing import to_string
from mlmyths.tensorcalc.simplify import simplify

tr = trace

__all__ = [
    "BACKENDS", "Compiled", "Dim", "Expr", "ParseError", "ShapeError", "Var",
    "abs", "adj", "arccos", "arcsin", "arctan", "compile", "cos", "derivative", "det", "diag", "divide", "einsum",
    "exp", "forward", "gradient", "hessian", "identity", "inv", "log", "logdet", "matmul", "matrix", "multiply",
    "node_count", "norm1", "norm2", "outer", "parse", "power", "relu", "reverse", "scalar", "sigmoid", "sign",
    "simplify", "sin", "source", "sqrt", "step", "sum", "tan", "tanh", "tensor", "to_string", "topological", "tr",
    "trace", "transpose", "variables", "vector",
]
