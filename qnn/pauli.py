"""Pauli strings: tables, Pauli sums without a (4^n, 2^n, 2^n) stack, Pauli-generated gates.

Shared by the engines (the ``PauliExp`` gate, Hermitian observables) and the layers (the
"Quantum Creep" layers), so it sits below both.

The 4^n Pauli strings on n qubits are indexed in ``itertools.product('IXYZ', repeat=n)``
order (index 0 is the identity; the first letter is the most significant Kronecker factor,
i.e. it acts on the most significant bit of the basis index).  Each string is stored as two
bitmasks ``x`` and ``z`` (bit ``n-1-j`` describes letter ``j``: I=(0,0), X=(1,0), Y=(1,1),
Z=(0,1)).  A string has exactly one nonzero per row: in row ``r`` it sits in column
``c = r ^ x`` and equals

    P[r, r ^ x] = (-i)^{#Y} (-1)^{popcount(r & z)} = i^{#Y} (-1)^{popcount(c & z)},

where ``#Y = popcount(x & z)`` (derived from Y = -i Z X per qubit; checked against explicit
Kronecker products in ``tests/layers/test_pauli.py``).  Note the phase is i^{#Y} only with the
*column* index; with the row index it is (-i)^{#Y}.

:func:`pauli_sum` uses that structure: for a fixed x-mask the values along the "diagonal"
``(r, r ^ x)`` are a Walsh-Hadamard transform over z of ``theta[x, z] * (-i)^{|x & z|}``, so
``sum_k theta_k P_k`` is one (2^n x 2^n) matmul with the +-1 Hadamard matrix followed by a
gather -- O(8^n) flops, O(4^n) integers of tables, never 4^n matrices.
"""

from __future__ import annotations

import functools
import itertools
import threading
from concurrent.futures import ThreadPoolExecutor

import torch

__all__ = ["pauli_labels", "pauli_masks", "pauli_sum", "pauli_matrices", "n_paulis", "expi_hermitian",
           "su_gates", "divided_difference_expi", "batched_eigh", "parallel_map", "pauli_index",
           "pauli_decompose", "pauli_exp_matrix", "pauli_exp_shift_coefficients"]

_MAX_QUBITS = 10  # tables are O(4^n); pauli_sum output alone is 16^n bytes-ish beyond that


def n_paulis(n_qubits: int) -> int:
    """Number of non-identity Pauli strings, ``4**n - 1``.

    >>> n_paulis(2)
    15
    """
    return 4**n_qubits - 1


def _check_n(n_qubits: int) -> int:
    if not isinstance(n_qubits, int) or isinstance(n_qubits, bool) or not 1 <= n_qubits <= _MAX_QUBITS:
        raise ValueError(f"pauli tables: n_qubits must be an int in [1, {_MAX_QUBITS}]; got {n_qubits!r}")
    return n_qubits


def pauli_labels(n_qubits: int) -> list[str]:
    """The 4^n - 1 non-identity labels in ``itertools.product('IXYZ', repeat=n)`` order.

    >>> pauli_labels(1)
    ['X', 'Y', 'Z']
    """
    _check_n(n_qubits)
    return ["".join(p) for p in itertools.product("IXYZ", repeat=n_qubits)][1:]


@functools.lru_cache(maxsize=None)
def _tables(n_qubits: int):
    """(x, z) masks of all 4^n strings (identity first), the inverse index kidx[x, z] -> k,
    and the phase (-i)^{|x & z|} as an exponent table (mod 4)."""
    n = _check_n(n_qubits)
    d = 2**n
    k = torch.arange(4**n, dtype=torch.int64)
    x = torch.zeros_like(k)
    z = torch.zeros_like(k)
    for j in range(n):  # letter j (0 = most significant) is base-4 digit n-1-j of k
        digit = (k >> (2 * (n - 1 - j))) & 3  # I=0, X=1, Y=2, Z=3
        bit = 1 << (n - 1 - j)
        x |= torch.where((digit == 1) | (digit == 2), bit, 0)
        z |= torch.where((digit == 2) | (digit == 3), bit, 0)
    kidx = torch.empty(d, d, dtype=torch.int64)
    kidx[x, z] = k
    xs = torch.arange(d).unsqueeze(1)
    zs = torch.arange(d).unsqueeze(0)
    ny = _popcount(xs & zs)  # (d, d): number of Y letters of the string (x, z)
    rows = torch.arange(d)
    hadamard = (1 - 2 * (_popcount(rows.unsqueeze(1) & rows.unsqueeze(0)) & 1))  # (z, r) -> (-1)^{r.z}
    # gather index for A[r, c] = D[x = r ^ c, r] with D flattened as (x * d + r)
    gidx = ((rows.unsqueeze(1) ^ rows.unsqueeze(0)) * d + rows.unsqueeze(1)).reshape(-1)
    return x, z, kidx, ny % 4, hadamard, gidx


def _popcount(t: torch.Tensor) -> torch.Tensor:
    c = torch.zeros_like(t)
    v = t.clone()
    while bool((v != 0).any()):
        c += v & 1
        v = v >> 1
    return c


def pauli_masks(n_qubits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x and z bitmasks (int64, length 4^n - 1) of the non-identity strings, IXYZ order.

    >>> x, z = pauli_masks(1)   # X, Y, Z
    >>> x.tolist(), z.tolist()
    ([1, 1, 0], [0, 1, 1])
    """
    x, z, *_ = _tables(n_qubits)
    return x[1:].clone(), z[1:].clone()


def _phase(ny: torch.Tensor, dtype: torch.dtype, device) -> torch.Tensor:
    ph = torch.tensor([1, -1j, -1, 1j], dtype=dtype, device=device)  # (-i)^m, m = 0..3
    return ph[ny.to(device)]


def pauli_sum(theta: torch.Tensor, n_qubits: int | None = None) -> torch.Tensor:
    """``sum_k theta[..., k] P_k`` over the 4^n - 1 non-identity strings, as (..., 2^n, 2^n).

    Built from the x/z tables (one Walsh-Hadamard matmul and one gather per call); no stack of
    Pauli matrices is formed.  Differentiable in ``theta`` (real or complex).  The result is
    complex64 for float32/complex64 ``theta`` and complex128 for float64/complex128.

    >>> import torch
    >>> pauli_sum(torch.tensor([0.0, 0.0, 1.0]))   # Z
    tensor([[ 1.+0.j,  0.+0.j],
            [ 0.+0.j, -1.+0.j]])
    """
    m = theta.shape[-1]
    if n_qubits is None:
        n_qubits = (m + 1).bit_length() // 2
    if 4**n_qubits - 1 != m:
        raise ValueError(f"pauli_sum: last dimension must be 4**n - 1; got {m}")
    _, _, kidx, ny, hadamard, gidx = _tables(n_qubits)
    d = 2**n_qubits
    cdtype = theta.dtype if theta.is_complex() else (
        torch.complex128 if theta.dtype == torch.float64 else torch.complex64)
    rdtype = torch.float64 if cdtype == torch.complex128 else torch.float32
    dev = theta.device
    lead = theta.shape[:-1]
    full = torch.cat([theta.new_zeros((*lead, 1)), theta], dim=-1)  # identity coefficient 0
    c = full[..., kidx.to(dev)].to(cdtype) * _phase(ny, cdtype, dev)  # (..., x, z)
    hd = hadamard.to(device=dev, dtype=rdtype)
    dmat = _cmatmul_real(c, hd)  # (..., x, r) = sum_z c[x, z] (-1)^{r.z}
    flat = dmat.reshape(*lead, d * d)
    return flat[..., gidx.to(dev)].reshape(*lead, d, d)


def _cmatmul_real(a: torch.Tensor, b_real: torch.Tensor) -> torch.Tensor:
    """complex (..., m, k) @ real (k, n) as two real matmuls."""
    ar = torch.view_as_real(a.contiguous())  # (..., m, k, 2)
    out = torch.einsum("...mkt,kn->...mnt", ar, b_real)
    return torch.view_as_complex(out.contiguous())


def pauli_matrices(n_qubits: int, dtype: torch.dtype = torch.complex128) -> torch.Tensor:
    """Explicit (4^n - 1, 2^n, 2^n) stack by Kronecker products -- a slow reference for tests
    and benchmarks (n = 7 is 2.1 GB in complex64).

    >>> pauli_matrices(1)[1]   # Y
    tensor([[0.+0.j, -0.-1.j],
            [0.+1.j, 0.+0.j]], dtype=torch.complex128)
    """
    _check_n(n_qubits)
    single = {
        "I": torch.eye(2, dtype=dtype),
        "X": torch.tensor([[0, 1], [1, 0]], dtype=dtype),
        "Y": torch.tensor([[0, -1j], [1j, 0]], dtype=dtype),
        "Z": torch.tensor([[1, 0], [0, -1]], dtype=dtype),
    }
    mats = []
    for label in pauli_labels(n_qubits):
        m = single[label[0]]
        for ch in label[1:]:
            m = torch.kron(m, single[ch])
        mats.append(m)
    return torch.stack(mats)


# --------------------------------------------------------------------------------------------
# batched eigh: one LAPACK call per matrix is far too small to split over threads (on a busy
# 2-core machine MKL's threaded syevd on 128x128 matrices was 10-50x *slower* than one thread),
# so split the batch over a thread pool instead and run each chunk single-threaded.
# --------------------------------------------------------------------------------------------

_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool(n: int) -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL._max_workers != n:
            _POOL = ThreadPoolExecutor(n, thread_name_prefix="qnn-eigh")
        return _POOL


def parallel_map(fn, items: list) -> list:
    """``[fn(item) for item in items]``, spread over ``torch.get_num_threads()`` Python threads
    with torch/MKL single-threaded inside (on CPU, many small LAPACK/BLAS calls scale far better
    this way than with threaded BLAS on each one).  Sequential when one thread is allowed."""
    threads = torch.get_num_threads()
    if threads < 2 or len(items) < 2:
        return [fn(it) for it in items]

    def run(it):
        torch.set_num_threads(1)
        return fn(it)

    torch.set_num_threads(1)
    try:
        return list(_pool(threads).map(run, items))
    finally:
        torch.set_num_threads(threads)


def batched_eigh(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.linalg.eigh`` over a batch (..., d, d), parallel over the batch on CPU.

    >>> import torch
    >>> lam, v = batched_eigh(torch.eye(3).expand(4, 3, 3))
    >>> lam.shape, v.shape
    (torch.Size([4, 3]), torch.Size([4, 3, 3]))
    """
    threads = torch.get_num_threads()
    lead = a.shape[:-2]
    batch = 1
    for s_ in lead:
        batch *= s_
    if a.device.type != "cpu" or threads < 2 or batch < 2 * threads or (a.requires_grad and torch.is_grad_enabled()):
        return torch.linalg.eigh(a)
    flat = a.reshape(batch, *a.shape[-2:])
    res = parallel_map(torch.linalg.eigh, list(flat.chunk(threads)))
    lam = torch.cat([r[0] for r in res]).reshape(*lead, a.shape[-1])
    vec = torch.cat([r[1] for r in res]).reshape(a.shape)
    return lam, vec


# --------------------------------------------------------------------------------------------
# exp(iG) for Hermitian G with a degeneracy-safe gradient
# --------------------------------------------------------------------------------------------

def divided_difference_expi(lam: torch.Tensor, t: float = 1.0) -> torch.Tensor:
    """Gamma[..., p, q] = (e^{i t lam_p} - e^{i t lam_q}) / (lam_p - lam_q), with the limit
    i t e^{i t lam_p} on (near-)equal eigenvalues.

    Written as i t e^{i t (lam_p + lam_q)/2} sinc(t (lam_p - lam_q) / 2), which has no 0/0 and
    no cancellation, so repeated eigenvalues need no threshold.

    >>> import torch
    >>> g = divided_difference_expi(torch.tensor([0.0, 0.0], dtype=torch.float64), t=0.5)
    >>> torch.allclose(g, torch.full((2, 2), 0.5j, dtype=torch.complex128))
    True
    """
    lp = lam.unsqueeze(-1)
    lq = lam.unsqueeze(-2)
    cdtype = torch.complex128 if lam.dtype == torch.float64 else torch.complex64
    mid = torch.polar(torch.ones_like(lp + lq), t * (lp + lq) / 2)
    return (1j * t) * mid.to(cdtype) * torch.sinc(t * (lp - lq) / (2 * torch.pi)).to(cdtype)


class _ExpiHermitian(torch.autograd.Function):
    """exp(iG) for Hermitian G via eigh; backward by the Daleckii-Krein formula."""

    @staticmethod
    def forward(ctx, g):
        lam, v = batched_eigh(g)
        ph = torch.polar(torch.ones_like(lam), lam).to(g.dtype)
        out = (v * ph.unsqueeze(-2)) @ v.mH
        ctx.save_for_backward(lam, v)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        lam, v = ctx.saved_tensors
        gamma = divided_difference_expi(lam).to(v.dtype)
        inner = v.mH @ grad @ v
        return v @ (gamma.conj() * inner) @ v.mH


def expi_hermitian(g: torch.Tensor) -> torch.Tensor:
    """``exp(i G)`` for Hermitian ``G`` (..., d, d): unitary to rounding, gradient exact also
    where eigenvalues repeat (no eigh-backward singularity).

    >>> import torch
    >>> u = expi_hermitian(pauli_sum(torch.randn(15, dtype=torch.float64)))
    >>> bool(torch.allclose(u @ u.mH, torch.eye(4, dtype=u.dtype)))
    True
    """
    return _ExpiHermitian.apply(g)


def su_gates(theta: torch.Tensor, n_qubits: int | None = None) -> torch.Tensor:
    """``exp(i sum_k theta_k P_k)`` for each leading index of ``theta`` (..., 4^n - 1).

    Real ``theta``: a special unitary (eigh of the Hermitian generator, :func:`expi_hermitian`).
    Complex ``theta`` (the paper's parameters): ``torch.linalg.matrix_exp``, not unitary in
    general.

    >>> import torch
    >>> su_gates(torch.zeros(2, 3)).shape
    torch.Size([2, 2, 2])
    """
    g = pauli_sum(theta, n_qubits)
    if theta.is_complex():
        return torch.linalg.matrix_exp(1j * g)
    return expi_hermitian(g)


# --------------------------------------------------------------------------------------------
# Pauli words, decomposition, and the Pauli-generated gate exp(i sum_k c_k P_k)
# --------------------------------------------------------------------------------------------

def pauli_index(word: str) -> int:
    """Position of a non-identity ``word`` in :func:`pauli_labels` ``(len(word))``.

    >>> pauli_index("X"), pauli_index("IZ"), pauli_index("ZZ")
    (0, 2, 14)
    """
    k = 0
    for ch in word:
        k = 4 * k + "IXYZ".index(ch)
    if k == 0:
        raise ValueError(f"pauli_index: the identity word has no index; got {word!r}")
    return k - 1


def pauli_decompose(matrix: torch.Tensor, n_qubits: int | None = None) -> torch.Tensor:
    """Coefficients ``c_k = Tr(P_k H) / 2^n`` of a Hermitian ``H`` (..., 2^n, 2^n) on the
    4^n - 1 non-identity strings (IXYZ order), so ``H = Tr(H)/2^n I + sum_k c_k P_k``.

    Linear in ``H`` and differentiable; one gather and one Walsh-Hadamard matmul (no Pauli
    stack).  Uses ``Tr(P H) = (-i)^{#Y} sum_r (-1)^{popcount(r & z)} H[r ^ x, r]``.  A real
    (symmetric) ``H`` gives real coefficients without complex arithmetic; a complex Hermitian
    ``H`` gives the real part (the imaginary part is zero for Hermitian input).

    >>> import torch
    >>> pauli_decompose(pauli_sum(torch.tensor([0.5, 0.0, -2.0], dtype=torch.float64)))
    tensor([ 0.5000,  0.0000, -2.0000], dtype=torch.float64)
    """
    d = matrix.shape[-1]
    if n_qubits is None:
        n_qubits = d.bit_length() - 1
    if matrix.shape[-2:] != (2**n_qubits, 2**n_qubits):
        raise ValueError(f"pauli_decompose: matrix must be (..., 2**n, 2**n); got {tuple(matrix.shape)}")
    x, z, _, ny, hadamard, _ = _tables(n_qubits)
    dev = matrix.device
    rows = torch.arange(d, device=dev)
    lead = matrix.shape[:-2]
    # G[x, r] = H[r ^ x, r], flattened index (r ^ x) * d + r
    gidx = ((rows.unsqueeze(0) ^ rows.unsqueeze(1)) * d + rows.unsqueeze(0)).reshape(-1)
    g = matrix.reshape(*lead, d * d)[..., gidx].reshape(*lead, d, d)
    xs, zs = x[1:].to(dev), z[1:].to(dev)
    nyk = ny.to(dev)[xs, zs]
    if matrix.is_complex():
        hd = hadamard.to(device=dev, dtype=matrix.real.dtype)
        c = _cmatmul_real(g, hd)[..., xs, zs] * _phase(nyk, matrix.dtype, dev)
        return c.real / d
    hd = hadamard.to(device=dev, dtype=matrix.dtype)
    re_phase = torch.tensor([1.0, 0.0, -1.0, 0.0], dtype=matrix.dtype, device=dev)[nyk]  # Re (-i)^m
    return (g @ hd)[..., xs, zs] * re_phase / d


def _word_indices(words, owner: str) -> tuple[int, torch.Tensor]:
    words = list(words)
    if not words or any(not isinstance(w, str) or len(w) != len(words[0]) for w in words):
        raise ValueError(f"{owner}: words must be non-empty Pauli strings of one length; got {words!r}")
    return len(words[0]), torch.tensor([pauli_index(w) for w in words], dtype=torch.long)


def pauli_exp_matrix(words, coeffs: torch.Tensor) -> torch.Tensor:
    """``exp(i sum_k coeffs[..., k] P_{words[k]})`` as (..., 2^m, 2^m), ``m = len(words[0])``
    (first letter = most significant bit), for real ``coeffs`` (..., len(words)).

    Built through :func:`su_gates` (eigh of the Hermitian generator), so the gradient is the
    exact divided-difference one, also where eigenvalues repeat.  complex128 for float64
    ``coeffs``, complex64 for float32.

    >>> import torch, math
    >>> u = pauli_exp_matrix(["Z"], torch.tensor([math.pi / 2], dtype=torch.float64))
    >>> torch.allclose(u, torch.diag(torch.tensor([1j, -1j], dtype=torch.complex128)))
    True
    """
    m, idx = _word_indices(words, "pauli_exp_matrix")
    if coeffs.shape[-1] != idx.shape[0]:
        raise ValueError(f"pauli_exp_matrix: coeffs must end in len(words) = {idx.shape[0]}; got {tuple(coeffs.shape)}")
    theta = coeffs.new_zeros(*coeffs.shape[:-1], 4**m - 1).index_add(-1, idx.to(coeffs.device), coeffs)
    return su_gates(theta, m)


def pauli_exp_shift_coefficients(words, coeffs: torch.Tensor) -> torch.Tensor:
    """``omega[..., k, l]`` of the generalised parameter-shift rule of ``U = exp(iA)``,
    ``A = sum_k coeffs[..., k] P_{words[k]}``, over all 4^m - 1 strings ``P_l`` (IXYZ order):

        dU/dc_k = U Omega_k,  Omega_k = int_0^1 e^{-isA} (i P_k) e^{isA} ds = i sum_l omega_kl P_l

    (Omega_k is anti-Hermitian and traceless, so omega is real).  For any expectation
    ``E = <phi| U^H M U |phi>`` and ``g(a) = E(U e^{i a P_l})``, ``g'(0) = <phi| i[M', P_l] |phi>``
    with ``M' = U^H M U``, and ``g(a)`` is ``A + B cos 2a + C sin 2a`` (``P_l^2 = I``), so

        dE/dc_k = sum_l omega_kl [E(U e^{i pi/4 P_l}) - E(U e^{-i pi/4 P_l})].

    With ``A = V diag(lam) V^H``: ``V^H Omega_k V = i (V^H P_k V) o F``,
    ``F_pq = int_0^1 e^{is(lam_q - lam_p)} ds = e^{i d/2} sinc(d/2)``, ``d = lam_q - lam_p``,
    and ``omega_kl = Tr(P_l V ((V^H P_k V) o F) V^H) / 2^m``.  Computed in float64 without
    gradient (for engines that only evaluate circuits).

    >>> import torch
    >>> w = pauli_exp_shift_coefficients(["Z"], torch.tensor([0.3], dtype=torch.float64))
    >>> [round(v, 12) for v in w[0].tolist()]   # one Pauli commutes with its exponential
    [0.0, 0.0, 1.0]
    """
    m, idx = _word_indices(words, "pauli_exp_shift_coefficients")
    with torch.no_grad():
        c = coeffs.detach().to(torch.float64)
        theta = c.new_zeros(*c.shape[:-1], 4**m - 1).index_add(-1, idx.to(c.device), c)
        lam, v = torch.linalg.eigh(pauli_sum(theta, m))
        dlt = lam.unsqueeze(-2) - lam.unsqueeze(-1)  # [p, q] = lam_q - lam_p
        f = torch.polar(torch.ones_like(dlt), dlt / 2) * torch.sinc(dlt / (2 * torch.pi))
        pk = pauli_matrices(m, torch.complex128).to(c.device)[idx]  # (K, d, d)
        vv = v.unsqueeze(-3)
        inner = vv.mH @ pk @ vv  # (..., K, d, d)
        mk = vv @ (inner * f.unsqueeze(-3)) @ vv.mH
        return pauli_decompose(mk, m)
