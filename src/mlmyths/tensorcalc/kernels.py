"""Numeric kernels that generated code calls: the derivative tensors of the determinant.

``det_derivative(X, k, xp)`` is ``D_k(X)[i1, j1, ..., ik, jk] = ∂^k det(X) / ∂X[i1, j1] ... ∂X[ik, jk]``
(``D_1(X) = adj(X)'``, the cofactor matrix). Every entry is a signed minor of ``X``, defined
where ``X`` is singular, unlike Jacobi's ``det(X) inv(X)'``. Laue, Mitterreiter & Giesen's
matrixcalculus.org writes the first derivative with the adjugate for the same reason.

It is computed from the singular value decomposition ``X = U diag(s) V'``: since
``det(U Y V') = det(U) det(V) det(Y)``, the derivatives transform as
``D_k(X) = det(U) det(V) (U ⊗ V)^k D_k(diag(s))``, and the derivatives of the determinant
of a diagonal matrix are products of singular values with the differentiated ones left
out::

    D_k(X)[i, j] = det(U) det(V) Σ_{a distinct} Σ_{σ ∈ S_k} sgn(σ) Π_{m ∉ a} s_m Π_p U[i_p, a_p] V[j_p, a_σ(p)]

No division by a singular value occurs, so the result is as accurate at a singular ``X``
as the SVD itself (cost O(n^3) for k = 1, O(k! n^(2k+1)) above). A well-conditioned
``X`` takes Jacobi's formula with the inverse instead, ``D_k(X) = det(X) Σ_σ sgn(σ)
Π_p inv(X)[j_p, i_σ(p)]`` (cost O(n^3) and O(k! n^(2k))), which is as accurate there.

>>> import numpy as np
>>> det_derivative(np.array([[1.0, 2.0], [2.0, 4.0]]), 1, np).round(12).tolist()  # singular: adj(X)'
[[4.0, -2.0], [-2.0, 1.0]]
"""
from __future__ import annotations

import itertools
import string
from typing import Any


def _permutation_sign(perm: tuple[int, ...]) -> int:
    sign = 1
    seen = [False] * len(perm)
    for start in range(len(perm)):
        if seen[start]:
            continue
        length = 0
        p = start
        while not seen[p]:
            seen[p] = True
            p = perm[p]
            length += 1
        if length % 2 == 0:
            sign = -sign
    return sign


#: Largest Frobenius condition number ||X|| ||inv(X)|| at which Jacobi's formula
#: ``det(X) * inv(X)`` is used (relative error about cond * 1e-16); above it, or where
#: ``X`` is singular, the SVD formula.
CONDITION_LIMIT = 1e6


def _is_torch(xp: Any) -> bool:
    return getattr(xp, "__name__", "") == "torch"


def _alternating(factor: Any, order: int, xp: Any, weights: Any = None, rows: Any = None, cols: Any = None) -> Any:
    """``Σ_σ sgn(σ) ...`` over the permutations σ of ``order`` slots, as einsums.

    With ``factor`` (n x n): ``out[i1, j1, ...] = Σ_σ sgn(σ) Π_p factor[j_p, i_σ(p)]`` (the
    complementary-minor form). With ``weights`` (n,)*k, ``rows`` U and ``cols`` V:
    ``Σ_a W[a] Σ_σ sgn(σ) Π_p U[i_p, a_p] V[j_p, a_σ(p)]`` (the SVD form).
    """
    letters = string.ascii_letters
    k = order
    sums, ii, jj = letters[:k], letters[k:2 * k], letters[2 * k:3 * k]
    out = "".join(ii[p] + jj[p] for p in range(k))
    total = None
    for perm in itertools.permutations(range(k)):
        if weights is None:
            spec = ",".join(jj[p] + ii[perm[p]] for p in range(k))
            operands = [factor] * k
        else:
            spec = ",".join([sums] + [ii[p] + sums[p] for p in range(k)] + [jj[p] + sums[perm[p]] for p in range(k)])
            operands = [weights] + [rows] * k + [cols] * k
        if _is_torch(xp):
            term = xp.einsum(f"{spec}->{out}", *operands)
        else:
            term = xp.einsum(f"{spec}->{out}", *operands, optimize=True)
        term = term if _permutation_sign(perm) > 0 else -term
        total = term if total is None else total + term
    return total


def _from_inverse(det: Any, inv: Any, order: int, xp: Any) -> Any:
    """Jacobi: ``D_k(X) = det(X) Σ_σ sgn(σ) Π_p inv(X)[j_p, i_σ(p)]``, O(k! n^(2k))."""
    if order == 1:
        return det * inv.T
    return det * _alternating(inv, order, xp)


def _from_svd(X: Any, order: int, xp: Any) -> Any:
    """The SVD form: no division by a singular value, right where ``X`` is singular."""
    opts = {"dtype": X.dtype, "device": X.device} if _is_torch(xp) else {"dtype": X.dtype}
    n = X.shape[0]
    U, s, Vt = xp.linalg.svd(X)  # X = U diag(s) Vt
    sign = xp.linalg.det(U) * xp.linalg.det(Vt)  # ±1
    one, zero = xp.ones((), **opts), xp.zeros((), **opts)
    if order == 1:
        eye = xp.eye(n, **opts) > 0.5
        w = xp.prod(xp.where(eye, one, s[None, :]), -1)  # (n,): Π_{m≠a} s_m
        return sign * ((U * w[None, :]) @ Vt)
    ar = xp.arange(n, device=X.device) if _is_torch(xp) else xp.arange(n)
    k = order
    member = None  # (n,)*k + (n,): whether m is one of a_1..a_k
    distinct = None  # (n,)*k: whether a_1..a_k are distinct
    for p in range(k):
        shape = [1] * (k + 1)
        shape[p] = n
        hit = ar.reshape(shape) == ar.reshape([1] * k + [n])
        member = hit if member is None else member | hit
        for q in range(p):
            sp, sq = [1] * k, [1] * k
            sp[p], sq[q] = n, n
            differ = ar.reshape(sp) != ar.reshape(sq)
            distinct = differ if distinct is None else distinct & differ
    W = xp.where(distinct, xp.prod(xp.where(member, one, s), -1), zero)  # (n,)*k: Π_{m ∉ a} s_m
    return sign * _alternating(None, order, xp, weights=W, rows=U, cols=Vt.T)


def det_derivative(X: Any, order: int, xp: Any) -> Any:
    """The ``order``-th derivative tensor of ``det`` at the square matrix ``X``.

    Well-conditioned ``X`` (Frobenius condition number below :data:`CONDITION_LIMIT`)
    takes Jacobi's formula with the inverse (as fast as ``inv``); singular and
    ill-conditioned ``X`` the SVD formula, which is exact there.

    Parameters
    ----------
    X : array (n, n)
        A numpy, torch or jax array (``xp`` is its namespace: numpy, torch or jax.numpy).
    order : int
        k >= 1; the result has shape ``(n, n) * k``.
    xp : module
        The array library, as passed by the generated code.
    """
    n = X.shape[0]
    if order > n:  # det is a polynomial of degree n
        opts = {"dtype": X.dtype, "device": X.device} if _is_torch(xp) else {"dtype": X.dtype}
        return xp.zeros((n, n) * order, **opts)
    if getattr(xp, "__name__", "").startswith("jax"):  # traced: both branches, chosen on the device
        import jax

        inv = xp.linalg.inv(X)
        cond = xp.linalg.norm(X) * xp.linalg.norm(inv)
        well = xp.isfinite(cond) & (cond < CONDITION_LIMIT)
        return jax.lax.cond(well, lambda X, inv: _from_inverse(xp.linalg.det(X), inv, order, xp),
                            lambda X, inv: _from_svd(X, order, xp), X, inv)
    try:
        inv = xp.linalg.inv(X)
    except (ValueError, RuntimeError):  # exactly singular (numpy's LinAlgError, torch's)
        return _from_svd(X, order, xp)
    cond = float(xp.linalg.norm(X) * xp.linalg.norm(inv))
    if cond < CONDITION_LIMIT:  # False for nan and inf too
        return _from_inverse(xp.linalg.det(X), inv, order, xp)
    return _from_svd(X, order, xp)
