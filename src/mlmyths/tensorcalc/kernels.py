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
as the SVD itself. The cost is O(n^3) for k = 1 and one einsum per permutation of k
(output n^(2k)) above.

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


def det_derivative(X: Any, order: int, xp: Any) -> Any:
    """The ``order``-th derivative tensor of ``det`` at the square matrix ``X``.

    Parameters
    ----------
    X : array (n, n)
        A numpy, torch or jax array (``xp`` is its namespace: numpy, torch or jax.numpy).
    order : int
        k >= 1; the result has shape ``(n, n) * k``.
    xp : module
        The array library, as passed by the generated code.
    """
    torch_like = getattr(xp, "__name__", "") == "torch"
    opts = {"dtype": X.dtype, "device": X.device} if torch_like else {"dtype": X.dtype}
    n = X.shape[0]
    if order > n:  # det is a polynomial of degree n
        return xp.zeros((n, n) * order, **opts)
    U, s, Vt = xp.linalg.svd(X)  # X = U diag(s) Vt
    sign = xp.linalg.det(U) * xp.linalg.det(Vt)  # ±1
    V = Vt.T
    if order == 1:
        eye = xp.eye(n, **opts) > 0.5
        w = xp.prod(xp.where(eye, xp.ones((), **opts), s[None, :]), -1)  # (n,): Π_{m≠a} s_m
        return sign * ((U * w[None, :]) @ Vt)
    ar = xp.arange(n, device=X.device) if torch_like else xp.arange(n)
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
    W = xp.prod(xp.where(member, xp.ones((), **opts), s), -1)  # (n,)*k: Π_{m ∉ a} s_m
    W = xp.where(distinct, W, xp.zeros((), **opts))
    letters = string.ascii_letters
    sums = letters[:k]  # a_1..a_k
    rows, cols = letters[k:2 * k], letters[2 * k:3 * k]  # i_p, j_p
    out = "".join(rows[p] + cols[p] for p in range(k))
    total = None
    for perm in itertools.permutations(range(k)):
        spec = ",".join([sums] + [rows[p] + sums[p] for p in range(k)] + [cols[p] + sums[perm[p]] for p in range(k)])
        operands = [W] + [U] * k + [V] * k
        term = xp.einsum(f"{spec}->{out}", *operands) if torch_like else \
            xp.einsum(f"{spec}->{out}", *operands, optimize=True)
        term = term if _permutation_sign(perm) > 0 else -term
        total = term if total is None else total + term
    return sign * total
