"""Both layers against PennyLane and Qiskit at small sizes (physical mode, float64)."""

import numpy as np
import pytest
import torch

from qnn.layers import DataReUploadingLinear, FlippedQuanv3x3
from qnn.pauli import pauli_labels

F64 = torch.float64


def patches_and_sym(x, i, j):
    m4 = torch.zeros(4, 4, dtype=F64)
    m4[:3, :3] = x[i:i + 3, j:j + 3]
    return (m4 + m4.T) / 2


@pytest.fixture
def dru():
    layer = DataReUploadingLinear(in_features=10, out_features=3, n_qubits=2, n_reps=2, seed=0, dtype=F64)
    x = torch.randn(3, 10, dtype=F64, generator=torch.Generator().manual_seed(1))
    x[2, 6:] = 0.0
    return layer, x


@pytest.fixture
def conv():
    layer = FlippedQuanv3x3(1, 2, seed=0, dtype=F64)
    x = torch.randn(1, 1, 5, 5, dtype=F64, generator=torch.Generator().manual_seed(2))
    return layer, x


# ---------------------------------------------------------------------------------- PennyLane
def test_reupload_vs_pennylane_values_and_gradients(dru):
    qml = pytest.importorskip("pennylane")
    layer, x = dru
    dev = qml.device("default.qubit", wires=2)

    @qml.qnode(dev, interface="torch", diff_method="backprop")
    def circuit(h, theta):
        for w in range(2):
            qml.Hadamard(w)
        for l in range(layer.n_reps):
            qml.exp(qml.Hermitian(h, wires=[0, 1]), 1j * layer.t)  # U(x) = exp(i t H)
            qml.SpecialUnitary(theta[l], wires=[0, 1])            # exp(i sum theta P), IXYZ order
        return qml.probs(wires=[0, 1])                            # wire 0 = most significant

    xq = x.clone().requires_grad_()
    th = layer.weight.detach().clone().requires_grad_()
    h = layer.hamiltonian(xq)
    ref = torch.stack([circuit(h[b], th)[:3] for b in range(x.shape[0])]) + layer.bias.detach()
    xo = x.clone().requires_grad_()
    ours = layer(xo)
    assert torch.allclose(ours, ref, atol=1e-12)
    wgt = torch.tensor([0.3, -1.0, 2.0], dtype=F64)
    g_ref = torch.autograd.grad((ref * wgt).sum(), [xq, th])
    g_ours = torch.autograd.grad((ours * wgt).sum(), [xo, layer.weight])
    for a, b in zip(g_ours, g_ref):
        assert torch.allclose(a, b, atol=1e-10)


def _pl_word(qml, label):
    ops = {"X": qml.PauliX, "Y": qml.PauliY, "Z": qml.PauliZ}
    return qml.prod(*[ops[ch](w) for w, ch in enumerate(label) if ch != "I"])


def test_flipped_vs_pennylane_values_gradients_and_pauli_form(conv):
    qml = pytest.importorskip("pennylane")
    layer, x = conv
    dev = qml.device("default.qubit", wires=2)

    @qml.qnode(dev, interface="torch", diff_method="backprop")
    def expval(theta, s):
        qml.SpecialUnitary(theta, wires=[0, 1])
        return qml.expval(qml.Hermitian(s, wires=[0, 1]))

    th = layer.weight.detach().clone().requires_grad_()
    img = x[0, 0]
    ref = torch.stack([torch.stack([torch.stack([expval(th[o, 0], patches_and_sym(img, i, j))
                                                 for j in range(3)]) for i in range(3)])
                       for o in range(2)]).unsqueeze(0) + layer.bias.detach().view(1, 2, 1, 1)
    ours = layer(x)
    assert torch.allclose(ours, ref, atol=1e-12)
    wgt = torch.randn(ours.shape, dtype=F64, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(torch.autograd.grad((ours * wgt).sum(), layer.weight)[0],
                          torch.autograd.grad((ref * wgt).sum(), th)[0], atol=1e-10)

    # the hardware-friendly form: one state per channel pair (2 here), 15 Pauli observables each,
    # whatever the number of patches/images
    @qml.qnode(dev, interface="torch")
    def paulis(theta):
        qml.SpecialUnitary(theta, wires=[0, 1])
        return [qml.expval(_pl_word(qml, lab)) for lab in pauli_labels(2)]

    ev = torch.stack([torch.stack(paulis(th[o, 0].detach())) for o in range(2)]).unsqueeze(1)
    assert torch.allclose(ev, layer.pauli_expectations(), atol=1e-12)
    assert torch.allclose(layer.forward_from_expectations(x, ev), ours, atol=1e-12)


# ---------------------------------------------------------------------------------- Qiskit
def _qiskit_gate(theta):
    from qiskit.quantum_info import SparsePauliOp
    from scipy.linalg import expm
    # Qiskit label strings put qubit n-1 first, i.e. the most significant factor first, the same
    # string order as ours; the matrix is in Qiskit's integer basis, the same integers as ours
    n = int(round(np.log(theta.numel() + 1) / np.log(4)))
    gen = SparsePauliOp(pauli_labels(n), coeffs=theta.detach().numpy()).to_matrix()
    return expm(1j * gen)


def _qiskit_dru_probs(layer, x):
    from qiskit import QuantumCircuit
    from qiskit.circuit.library import HamiltonianGate, UnitaryGate
    from qiskit.quantum_info import Statevector
    n = layer.n_qubits
    out = []
    for h in layer.hamiltonian(x).detach().numpy():
        qc = QuantumCircuit(n)
        qc.h(range(n))
        for l in range(layer.n_reps):
            qc.append(HamiltonianGate(h, time=-layer.t), range(n))  # Qiskit: exp(-i time H)
            qc.append(UnitaryGate(_qiskit_gate(layer.weight[l])), range(n))
        sv = Statevector(qc)
        probs = sv.probabilities()  # indexed by the basis integer
        # little-endian labels: bitstring 'q_{n-1} ... q_0' of integer k is our big-endian k
        d = sv.probabilities_dict()
        for k in range(2**n):
            assert abs(d.get(format(k, f"0{n}b"), 0.0) - probs[k]) < 1e-14
        out.append(probs[: layer.out_features])
    return torch.tensor(np.array(out), dtype=F64) + layer.bias.detach()


def test_reupload_vs_qiskit_values_and_finite_difference_gradients(dru):
    pytest.importorskip("qiskit")
    layer, x = dru
    assert torch.allclose(layer(x), _qiskit_dru_probs(layer, x), atol=1e-12)
    xg = x.clone().requires_grad_()
    out = layer(xg)
    wgt = torch.tensor([0.3, -1.0, 2.0], dtype=F64)
    gx, gw = torch.autograd.grad((out * wgt).sum(), [xg, layer.weight])
    eps = 1e-6
    for b, i in [(0, 0), (1, 4), (2, 9), (2, 7)]:  # (2, 7) sits in a zero-padded region
        xp, xm = x.clone(), x.clone()
        xp[b, i] += eps
        xm[b, i] -= eps
        fd = ((_qiskit_dru_probs(layer, xp) - _qiskit_dru_probs(layer, xm)) * wgt).sum() / (2 * eps)
        assert abs(fd - gx[b, i]) < 1e-7
    for l, k in [(0, 0), (1, 14), (0, 7)]:
        w0 = layer.weight.detach().clone()
        with torch.no_grad():
            layer.weight[l, k] += eps
        fp = (_qiskit_dru_probs(layer, x) * wgt).sum()
        with torch.no_grad():
            layer.weight[l, k] -= 2 * eps
        fm = (_qiskit_dru_probs(layer, x) * wgt).sum()
        with torch.no_grad():
            layer.weight.copy_(w0)
        assert abs((fp - fm) / (2 * eps) - gw[l, k]) < 1e-7


def test_flipped_vs_qiskit(conv):
    pytest.importorskip("qiskit")
    from qiskit import QuantumCircuit
    from qiskit.circuit.library import UnitaryGate
    from qiskit.quantum_info import Operator, SparsePauliOp, Statevector
    layer, x = conv
    img = x[0, 0]

    def qiskit_out(weight):
        out = torch.zeros(1, 2, 3, 3, dtype=F64)
        evs = torch.zeros(2, 1, 15, dtype=F64)
        for o in range(2):
            qc = QuantumCircuit(2)
            qc.append(UnitaryGate(_qiskit_gate(weight[o, 0])), [0, 1])
            sv = Statevector(qc)
            for k, lab in enumerate(pauli_labels(2)):
                evs[o, 0, k] = sv.expectation_value(SparsePauliOp(lab)).real
            for i in range(3):
                for j in range(3):
                    out[0, o, i, j] = sv.expectation_value(Operator(patches_and_sym(img, i, j).numpy())).real
        return out + layer.bias.detach().view(1, 2, 1, 1), evs

    ref, evs = qiskit_out(layer.weight)
    assert torch.allclose(layer(x), ref, atol=1e-12)
    assert torch.allclose(layer.pauli_expectations(), evs, atol=1e-12)
    gw = torch.autograd.grad(layer(x).sum(), layer.weight)[0]
    eps = 1e-6
    for k in (0, 5, 14):
        wp, wm = layer.weight.detach().clone(), layer.weight.detach().clone()
        wp[1, 0, k] += eps
        wm[1, 0, k] -= eps
        fd = (qiskit_out(wp)[0].sum() - qiskit_out(wm)[0].sum()) / (2 * eps)
        assert abs(fd - gw[1, 0, k]) < 1e-7
