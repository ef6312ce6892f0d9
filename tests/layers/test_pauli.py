import itertools

import pytest
import torch

from qnn.pauli import (
    _tables,
    batched_eigh,
    divided_difference_expi,
    expi_hermitian,
    pauli_labels,
    pauli_masks,
    pauli_matrices,
    pauli_sum,
    su_gates,
)

SINGLE = {
    "I": torch.eye(2, dtype=torch.complex128),
    "X": torch.tensor([[0, 1], [1, 0]], dtype=torch.complex128),
    "Y": torch.tensor([[0, -1j], [1j, 0]], dtype=torch.complex128),
    "Z": torch.tensor([[1, 0], [0, -1]], dtype=torch.complex128),
}


def kron_label(label):
    m = torch.ones(1, 1, dtype=torch.complex128)
    for ch in label:
        m = torch.kron(m, SINGLE[ch])
    return m


def popcount(v):
    return bin(v).count("1")


@pytest.mark.parametrize("n", [1, 2, 3])
def test_labels_are_itertools_order(n):
    assert pauli_labels(n) == ["".join(p) for p in itertools.product("IXYZ", repeat=n)][1:]


@pytest.mark.parametrize("n", [1, 2, 3])
def test_masks_and_phase_match_explicit_kronecker_products(n):
    x, z = pauli_masks(n)
    d = 2**n
    for k, label in enumerate(pauli_labels(n)):
        p = kron_label(label)
        xk, zk = int(x[k]), int(z[k])
        ny = popcount(xk & zk)
        assert ny == label.count("Y")
        for r in range(d):
            c = r ^ xk
            nz = torch.nonzero(p[r]).flatten().tolist()
            assert nz == [c]  # one nonzero per row, at column r XOR x
            # phase with the column index: i^{#Y} (-1)^{popcount(c & z)} ...
            assert p[r, c] == (1j) ** ny * (-1) ** popcount(c & zk)
            # ... equivalently with the row index: (-i)^{#Y} (-1)^{popcount(r & z)}
            assert p[r, c] == (-1j) ** ny * (-1) ** popcount(r & zk)
        assert torch.equal(pauli_matrices(n)[k], p)


@pytest.mark.parametrize("n", [1, 2, 3, 4])
@pytest.mark.parametrize("complex_theta", [False, True])
def test_pauli_sum_equals_stack_contraction(n, complex_theta):
    g = torch.Generator().manual_seed(n)
    dt = torch.complex128 if complex_theta else torch.float64
    theta = torch.randn(3, 2, 4**n - 1, dtype=dt, generator=g)
    ref = torch.einsum("abk,kij->abij", theta.to(torch.complex128), pauli_matrices(n))
    assert torch.allclose(pauli_sum(theta), ref, atol=1e-12)
    # float32 gives complex64
    assert pauli_sum(theta.to(torch.complex64 if complex_theta else torch.float32)).dtype == torch.complex64


def test_pauli_sum_gradients():
    th = torch.randn(2, 15, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda t: torch.view_as_real(pauli_sum(t)), (th,))
    thc = torch.randn(2, 15, dtype=torch.complex128, requires_grad=True)
    torch.autograd.gradcheck(lambda t: torch.view_as_real(pauli_sum(t)), (thc,))


def test_pauli_sum_n7_without_a_stack():
    # tables are O(4^n) integers (n=7: 16384 entries), never a (4^n, 2^n, 2^n) stack
    x, z, kidx, ny, had, gidx = _tables(7)
    assert kidx.numel() == 4**7 and gidx.numel() == 4**7 and had.numel() == 4**7
    theta = torch.randn(2, 4**7 - 1)
    a = pauli_sum(theta)
    assert a.shape == (2, 128, 128) and a.dtype == torch.complex64
    assert torch.allclose(a, a.mH, atol=1e-4)  # Hermitian for real theta
    # spot-check a few strings against explicit Kronecker products
    for k in (0, 1, 777, 16382):
        e = torch.zeros(4**7 - 1, dtype=torch.float64)
        e[k] = 1.0
        assert torch.equal(pauli_sum(e), kron_label(pauli_labels(7)[k]))


def test_pauli_sum_rejects_bad_length():
    with pytest.raises(ValueError, match="4\\*\\*n - 1"):
        pauli_sum(torch.zeros(14))


def test_divided_difference_limit_and_values():
    lam = torch.tensor([0.3, 0.3, -1.2, 2.0], dtype=torch.float64)
    t = 0.7
    g = divided_difference_expi(lam, t)
    e = torch.exp(1j * t * lam.to(torch.complex128))
    for p in range(4):
        for q in range(4):
            if lam[p] == lam[q]:
                want = 1j * t * e[p]
            else:
                want = (e[p] - e[q]) / (lam[p] - lam[q])
            assert abs(g[p, q] - want) < 1e-14


@pytest.mark.parametrize("degenerate", [False, True])
def test_expi_hermitian_matches_matrix_exp_values_and_gradients(degenerate):
    g = torch.Generator().manual_seed(3)
    theta = torch.randn(15, dtype=torch.float64, generator=g)
    if degenerate:
        theta = torch.zeros(15, dtype=torch.float64)
        theta[14] = 0.4  # ZZ: eigenvalues (0.4, -0.4, -0.4, 0.4), each twice
    theta.requires_grad_()
    w = torch.randn(4, 4, dtype=torch.complex128, generator=g)
    outs = []
    for f in (lambda t: expi_hermitian(pauli_sum(t)), lambda t: torch.linalg.matrix_exp(1j * pauli_sum(t))):
        u = f(theta)
        loss = (u * w).real.sum() + u[:, 0].abs().square()[1]
        outs.append((u, torch.autograd.grad(loss, theta)[0]))
    assert torch.allclose(outs[0][0], outs[1][0], atol=1e-12)
    assert torch.isfinite(outs[0][1]).all()
    assert torch.allclose(outs[0][1], outs[1][1], atol=1e-12)


def test_su_gates_unitary_real_and_not_unitary_complex():
    th = torch.randn(3, 15, dtype=torch.float64)
    u = su_gates(th)
    assert (u @ u.mH - torch.eye(4, dtype=u.dtype)).abs().max() < 1e-12
    assert torch.allclose(torch.linalg.det(u), torch.ones(3, dtype=u.dtype), atol=1e-10)  # traceless generator
    uc = su_gates(th + 0.1j * torch.randn(3, 15, dtype=torch.float64))
    assert (uc @ uc.mH - torch.eye(4, dtype=uc.dtype)).abs().max() > 1e-2


def test_batched_eigh_equals_eigh_under_threads():
    a = torch.randn(9, 6, 6, dtype=torch.float64)
    a = a + a.mT
    prev = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        lam, v = batched_eigh(a)
    finally:
        torch.set_num_threads(prev)
    assert torch.get_num_threads() == prev
    assert torch.allclose(v @ torch.diag_embed(lam) @ v.mT, a, atol=1e-12)
