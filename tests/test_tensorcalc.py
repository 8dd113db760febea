"""mlmyths.tensorcalc: parsing, shapes, simplification, every differentiation rule against
central finite differences and torch.func, the paper's three Hessians against their closed
forms, a third derivative, code generation for numpy/torch/jax, and `mlmyths derive`."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mlmyths import tensorcalc as tc
from mlmyths.errors import UserError
from mlmyths import hessians as bench
from mlmyths.tensorcalc.ir import Delta, Lin, Product
from conftest import run_cli


pytestmark = pytest.mark.usefixtures("float64_default")  # other modules' models are float32

N, M = 3, 4  # sizes of the symbolic dimensions n and m in numeric checks


# -- numeric helpers ---------------------------------------------------------------------------


def random_inputs(f: tc.Expr, rng: np.random.Generator, positive: bool = False, sizes: dict | None = None
                  ) -> dict[str, np.ndarray]:
    sizes = {"n": N, "m": M, "k": 2, **(sizes or {})}
    out = {}
    for v in tc.variables(f):
        shape = tuple(sizes[d] if isinstance(d, str) else d for d in v.shape)
        a = rng.uniform(0.5, 1.5, shape) if positive else rng.standard_normal(shape)
        if len(shape) == 2 and shape[0] == shape[1] and v.name in ("A", "S"):
            a = a + shape[0] * np.eye(shape[0])  # well conditioned for inv/det/logdet
        out[v.name] = a
    return out


def finite_difference(fn, inputs: dict[str, np.ndarray], wrt: str, h: float = 1e-6) -> np.ndarray:
    """Central differences of ``fn(**inputs)`` w.r.t. ``inputs[wrt]``: shape out.shape + wrt.shape."""
    x = inputs[wrt]
    base = np.asarray(fn(**inputs))
    out = np.zeros(base.shape + x.shape)
    for t in np.ndindex(*x.shape):
        plus, minus = dict(inputs), dict(inputs)
        e = np.zeros_like(x)
        e[t] = h
        plus[wrt], minus[wrt] = x + e, x - e
        out[(...,) + t] = (np.asarray(fn(**plus)) - np.asarray(fn(**minus))) / (2 * h)
    return out


def torch_derivative(fn, inputs: dict[str, np.ndarray], wrt: str, order: int) -> np.ndarray:
    """The order-th derivative by torch.func.jacrev, nested."""
    tensors = {k: torch.tensor(v) for k, v in inputs.items()}

    def g(x):
        return fn(**{**tensors, wrt: x})

    for _ in range(order):
        g = torch.func.jacrev(g)
    return g(tensors[wrt]).detach().numpy(force=True)


# -- every rule, against finite differences and torch.func -------------------------------------

# (expression, kinds, wrt, torch version, positive inputs)
RULES = [
    ("A*x", dict(A="matrix", x="vector"), "x", lambda A, x: A @ x, False),
    ("A*x", dict(A=("n", "m"), x=("m",)), "A", lambda A, x: A @ x, False),
    ("x'*A*x", dict(x="vector", A="matrix"), "x", lambda x, A: x @ A @ x, False),
    ("A*B", dict(A=("n", "m"), B=("m", "n")), "A", lambda A, B: A @ B, False),
    ("A'*B", dict(A=("m", "n"), B=("m", "n")), "B", lambda A, B: A.T @ B, False),
    ("x*y'", dict(x="vector", y=("m",)), "x", lambda x, y: torch.outer(x, y), False),
    ("x'*y", dict(x="vector", y="vector"), "y", lambda x, y: x @ y, False),
    ("x.*y", dict(x="vector", y="vector"), "x", lambda x, y: x * y, False),
    ("x./y", dict(x="vector", y="vector"), "y", lambda x, y: x / y, True),
    ("x.^3", dict(x="vector"), "x", lambda x: x ** 3, False),
    ("x.^(-0.5)", dict(x="vector"), "x", lambda x: x ** -0.5, True),
    ("exp(x)", dict(x="vector"), "x", lambda x: torch.exp(x), False),
    ("log(x)", dict(x="vector"), "x", lambda x: torch.log(x), True),
    ("sin(X)", dict(X=("n", "m")), "X", lambda X: torch.sin(X), False),
    ("cos(x)", dict(x="vector"), "x", lambda x: torch.cos(x), False),
    ("tanh(x)", dict(x="vector"), "x", lambda x: torch.tanh(x), False),
    ("sigmoid(x)", dict(x="vector"), "x", lambda x: torch.sigmoid(x), False),
    ("sqrt(x)", dict(x="vector"), "x", lambda x: torch.sqrt(x), True),
    ("abs(x)", dict(x="vector"), "x", lambda x: torch.abs(x), True),
    ("exp(x) + 1", dict(x="vector"), "x", lambda x: torch.exp(x) + 1, False),
    ("sum(X)", dict(X=("n", "m")), "X", lambda X: torch.sum(X), False),
    ("tr(A)", dict(A="matrix"), "A", lambda A: torch.trace(A), False),
    ("diag(x)", dict(x="vector"), "x", lambda x: torch.diag(x), False),
    ("diag(A)", dict(A="matrix"), "A", lambda A: torch.diagonal(A), False),
    ("det(A)", dict(A="matrix"), "A", lambda A: torch.linalg.det(A), False),
    ("logdet(A)", dict(A="matrix"), "A", lambda A: torch.linalg.slogdet(A)[1], False),
    ("inv(A)", dict(A="matrix"), "A", lambda A: torch.linalg.inv(A), False),
    ("inv(A)*x", dict(A="matrix", x="vector"), "A", lambda A, x: torch.linalg.inv(A) @ x, False),
    ("norm2(x)", dict(x="vector"), "x", lambda x: torch.linalg.norm(x), False),
    ("norm2(X)^2", dict(X=("n", "m")), "X", lambda X: torch.sum(X ** 2), False),
    ("c*x", dict(c="scalar", x="vector"), "c", lambda c, x: c * x, False),
    ("x/c", dict(c="scalar", x="vector"), "c", lambda c, x: x / c, True),
    ("c^2*sum(x)", dict(c="scalar", x="vector"), "c", lambda c, x: c ** 2 * torch.sum(x), False),
    ("-A'", dict(A=("n", "m")), "A", lambda A: -A.T, False),
    ("(A + A')*x - 2*x", dict(A="matrix", x="vector"), "x", lambda A, x: (A + A.T) @ x - 2 * x, False),
]


@pytest.mark.parametrize("expr,kinds,wrt,torch_fn,positive", RULES, ids=[r[0] + " d/d" + r[2] for r in RULES])
def test_rule_first_and_second_derivative(expr, kinds, wrt, torch_fn, positive):
    rng = np.random.default_rng(0)
    f = tc.parse(expr, **kinds)
    inputs = random_inputs(f, rng, positive)
    value = tc.compile(f)(**inputs)
    for order in (1, 2):
        lower = tc.derivative(f, wrt, order=order - 1)
        for mode in ("forward", "reverse"):
            D = tc.derivative(f, wrt, order=order, mode=mode)
            out = np.asarray(tc.compile(D, variables=f)(**inputs))
            assert out.shape == np.shape(value) + inputs[wrt].shape * order
            fd = finite_difference(tc.compile(lower, variables=f), inputs, wrt)
            np.testing.assert_allclose(out, fd, rtol=1e-4, atol=1e-5 * max(1.0, np.abs(fd).max()),
                                       err_msg=f"{expr} order {order} {mode} vs finite differences")
            ref = torch_derivative(torch_fn, inputs, wrt, order)
            np.testing.assert_allclose(out, ref, rtol=1e-9, atol=1e-9, err_msg=f"{expr} order {order} {mode} vs torch")


# -- the paper's problems ------------------------------------------------------------------------


@pytest.mark.parametrize("problem", bench.PROBLEMS)
@pytest.mark.parametrize("mode", ["auto", "forward", "reverse"])
def test_paper_hessians_match_closed_forms(problem, mode):
    spec = bench.PROBLEM_SPECS[problem]
    f = spec.parse()
    H = tc.hessian(f, spec.wrt, mode=mode)
    for n in (5, 12):
        inputs = bench.make_inputs(problem, n, seed=n)
        out = tc.compile(H, variables=f)(**inputs)
        np.testing.assert_allclose(out, bench.closed_form(problem, inputs), rtol=1e-12, atol=1e-12)
        assert bench.check_hessian(problem, inputs, out) < 1e-12


def test_logistic_hessian_is_one_scaled_product():
    """Xᵀ diag(v) X: a single product X[i,j] v[i] X[i,k] (no n x n x m intermediate)."""
    spec = bench.PROBLEM_SPECS["logistic"]
    for mode in ("forward", "reverse", "auto"):
        H = tc.hessian(spec.parse(), "w", mode=mode)
        while isinstance(H, Lin) and len(H.terms) == 1:
            H = H.terms[0][1]
        assert isinstance(H, Product), mode
        xs = [idx for op, idx in zip(H.operands, H.indices) if getattr(op, "name", None) == "X"]
        assert len(xs) == 2 and xs[0][0] == xs[1][0], mode  # both X share the summed row label
        scalings = [idx for op, idx in zip(H.operands, H.indices) if getattr(op, "name", None) != "X"]
        assert scalings and all(idx == xs[0][:1] for idx in scalings), mode  # v[i] = product of vectors
        assert tc.to_string(H).startswith("X'*diag("), tc.to_string(H)
    src = tc.source(tc.hessian(spec.parse(), "w"), sizes={"n": 500, "m": 1000})
    assert "X.T @" in src and "einsum" not in src and "tensordot" not in src


def test_factorization_hessian_is_delta_times_gram_written_by_broadcasting():
    spec = bench.PROBLEM_SPECS["factorization"]
    f = spec.parse()
    H = tc.hessian(f, "U")
    assert H.shape == ("n", "k", "n", "k")
    assert tc.to_string(H) == "2*(δ[i,k] * (V'*V)[j,l])[i,j,k,l]"
    src = tc.source(H, variables=f)
    assert "as_strided" in src and "eye" not in src and "einsum" not in src
    for backend in ("torch", "jax"):
        assert "eye" not in tc.source(H, backend=backend, variables=f)


def test_third_derivative_of_sum_exp():
    f = tc.parse("sum(exp(X*w))", X=("m", "n"), w=("n",))
    rng = np.random.default_rng(3)
    X, w = rng.standard_normal((5, 3)) * 0.5, rng.standard_normal(3) * 0.5
    e = np.exp(X @ w)
    expected = np.einsum("i,ij,ik,il->jkl", e, X, X, X)
    for mode in ("forward", "reverse", "auto"):
        D3 = tc.derivative(f, "w", order=3, mode=mode)
        assert D3.shape == ("n", "n", "n")
        np.testing.assert_allclose(tc.compile(D3)(X=X, w=w), expected, rtol=1e-12)
    fd = finite_difference(tc.compile(tc.hessian(f, "w")), {"X": X, "w": w}, "w")
    np.testing.assert_allclose(tc.compile(D3)(X=X, w=w), fd, rtol=1e-6)


def test_matrix_variable_hessian_layout():
    """H[i,j,p,q] = ∂²f/∂U_ij ∂U_pq for f = sum((U*V').^2) at a point, against torch.func.hessian."""
    f = tc.parse("sum((U*V').^3)", U=("n", "k"), V=("m", "k"))
    rng = np.random.default_rng(4)
    U, V = rng.standard_normal((3, 2)), rng.standard_normal((4, 2))
    H = tc.compile(tc.hessian(f, "U"))(U=U, V=V)
    ref = torch.func.hessian(lambda u: torch.sum((u @ torch.tensor(V).T) ** 3))(torch.tensor(U)).numpy()
    assert H.shape == (3, 2, 3, 2)
    np.testing.assert_allclose(H, ref, rtol=1e-10)


# -- simplification -----------------------------------------------------------------------------


def test_structurally_equal_expressions_are_one_node():
    x, A = tc.vector("x"), tc.matrix("A")
    assert tc.parse("x'*A*x", x="vector", A="matrix") is x @ A @ x
    assert (A.T).T is A
    assert A + A.T is A.T + A  # commutative sums are canonical
    assert tc.to_string(A + A - 2 * A) == "0"
    assert tc.to_string(3 * x - x + 0 * A @ x) == "2*x"


def test_delta_contraction_by_renaming():
    A = tc.matrix("A", "n", "m")
    x = tc.vector("x", "m")
    J = tc.derivative(A @ x, "x")  # A[i,j] δ[j,k] -> A
    assert J is A
    assert tc.derivative(tc.sum(x), "x").shape == ("m",)
    assert tc.to_string(tc.derivative(tc.sum(x), "x")) == "ones(m)"
    assert tc.to_string(tc.hessian(tc.sum(x ** 2), "x")) == "2*eye(m)"


def test_like_terms_and_factoring():
    x, y = tc.vector("x"), tc.vector("y")
    A = tc.matrix("A")
    e = A @ x + A @ y
    assert isinstance(e, Product) and tc.to_string(e) == "A*(x + y)"
    assert tc.to_string(tc.exp(x) * tc.exp(x)) == "exp(x).^2"
    g = tc.gradient(tc.sum(tc.exp(x) * tc.sin(x)), "x")
    assert tc.node_count(g) <= 5, tc.to_string(g)


def test_forward_and_reverse_give_compact_hessians():
    for problem in bench.PROBLEMS:
        spec = bench.PROBLEM_SPECS[problem]
        f = spec.parse()
        sizes = [tc.node_count(tc.hessian(f, spec.wrt, mode=m)) for m in ("forward", "reverse")]
        assert max(sizes) <= 15, (problem, sizes)
    f = bench.PROBLEM_SPECS["quadratic"].parse()
    assert tc.hessian(f, "x", mode="forward") is tc.hessian(f, "x", mode="reverse")


def test_simplify_is_idempotent():
    f = bench.PROBLEM_SPECS["logistic"].parse()
    H = tc.hessian(f, "w")
    assert tc.simplify(H) is tc.simplify(tc.simplify(H))


def test_delta_is_not_a_dense_operand():
    """d(U*V')/dU keeps δ as structure: the Jacobian is δ[a,p] V[b,q], written by broadcasting."""
    f = tc.parse("U*V'", U=("n", "k"), V=("m", "k"))
    J = tc.derivative(f, "U")
    assert isinstance(J, Product) and any(isinstance(op, Delta) for op in J.operands)
    rng = np.random.default_rng(0)
    U, V = rng.standard_normal((3, 2)), rng.standard_normal((4, 2))
    out = tc.compile(J, variables=f)(U=U, V=V)
    np.testing.assert_allclose(out, np.einsum("ap,bq->abpq", np.eye(3), V))


# -- printing ------------------------------------------------------------------------------------


@pytest.mark.parametrize("expr,kinds,text", [
    ("x'*A*x", dict(x="vector", A="matrix"), "x'*A*x"),
    ("A*B'*x", dict(A="matrix", B="matrix", x="vector"), "A*B'*x"),
    ("x*y'", dict(x="vector", y="vector"), "x*y'"),
    ("tr(A*B)", dict(A="matrix", B="matrix"), "tr(A*B)"),
    ("diag(x)*A", dict(x="vector", A="matrix"), "diag(x)*A"),
    ("exp(x) + 1", dict(x="vector"), "exp(x) + 1"),
    ("sum(log(x))", dict(x="vector"), "sum(log(x))"),
    ("inv(A)'", dict(A="matrix"), "inv(A)'"),
])
def test_matrix_notation(expr, kinds, text):
    assert tc.to_string(tc.parse(expr, **kinds)) == text


def test_gradients_print_in_matrix_notation():
    f = tc.parse("x'*A*x", x="vector", A="matrix")
    assert tc.to_string(tc.derivative(f, "x")) == "(A + A')*x"
    assert tc.to_string(tc.hessian(f, "x")) == "A + A'"
    assert tc.to_string(tc.gradient(tc.parse("logdet(S)", S="matrix"), "S")) == "inv(S)'"
    g = tc.to_string(tc.gradient(bench.PROBLEM_SPECS["logistic"].parse(), "w"))
    assert g.startswith("-X'*(") and "where" in g


# -- parsing and errors ------------------------------------------------------------------------


def test_dimensions_are_inferred_and_named():
    f = tc.parse("x'*A*x")  # undeclared: x vector, A matrix
    assert {v.name: v.shape for v in tc.variables(f)} == {"x": ("n",), "A": ("n", "n")}
    f = tc.parse("sum(log(exp(-y.*(X*w)) + 1))")
    assert {v.name: v.shape for v in tc.variables(f)} == {"y": ("n",), "X": ("n", "m"), "w": ("m",)}
    f = tc.parse("2.*x + x./2 + .5*x", x="vector")  # MATLAB-style numbers next to dotted operators
    assert tc.to_string(f) == "3*x"


@pytest.mark.parametrize("text,column,expected", [
    ("x'*A*", 6, "an operand"),
    ("x +* y", 4, "an operand"),
    ("(x + y", 7, "')'"),
    ("exp x", 5, "'(' after the function name"),
    ("x $ y", 3, "a number, a name"),
    ("foo(x)", 1, "a function name"),
    ("x.^", 4, "an operand"),  # x.^y with a non-constant exponent is valid (tests/test_tensorcalc_language.py)
    ("2*x + 1e999", 7, "a finite number"),
    ("", 1, "an expression"),
    ("x y", 3, "an operator or the end"),
])
def test_parse_errors_give_column_and_expectation(text, column, expected):
    with pytest.raises(tc.ParseError) as info:
        tc.parse(text)
    assert info.value.column == column
    assert expected in info.value.expected
    assert isinstance(info.value, UserError)
    assert f"column {column}" in str(info.value) and "\n" not in str(info.value)


def test_shape_errors_name_both_operands():
    with pytest.raises(tc.ShapeError, match=r"A \(matrix of shape n x m\).*x \(column vector of size k\)") as info:
        tc.parse("A*x", A=("n", "m"), x=("k",))
    assert isinstance(info.value, UserError)
    with pytest.raises(tc.ShapeError, match=r"x .* and y'"):
        tc.parse("x + y'", x="vector", y="vector")
    with pytest.raises(tc.ShapeError, match="x'\\*y"):
        tc.parse("x*y", x="vector", y="vector")
    with pytest.raises(tc.ShapeError, match="'\\^' raises a scalar"):
        tc.parse("A^2", A="matrix")
    with pytest.raises(tc.ShapeError, match="square"):
        tc.parse("det(A)", A=("n", "m"))
    x, A = tc.vector("x", "n"), tc.matrix("A", "m", "m")
    with pytest.raises(tc.ShapeError, match=r"A \(shape \(m, m\)\) and x \(shape \(n,\)\)"):
        A @ x
    with pytest.raises(tc.ShapeError, match="x .*A"):
        x + A


def test_bad_variable_kinds_and_names():
    with pytest.raises(UserError, match="kind must be one of"):
        tc.parse("x", x="cube")
    with pytest.raises(UserError, match="identifier"):
        tc.vector("x; import os")
    with pytest.raises(UserError, match="not a variable of the expression"):
        tc.derivative(tc.parse("x'*x"), "z")
    with pytest.raises(UserError, match="exp"):
        tc.parse("exp", exp="vector")


def test_user_text_never_reaches_generated_code_except_as_names():
    f = tc.parse("x'*A*x + 1e3*sum(x)", x="vector", A="matrix")
    src = tc.source(tc.derivative(f, "x"))
    code = [line for line in src.splitlines() if not line.startswith("#")]
    assert all("1e3" not in line for line in code)
    with pytest.raises(tc.ParseError):
        tc.parse("__import__('os')")


# -- code generation --------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_backends_agree(backend):
    if backend == "jax":
        jax = pytest.importorskip("jax", reason="the jax backend needs jax (pip install -e '.[dev]')")
        jax.config.update("jax_enable_x64", True)

    def run(fn, arrays):
        if backend == "torch":
            return fn(**{k: torch.tensor(v) for k, v in arrays.items()}).numpy()
        return np.asarray(fn(**arrays))

    rng = np.random.default_rng(1)
    for problem in bench.PROBLEMS:
        spec = bench.PROBLEM_SPECS[problem]
        f = spec.parse()
        H = tc.hessian(f, spec.wrt)
        inputs = bench.make_inputs(problem, 6, seed=2)
        ref = tc.compile(H, variables=f)(**inputs)
        out = run(tc.compile(H, backend, variables=f), inputs)
        np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
    f = tc.parse("sum(x.^2) + x'*A*x", x="vector", A="matrix")  # dense + delta term, added in place
    inputs = {"x": rng.standard_normal(4), "A": rng.standard_normal((4, 4))}
    expected = inputs["A"] + inputs["A"].T + 2 * np.eye(4)
    for b in ("numpy", backend):
        fn = tc.compile(tc.hessian(f, "x"), b, variables=f)
        out = np.asarray(fn(**inputs)) if b == "numpy" else run(fn, inputs)
        np.testing.assert_allclose(out, expected, rtol=1e-12)


def test_compiled_function_checks_inputs_and_caches():
    f = tc.parse("x'*A*x", x="vector", A="matrix")
    fn = tc.compile(tc.derivative(f, "x"))
    assert tc.compile(tc.derivative(f, "x")) is fn
    with pytest.raises(tc.ShapeError, match="input 'x' has size 4 along dimension n, but 'A' has 3"):
        fn(x=np.ones(4), A=np.ones((3, 3)))
    with pytest.raises(UserError, match="missing input"):
        fn(x=np.ones(3))
    arrays = {"x": np.ones(2), "A": 2 * np.eye(2)}
    np.testing.assert_allclose(fn(*[arrays[p] for p in fn.param_names]), [4.0, 4.0])  # positional, in order
    H = tc.hessian(tc.parse("sum(x.^2)"), "x")  # 2*eye(n): no input fixes n
    assert tc.compile(H)(n=3).tolist() == (2 * np.eye(3)).tolist()
    assert tc.compile(H, variables=tc.parse("sum(x.^2)"))(x=np.ones(2)).shape == (2, 2)


def test_generated_code_uses_blas_products():
    f = tc.parse("x'*A*x", x="vector", A="matrix")
    assert "A.T + A" in tc.source(tc.hessian(f, "x")).replace("_t0 = A.T\n    _t1 = _t0 + A", "A.T + A")
    g = tc.source(tc.derivative(f, "x"))
    assert "@" in g and "einsum" not in g


# -- command line ------------------------------------------------------------------------------


def test_cli_derive_prints_derivative_and_code():
    r = run_cli("derive", "x'*A*x", "--wrt", "x", "--order", "2", "--var", "x=vector", "--var", "A=matrix",
                "--code", "numpy")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "A + A'"
    assert "def evaluate(A):" in r.stdout and "import numpy" in r.stdout
    r = run_cli("derive", "norm2(T - U*V')^2", "--wrt", "U", "--order", "2", "--var", "U=n,k", "--var", "V=m,k")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "2*(δ[i,k] * (V'*V)[j,l])[i,j,k,l]"


def test_cli_derive_malformed_expression_is_one_line_exit_2():
    r = run_cli("derive", "x'*A*", "--wrt", "x")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "column 6" in r.stderr and "expected an operand" in r.stderr
    r = run_cli("derive", "A*x", "--wrt", "x", "--var", "A=n,m", "--var", "x=k")
    assert r.returncode == 2 and "cannot multiply A" in r.stderr and r.stderr.count("\n") == 1


# -- tensors of any order and the operator API ------------------------------------------------


def test_tensor_variables_and_einsum():
    T = tc.tensor("T", ("n", "m", "k"))
    w = tc.vector("w", "k")
    f = tc.sum(tc.einsum("ijk,k->ij", T, w) ** 2)
    H = tc.hessian(f, "T")
    assert H.shape == ("n", "m", "k") * 2
    rng = np.random.default_rng(5)
    Tv, wv = rng.standard_normal((2, 3, 2)), rng.standard_normal(2)
    ref = torch.func.hessian(lambda t: torch.sum(torch.einsum("ijk,k->ij", t, torch.tensor(wv)) ** 2))(
        torch.tensor(Tv)).numpy()
    np.testing.assert_allclose(tc.compile(H, variables=f)(T=Tv, w=wv), ref, rtol=1e-12, atol=1e-12)
    assert tc.hessian(f, "T") is tc.derivative(f, "T", order=2)
    g = tc.derivative(tc.einsum("ijk,k->ij", T, w), "w")  # a Jacobian of a matrix w.r.t. a vector is T itself
    assert g is T
    with pytest.raises(tc.ShapeError, match="einsum index 'k' has size k in T"):
        tc.einsum("ijk,k->ij", T, tc.vector("v", "n"))
    with pytest.raises(UserError, match="explicit output"):
        tc.einsum("ijk,k", T, w)


def test_operator_api_matches_parser():
    x, y, A = tc.vector("x"), tc.vector("y"), tc.matrix("A")
    assert x @ A @ y + 2 * tc.exp(x) @ y is tc.parse("x'*A*y + 2*exp(x)'*y", x="vector", y="vector", A="matrix")
    assert (x / 2 - y ** 2).shape == ("n",)
    assert tc.norm2(x) is tc.parse("norm2(x)")
    assert tc.diag(tc.diag(A)) is tc.parse("diag(diag(A))")
    B = tc.matrix("A", "n", "m")  # tr(A*A') does not make A square
    assert tc.trace(B @ B.T) is tc.parse("tr(A*A')")
    assert x ** y is tc.parse("x.^y")  # an expression exponent: the elementwise power a .^ b
    with pytest.raises(UserError, match="a number or a tensorcalc expression"):
        x ** "2"
    assert np.float64(2.0) * x is 2 * x  # numpy scalars defer to the expression's operators
    with pytest.raises(UserError, match="expected a tensorcalc expression or a number"):
        x + np.ones(3)


def test_closed_forms_in_torch_match_numpy():
    for problem in bench.PROBLEMS:
        inputs = bench.make_inputs(problem, 6)
        ref = bench.closed_form(problem, inputs)
        got = bench.closed_form(problem, {k: torch.tensor(v) for k, v in inputs.items()}, torch)
        np.testing.assert_allclose(got.numpy(), ref, rtol=1e-12)
