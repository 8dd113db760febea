"""mlmyths.tensorcalc speaks matrixcalculus.org's language (vector(1), matrix(1), norm1, a^b,
tan/arcsin/arccos/arctan, relu, the a-g scalar default), det's derivatives where X is singular
(cofactor form, against jax and Levi-Civita closed forms), dimensions of a compiled derivative
inferred from the inputs of the expression it came from, and hostile input (deep nesting, long
sums, huge numbers, typos in --var) ending in one line and exit 2."""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from mlmyths import tensorcalc as tc
from mlmyths.errors import UserError
from mlmyths.tensorcalc.parse import MAX_NESTING, kind_from_text
from conftest import run_cli

REPO = Path(__file__).resolve().parents[1]


# -- references: jax (float64) and central finite differences ---------------------------------


@pytest.fixture(scope="module")
def jnp():
    jax = pytest.importorskip("jax", reason="comparisons with jax need it (pip install -e '.[dev]')")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy

    return jax.numpy


def jax_derivative(fn, inputs: dict[str, np.ndarray], wrt: str, order: int) -> np.ndarray:
    """The order-th derivative of ``fn(**inputs)`` w.r.t. ``inputs[wrt]`` by nested jax.jacfwd."""
    import jax
    import jax.numpy as jnp

    arrays = {k: jnp.asarray(v) for k, v in inputs.items()}

    def g(x):
        return fn(**{**arrays, wrt: x})

    for _ in range(order):
        g = jax.jacfwd(g)
    return np.asarray(jax.jit(g)(arrays[wrt]))  # one compilation instead of one per primitive


def finite_difference(fn, inputs: dict[str, np.ndarray], wrt: str, h: float = 1e-6) -> np.ndarray:
    x = np.asarray(inputs[wrt], dtype=float)
    base = np.asarray(fn(**inputs))
    out = np.zeros(base.shape + x.shape)
    for t in np.ndindex(*x.shape):
        e = np.zeros_like(x)
        e[t] = h
        out[(...,) + t] = (np.asarray(fn(**{**inputs, wrt: x + e})) - np.asarray(fn(**{**inputs, wrt: x - e}))) / (2 * h)
    return out


def check_orders(f: tc.Expr, inputs: dict[str, np.ndarray], wrt: str, jax_fn, orders=(1, 2)) -> None:
    """Orders ``orders`` of f w.r.t. ``wrt``, forward and reverse mode: against jax, and each
    order against central differences of the compiled order below."""
    for order in orders:
        lower = tc.compile(tc.derivative(f, wrt, order=order - 1), variables=f)
        fd = finite_difference(lower, inputs, wrt)
        ref = jax_derivative(jax_fn, inputs, wrt, order)
        for mode in ("forward", "reverse"):
            D = tc.derivative(f, wrt, order=order, mode=mode)
            out = np.asarray(tc.compile(D)(**inputs))  # the origin's inputs fix every dimension
            np.testing.assert_allclose(out, ref, rtol=1e-9, atol=1e-10, err_msg=f"order {order} {mode} vs jax")
            np.testing.assert_allclose(out, fd, rtol=1e-5, atol=1e-6 * max(1.0, np.abs(fd).max()),
                                       err_msg=f"order {order} {mode} vs finite differences")


RNG = np.random.default_rng(11)
N, M = 4, 3


# -- the site's constructs -------------------------------------------------------------------


def test_logistic_example_with_vector_one(jnp):
    """The site's own example: sum(log(exp(-y.*(X*w)) + vector(1))), orders 1-3 in w."""
    f = tc.parse("sum(log(exp(-y.*(X*w)) + vector(1)))")
    assert {v.name: v.shape for v in tc.variables(f)} == {"X": ("n", "m"), "w": ("m",), "y": ("n",)}
    assert f is tc.parse("sum(log(exp(-y.*(X*w)) + 1))")  # vector(1) is the broadcast 1
    inputs = {"X": RNG.standard_normal((N, M)), "w": RNG.standard_normal(M), "y": np.sign(RNG.standard_normal(N))}
    check_orders(f, inputs, "w", lambda X, w, y: jnp.sum(jnp.log(jnp.exp(-y * (X @ w)) + 1.0)), orders=(1, 2, 3))


def test_matrix_one_and_constant_vectors_take_their_size_from_context(jnp):
    f = tc.parse("sum(log(exp(X) + matrix(1)))")
    assert f.shape == () and tc.variables(f)[0].shape == ("n", "m")
    X = RNG.standard_normal((N, M))
    check_orders(f, {"X": X}, "X", lambda X: jnp.sum(jnp.log(jnp.exp(X) + 1.0)))
    g = tc.parse("x'*(A + matrix(c))*x")  # an entry given by a scalar variable c
    inputs = {"x": RNG.standard_normal(N), "A": RNG.standard_normal((N, N)), "c": np.array(0.7)}
    check_orders(g, inputs, "c", lambda x, A, c: x @ (A + c) @ x)
    check_orders(g, inputs, "x", lambda x, A, c: x @ (A + c) @ x)
    h = tc.parse("sum(vector(2))")  # a size fixed by nothing: a dimension of its own
    assert tc.compile(h)(n=5) == 10.0
    with pytest.raises(tc.ShapeError, match=r"vector\(\) takes a scalar"):
        tc.parse("vector(x)")


def test_norm1(jnp):
    f = tc.parse("norm1(A*x - y)")
    assert f is tc.sum(tc.abs(tc.parse("A*x - y")))
    inputs = {"A": RNG.standard_normal((M, N)), "x": RNG.standard_normal(N), "y": RNG.standard_normal(M)}
    check_orders(f, inputs, "x", lambda A, x, y: jnp.sum(jnp.abs(A @ x - y)))
    assert tc.compile(tc.hessian(f, "x"))(**inputs).tolist() == np.zeros((N, N)).tolist()  # piecewise linear


def test_power_with_expression_exponent(jnp):
    """a^b and x.^y: both sides expressions, derivatives of exp(b*log(a)) where a > 0."""
    f = tc.parse("a^b")
    assert [v.shape for v in tc.variables(f)] == [(), ()] and tc.to_string(f) == "a^b"
    inputs = {"a": np.array(1.7), "b": np.array(-0.6)}
    for wrt in ("a", "b"):
        check_orders(f, inputs, wrt, lambda a, b: a ** b, orders=(1, 2, 3))
    g = tc.parse("sum(x.^y)")
    inputs = {"x": RNG.uniform(0.5, 2.0, N), "y": RNG.standard_normal(N)}
    for wrt in ("x", "y"):
        check_orders(g, inputs, wrt, lambda x, y: jnp.sum(x ** y))
    h = tc.parse("sum(x.^c + c.^x)")  # a scalar on either side is broadcast
    inputs = {"x": RNG.uniform(0.5, 2.0, N), "c": np.array(1.3)}
    for wrt in ("x", "c"):
        check_orders(h, inputs, wrt, lambda x, c: jnp.sum(x ** c + c ** x))
    assert tc.parse("x.^(1/2)") is tc.parse("x.^0.5")  # a constant exponent keeps its own rules
    with pytest.raises(tc.ShapeError, match="'\\^' raises to a scalar power"):
        tc.parse("a^x")


@pytest.mark.parametrize("name", ["tan", "arcsin", "arccos", "arctan"])
def test_trigonometric_functions(jnp, name):
    f = tc.parse(f"sum({name}(A*x))")
    A = RNG.standard_normal((M, N)) * 0.2
    inputs = {"A": A, "x": RNG.uniform(-1, 1, N)}
    fn = getattr(jnp, name)
    check_orders(f, inputs, "x", lambda A, x: jnp.sum(fn(A @ x)), orders=(1, 2, 3))
    assert tc.to_string(tc.parse(f"{name}(x)")) == f"{name}(x)"


def test_relu_and_its_almost_everywhere_derivative(jnp):
    import jax

    f = tc.parse("sum(relu(A*x).^2)")
    inputs = {"A": RNG.standard_normal((6, N)), "x": RNG.standard_normal(N)}
    check_orders(f, inputs, "x", lambda A, x: jnp.sum(jax.nn.relu(A @ x) ** 2))
    g = tc.gradient(tc.parse("sum(relu(x))"), "x")
    assert tc.to_string(g) == "step(x)"
    assert tc.compile(g)(x=np.array([-1.0, 0.0, 2.0])).tolist() == [0.0, 0.0, 1.0]  # 0 at 0, as torch and jax
    assert tc.parse(tc.to_string(g)) is g  # the derivative's notation parses back
    for backend in ("torch", "jax"):
        fn = tc.compile(tc.hessian(f, "x"), backend)
        arrays = inputs if backend == "jax" else {k: __import__("torch").tensor(v) for k, v in inputs.items()}
        np.testing.assert_allclose(np.asarray(fn(**arrays)), tc.compile(tc.hessian(f, "x"))(**inputs), rtol=1e-12)


def test_new_functions_in_every_backend(jnp):
    """tan, arcsin, arccos, arctan, relu, step, a.^b, norm1 and det's second derivative in numpy,
    torch and jax give the same numbers."""
    import torch

    text = "sum(tan(x).*arcsin(y) + arccos(y).*arctan(x) + relu(x).*step(y) + x.^y) + norm1(A*x) + det(A)"
    f = tc.parse(text, A=("n", "n"))
    inputs = {"x": RNG.uniform(-0.9, 0.9, 3), "y": RNG.uniform(0.1, 0.9, 3), "A": RNG.standard_normal((3, 3))}
    inputs["x"] = np.abs(inputs["x"])  # x.^y needs x > 0
    for wrt in ("x", "A"):
        H = tc.hessian(f, wrt)
        ref = tc.compile(H)(**inputs)
        got_torch = tc.compile(H, "torch")(**{k: torch.tensor(v) for k, v in inputs.items()}).numpy()
        got_jax = np.asarray(tc.compile(H, "jax")(**inputs))
        np.testing.assert_allclose(got_torch, ref, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(got_jax, ref, rtol=1e-12, atol=1e-12)


def test_default_kinds_follow_the_site():
    """a-g scalars, h-z vectors, A-Z matrices (by the first letter); declared kinds win."""
    f = tc.parse("a*x + b*sum(h) + gamma*G*z")
    shapes = {v.name: v.shape for v in tc.variables(f)}
    assert shapes["a"] == shapes["b"] == shapes["gamma"] == ()
    assert len(shapes["x"]) == len(shapes["h"]) == len(shapes["z"]) == 1 and len(shapes["G"]) == 2
    assert tc.parse("c.*x", c="vector").shape == ("n",)
    assert tc.parse("x'*y", x="scalar", y="scalar").shape == ()


def test_every_example_of_the_language_table_parses():
    """docs/tensorcalc-language.md: every supported example parses and differentiates; the
    unsupported ones are one clear error."""
    rows = [line.split("|")[1:-1] for line in (REPO / "docs" / "tensorcalc-language.md").read_text().splitlines()
            if line.startswith("| ") and line.count("|") == 6]
    checked = 0
    for construct, site, here, example, _ in rows:
        here, example = here.strip(), example.strip()
        if here in ("here", "API only") or not example.startswith("`"):
            continue
        text = example.strip("`")
        if here == "no":
            with pytest.raises(UserError):
                tc.parse(text)
            continue
        assert here in ("yes", "extension"), construct
        f = tc.parse(text)
        for v in tc.variables(f):
            assert tc.derivative(f, v).shape == f.shape + v.shape, text
        checked += 1
    assert checked >= 30
    site_functions = ["sin", "cos", "tan", "arcsin", "arccos", "arctan", "exp", "log", "tanh", "abs", "sign", "relu",
                      "sum", "norm1", "norm2", "tr", "det", "logdet", "inv", "vector", "matrix"]
    table = (REPO / "docs" / "tensorcalc-language.md").read_text()
    assert all(f"`{name}" in table for name in site_functions)


# -- det where X is singular ------------------------------------------------------------------


def _levi_civita(n: int) -> np.ndarray:
    eps = np.zeros((n,) * n)
    for perm in itertools.permutations(range(n)):
        eps[perm] = np.linalg.det(np.eye(n)[list(perm)])
    return eps


def det_closed_forms(X: np.ndarray) -> list[np.ndarray]:
    """Orders 1-3 of det for 2x2 and 3x3 X from Levi-Civita symbols (exact polynomials)."""
    n = X.shape[0]
    e = _levi_civita(n)
    if n == 2:
        d2 = np.einsum("ik,jl->ijkl", e, e)
        return [np.einsum("ijkl,kl->ij", d2, X), d2, np.zeros((2,) * 6)]
    d3 = np.einsum("ikm,jln->ijklmn", e, e)
    d2 = np.einsum("ijklmn,mn->ijkl", d3, X)
    d1 = np.einsum("ijkl,kl->ij", d2, X) / 2
    return [d1, d2, d3]


SINGULAR = {
    "2x2 rank 1": np.array([[1.0, 2.0], [2.0, 4.0]]),
    "2x2 near singular": np.array([[1.0, 2.0], [2.0, 4.0 + 1e-9]]),
    "3x3 rank 2": np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]),
    "3x3 rank 1": np.outer([1.0, 2.0, 3.0], [1.0, -1.0, 2.0]),
    "3x3 near singular": np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0 + 1e-9]]),
    "3x3 zero": np.zeros((3, 3)),
}


@pytest.fixture(scope="module")
def jax_det_derivatives(jnp):
    """jax's orders 1-3 of det, jitted once for the module."""
    import jax

    d1 = jax.jacfwd(jnp.linalg.det)
    return [jax.jit(d1), jax.jit(jax.hessian(jnp.linalg.det)), jax.jit(jax.jacfwd(jax.hessian(jnp.linalg.det)))]


@pytest.mark.parametrize("name", list(SINGULAR))
def test_det_derivatives_at_singular_matrices(jnp, jax_det_derivatives, name):
    X = SINGULAR[name]
    f = tc.parse("det(X)")
    closed = det_closed_forms(X)
    refs = jax_det_derivatives
    for order in (1, 2, 3):
        for mode in ("forward", "reverse"):
            out = tc.compile(tc.derivative(f, "X", order=order, mode=mode))(X=X)
            np.testing.assert_allclose(out, closed[order - 1], rtol=1e-12, atol=1e-12, err_msg=f"order {order}")
        if name != "3x3 zero":  # jax's LU-based rule is not defined at rank n - 2
            np.testing.assert_allclose(out, np.asarray(refs[order - 1](jnp.asarray(X))), rtol=1e-9, atol=1e-12)
    assert tc.to_string(tc.gradient(f, "X")) == "adj(X)'"


def test_det_in_compositions_at_singular_points(jnp):
    X = SINGULAR["3x3 rank 2"]
    A = RNG.standard_normal((3, 3))
    cases = [("det(A*X)", lambda A, X: jnp.linalg.det(A @ X)), ("det(X')^2", lambda A, X: jnp.linalg.det(X.T) ** 2),
             ("det(2*X)", lambda A, X: jnp.linalg.det(2 * X))]
    for text, fn in cases:
        check_orders(tc.parse(text, X=(3, 3), A=(3, 3)), {"A": A, "X": X}, "X", fn)
    adj = tc.compile(tc.parse("adj(X)"))(X=X)  # adj(X) = D_1(X)': adj(X) X = det(X) I = 0 here
    np.testing.assert_allclose(adj, det_closed_forms(X)[0].T, atol=1e-12)
    np.testing.assert_allclose(adj @ X, np.zeros((3, 3)), atol=1e-12)


def test_log_det_keeps_its_inverse_form():
    """det(X)^p * adj(X)' with p < 0 is det(X)^(p+1) * inv(X)': log(det(X)) differentiates like logdet."""
    f = tc.parse("log(det(X))")
    assert tc.to_string(tc.gradient(f, "X")) == "inv(X)'"
    assert tc.hessian(f, "X") is tc.hessian(tc.parse("logdet(X)"), "X")
    X = RNG.standard_normal((3, 3)) + 3 * np.eye(3)
    g = tc.parse("det(X)^-2")
    np.testing.assert_allclose(tc.compile(tc.gradient(g, "X"))(X=X), -2 * np.linalg.det(X) ** -2 * np.linalg.inv(X).T,
                               rtol=1e-12)


def test_det_kernel_inverse_and_svd_forms_agree():
    """A well-conditioned X takes Jacobi's det(X) inv(X) form, a singular one the SVD form;
    where both apply they agree (orders 1-3, against the Levi-Civita closed forms too)."""
    from mlmyths.tensorcalc import kernels

    X = RNG.standard_normal((3, 3)) + 2 * np.eye(3)
    for order in (1, 2, 3):
        fast = kernels._from_inverse(np.linalg.det(X), np.linalg.inv(X), order, np)
        robust = kernels._from_svd(X, order, np)
        np.testing.assert_allclose(fast, robust, rtol=1e-11, atol=1e-12)
        np.testing.assert_allclose(kernels.det_derivative(X, order, np), det_closed_forms(X)[order - 1], atol=1e-12)
    Y = RNG.standard_normal((5, 5))
    np.testing.assert_allclose(kernels._from_inverse(np.linalg.det(Y), np.linalg.inv(Y), 2, np),
                               kernels._from_svd(Y, 2, np), rtol=1e-10, atol=1e-12)


def test_det_derivative_in_torch_and_jax_backends(jnp):
    import torch

    H = tc.hessian(tc.parse("det(X)"), "X")
    assert "from mlmyths.tensorcalc.kernels import det_derivative" in tc.source(H)
    for X in (SINGULAR["3x3 rank 2"], SINGULAR["2x2 rank 1"], RNG.standard_normal((3, 3)) + 2 * np.eye(3)):
        ref = det_closed_forms(X)[1]
        np.testing.assert_allclose(tc.compile(H, "torch")(X=torch.tensor(X)).numpy(), ref, atol=1e-12)
        np.testing.assert_allclose(np.asarray(tc.compile(H, "jax")(X=X)), ref, atol=1e-12)  # both lax.cond branches
        G = tc.gradient(tc.parse("det(X)"), "X")
        np.testing.assert_allclose(np.asarray(tc.compile(G, "jax")(X=X)), det_closed_forms(X)[0], atol=1e-12)


# -- dimensions from the inputs of the expression a derivative came from ------------------------


def test_factorization_hessian_takes_the_inputs_of_its_function():
    f = tc.parse("sum((T - U*V').^2)")
    H = tc.hessian(f, "U")
    assert [v.name for v in tc.variables(H)] == ["V"]  # n, the rows of U, is not in H
    T, U, V = RNG.standard_normal((5, 4)), RNG.standard_normal((5, 2)), RNG.standard_normal((4, 2))
    expected = 2 * np.einsum("ik,jl->ijkl", np.eye(5), V.T @ V)
    fn = tc.compile(H)
    np.testing.assert_allclose(fn(T=T, U=U, V=V), expected, rtol=1e-12)
    np.testing.assert_allclose(fn(V=V, T=T), expected, rtol=1e-12)  # n from T
    np.testing.assert_allclose(fn(V=V, n=5), expected, rtol=1e-12)  # or given
    np.testing.assert_allclose(fn(*[{"T": T, "U": U, "V": V}[p] for p in fn.param_names]), expected, rtol=1e-12)
    with pytest.raises(UserError, match=r"missing input\(s\) U or T \(for dimension n\) or n=<size>"):
        fn(V=V)
    with pytest.raises(tc.ShapeError, match="'T' has size 6 along dimension n, but 'U' has 5"):
        fn(T=RNG.standard_normal((6, 4)), U=U, V=V)
    with pytest.raises(tc.ShapeError, match="'U' has size 3 along dimension"):
        fn(U=RNG.standard_normal((5, 3)), V=V)
    with pytest.raises(tc.ShapeError, match="dimension n was given as 4"):
        fn(U=U, V=V, n=4)
    import torch

    arrays = {k: torch.tensor(v) for k, v in {"T": T, "U": U, "V": V}.items()}
    np.testing.assert_allclose(tc.compile(H, "torch")(**arrays).numpy(), expected, rtol=1e-12)


def test_dimension_arguments_in_the_jax_backend(jnp):
    f = tc.parse("sum((T - U*V').^2)")
    H = tc.hessian(f, "U")
    T, U, V = RNG.standard_normal((5, 4)), RNG.standard_normal((5, 2)), RNG.standard_normal((4, 2))
    expected = 2 * np.einsum("ik,jl->ijkl", np.eye(5), V.T @ V)
    np.testing.assert_allclose(np.asarray(tc.compile(H, "jax")(T=T, U=U, V=V)), expected, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(tc.compile(H, "jax")(V=V, n=5)), expected, rtol=1e-12)  # static size


def test_derivative_without_inputs_takes_the_original_inputs():
    f = tc.parse("sum(x.^2) + a")
    H = tc.hessian(f, "x")  # 2*eye(n): no input of its own
    assert tc.compile(H)(x=np.ones(3), a=1.0).tolist() == (2 * np.eye(3)).tolist()
    assert tc.compile(H)(n=2).tolist() == (2 * np.eye(2)).tolist()
    assert tc.compile(tc.hessian(tc.parse("sum(x)"), "x"))(x=np.ones(4)).shape == (4, 4)  # zeros, shape from x


# -- hostile input ------------------------------------------------------------------------------


def test_deep_nesting_is_one_clear_error():
    for text in ["(" * (MAX_NESTING + 1) + "x" + ")" * (MAX_NESTING + 1),
                 "exp(" * 170 + "x" + ")" * 170,
                 "x" + "^x" * 200]:
        with pytest.raises(tc.ParseError, match=f"nested deeper than {MAX_NESTING} levels") as info:
            tc.parse(text)
        assert "\n" not in str(info.value) and len(str(info.value)) < 400
    f = tc.parse("sin(" * MAX_NESTING + "x" + ")" * MAX_NESTING)  # at the limit: works, all passes
    x = np.array([0.4, -1.1])
    ref, v = np.ones(2), x
    for _ in range(MAX_NESTING):
        ref, v = ref * np.cos(v), np.sin(v)
    D = tc.derivative(f, "x")
    assert tc.to_string(D).startswith("diag(")
    np.testing.assert_allclose(tc.compile(D)(x=x), np.diag(ref), rtol=1e-10)
    H = tc.hessian(tc.parse("sum(" + "sin(" * 20 + "x" + ")" * 21), "x")
    np.testing.assert_allclose(tc.compile(H)(x=x), finite_difference(tc.compile(tc.gradient(
        tc.parse("sum(" + "sin(" * 20 + "x" + ")" * 21), "x")), {"x": x}, "x"), rtol=1e-6, atol=1e-8)
    assert tc.parse("-" * 5001 + "x") is tc.parse("-x") and tc.parse("x" + "'" * 5000) is tc.parse("x")


def test_long_flat_sums_and_products():
    text = " + ".join(f"sin(x{i})'*A*x{i}" for i in range(1000))
    f = tc.parse(text)
    assert len(text) > 10_000
    g = tc.derivative(f, "x7")
    rng = np.random.default_rng(0)
    inputs = {v.name: rng.standard_normal(v.rank * (3,)) for v in tc.variables(f)}
    x, A = inputs["x7"], inputs["A"]
    np.testing.assert_allclose(tc.compile(g)(**inputs), np.cos(x) * (A @ x) + A.T @ np.sin(x), rtol=1e-12)
    many = tc.parse(" + ".join(f"x{i}" for i in range(3000)))  # a 3000-term generated statement is split
    vals = {f"x{i}": np.full(2, float(i)) for i in range(3000)}
    np.testing.assert_allclose(tc.compile(many)(**vals), np.full(2, sum(range(3000))))
    chain = tc.parse("*".join(["A"] * 400) + "*x")
    A = np.eye(3) + 0.001 * rng.standard_normal((3, 3))
    np.testing.assert_allclose(tc.compile(tc.derivative(chain, "x"))(A=A, x=np.ones(3)),
                               np.linalg.matrix_power(A, 400), rtol=1e-10)


def test_deep_expressions_from_the_operator_api():
    """No pass recurses per level: with 250 frames to spare, a 5000-deep chain of functions
    prints and compiles, and a 300-deep one differentiates."""
    import inspect
    import sys

    x = tc.vector("x", 2)
    point = np.array([0.3, -0.2])
    chains = {}
    for depth in (300, 5000):
        e = x
        for _ in range(depth):
            e = tc.sin(e)
        chains[depth] = tc.sum(e)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack()) + 250)
    try:
        text = tc.to_string(chains[5000])
        value = tc.compile(chains[5000])(x=point)
        g = tc.gradient(chains[300], "x")
        grad = tc.compile(g)(x=point)
    finally:
        sys.setrecursionlimit(limit)
    assert text.count("sin(") == 5000
    v, ref = point, np.ones(2)
    for depth in range(5000):
        if depth == 300:
            np.testing.assert_allclose(grad, ref, rtol=1e-10)
        ref, v = ref * np.cos(v), np.sin(v)
    np.testing.assert_allclose(value, v.sum(), rtol=1e-12)


def test_numbers_must_be_finite():
    for text, column in [("1e999999*x", 1), ("x + 1e309", 5), ("x.^" + "9" * 400, 4)]:
        with pytest.raises(tc.ParseError, match="a finite number") as info:
            tc.parse(text)
        assert info.value.column == column
    with pytest.raises(UserError, match="overflow to a non-finite number"):
        tc.parse("1e300*1e300*x")
    with pytest.raises(UserError, match="finite"):
        tc.power(tc.vector("x"), float("inf"))


def test_kinds_from_text():
    assert kind_from_text("matrix") == "matrix" and kind_from_text(" n, m ") == ("n", "m")
    assert kind_from_text("3") == (3,) and kind_from_text("rows") == ("rows",)
    for text, match in [("matirx", "did you mean 'matrix'"), ("Vector", "did you mean 'vector'"),
                        ("scaler", "did you mean 'scalar'"), ("n,,m", "expected scalar, vector, matrix"),
                        ("", "expected"), ("1.5", "is not a dimension name"), ("0", "positive integer"),
                        ("n m", "is not a dimension name")]:
        with pytest.raises(UserError, match=match):
            kind_from_text(text, "--var A=" + text)


def test_too_long_expression_is_one_clear_error():
    with pytest.raises(tc.ParseError, match="more than the 100000 accepted"):
        tc.parse("x+" * 60_000 + "x")


def _one_line_exit_2(r, *needles: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stderr[-500:])
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("mlmyths: error: "), r.stderr[-500:]
    assert "Traceback" not in r.stderr and len(r.stderr) < 600
    for needle in needles:
        assert needle in r.stderr, r.stderr


def test_cli_hostile_inputs_are_one_line_and_exit_2():
    deep = "(" * 170 + "x" + ")" * 170
    _one_line_exit_2(run_cli("derive", deep, "--wrt", "x"), "nested deeper than 100 levels")
    deep_10k = "(" * 5000 + "x" + ")" * 5000  # 10,001 characters, nested
    _one_line_exit_2(run_cli("derive", deep_10k, "--wrt", "x"), "nested deeper than 100 levels", "10001 characters")
    _one_line_exit_2(run_cli("derive", "1e999999*x", "--wrt", "x"), "a finite number", "1e999999")
    _one_line_exit_2(run_cli("derive", "x'*A*x", "--wrt", "x", "--var", "A=matirx"), "did you mean 'matrix'")
    _one_line_exit_2(run_cli("derive", "x'*A*x", "--wrt", "x", "--var", "x=n,,m"), "expected scalar, vector, matrix")
    _one_line_exit_2(run_cli("derive", "x+" * 60_000 + "x", "--wrt", "x"), "more than the 100000 accepted")
    _one_line_exit_2(run_cli("derive", "x'*A*x", "--wrt", "x", "--order", "100000"), "--order must be between 1 and 20")


def test_cli_long_inputs_work():
    r = run_cli("derive", "+".join(["x"] * 1000), "--wrt", "x")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "1000*eye(n)"
    text = "+".join(f"sin(x{i})" for i in range(1000))  # 9,889 characters, 1,000 variables
    assert len(text) > 9000
    r = run_cli("derive", text, "--wrt", "x7", "--order", "2", "--code", "numpy")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "-(δ[i,j] * δ[i,k] * sin(x7)[i])[i,j,k]"
    assert "def evaluate(x7):" in r.stdout and "as_strided" in r.stdout
