"""Baselines of the KACQ-DCNN paper built on qnn: tensor-network QNNs and QCKANnet.

* :func:`tensor_network_circuit` / :class:`TensorNetworkQNNClassifier`: the 12 QNN baselines
  (TTN, MPS, MERA x L = 1..4) of the paper's ``QNN/`` notebooks, written with :class:`qnn.Circuit`
  (no PennyLane templates): amplitude embedding of the features on 5 wires (padded to 32), blocks
  ``CNOT(a, b); RY(a); RY(b)`` (2 weights each) arranged as a tree / chain / MERA, repeated
  ``n_layers`` times with fresh weights, output ``<Z>`` on wire 1 plus a trainable bias; labels
  +-1, square loss, Nesterov momentum (step 0.4, momentum 0.9), 50 steps of batch 16.
* :class:`QCKANnet` / :class:`QCKANClassifier`: Conv1D-KAN front end -> 3 PQCs -> KAN head.

Block layouts (``TTN`` and ``MERA`` need a power-of-two register, so they act on wires 0-3; the
amplitude-embedded state still spans all 5 wires):

* MPS (wires 0-4): (0,1) (1,2) (2,3) (3,4)
* TTN (wires 0-3): (0,1) (2,3) then (1,3)
* MERA (wires 0-3): disentanglers (1,2) (3,0), isometries (0,1) (2,3), top (1,3)

Example:
    >>> from qnn.models._baselines import tensor_network_circuit
    >>> tensor_network_circuit("MPS", n_features=20, n_layers=2)
    Circuit(n_qubits=5, gates=24, inputs=20, weights=16, outputs=1, amplitude_prep)
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from qnn.kan import KANLinear
from qnn.models.kacq import KACQClassifier, make_pqc

__all__ = ["tensor_network_circuit", "TensorNetworkQNNClassifier", "QCKANnet", "QCKANClassifier", "NETWORKS"]

NETWORKS = {
    "MPS": [(0, 1), (1, 2), (2, 3), (3, 4)],
    "TTN": [(0, 1), (2, 3), (1, 3)],
    "MERA": [(1, 2), (3, 0), (0, 1), (2, 3), (1, 3)],
}


def tensor_network_circuit(network: str, n_features: int, n_layers: int = 1, n_qubits: int = 5):
    """Amplitude embedding + ``n_layers`` repetitions of a TTN / MPS / MERA of 2-wire blocks."""
    from qnn.circuit import Circuit, Param, amplitude_embedding

    if network not in NETWORKS:
        raise ValueError(f"tensor_network_circuit: network must be one of {list(NETWORKS)}; got {network!r}")
    if not 1 <= n_features <= 2**n_qubits:
        raise ValueError(f"tensor_network_circuit: n_features must be in 1..{2**n_qubits}; got {n_features}")
    c = Circuit(n_qubits)
    amplitude_embedding(c, n_features)
    blocks = NETWORKS[network]
    w = c.new_weights(network.lower(), (n_layers, len(blocks), 2))
    for l in range(n_layers):
        for b, (a, bb) in enumerate(blocks):
            k = w[(l * len(blocks) + b) * 2]
            c.add("CNOT", (a, bb))
            c.add("RY", a, [Param.weight(k)])
            c.add("RY", bb, [Param.weight(k + 1)])
    c.measure_z([1])
    return c


class TensorNetworkQNNClassifier:
    """Tensor-network QNN baseline with the paper's training recipe (sklearn-style).

    Args:
        network: ``"TTN"``, ``"MPS"`` or ``"MERA"``.
        n_layers: repetitions of the network.
        steps: optimiser steps (50), each on ``batch_size`` (16) rows drawn from a fresh random
            90 % of the training set.
        stepsize, momentum: Nesterov momentum SGD (0.4, 0.9).
        seed: initialisation (weights ``2 pi N(0, 1)``) and sampling seed.
        engine: qnn engine.

    ``predict_proba`` maps the clipped output ``f in [-1, 1]`` to ``P(y=1) = (f + 1) / 2``
    (the paper computed AUC from hard labels instead).

    Example:
        >>> import numpy as np
        >>> X = np.random.rand(40, 8); y = (X[:, 0] > .5).astype(int)
        >>> TensorNetworkQNNClassifier("MPS", seed=0).fit(X, y).predict_proba(X).shape
        (40, 2)
    """

    def __init__(self, network: str = "TTN", n_layers: int = 1, *, steps: int = 50, batch_size: int = 16,
                 stepsize: float = 0.4, momentum: float = 0.9, seed: int | None = 0, engine="torch"):
        self.network = network
        self.n_layers = n_layers
        self.steps = steps
        self.batch_size = batch_size
        self.stepsize = stepsize
        self.momentum = momentum
        self.seed = seed
        self.engine = engine

    def get_params(self, deep=True):
        return {k: getattr(self, k) for k in ("network", "n_layers", "steps", "batch_size", "stepsize",
                                              "momentum", "seed", "engine")}

    def _inputs(self, X) -> Tensor:
        X = np.asarray(X, dtype=np.float64)
        X = X + 1e-9 * (np.abs(X).sum(1, keepdims=True) == 0)  # guard the all-zero row
        return torch.from_numpy(X)

    def fit(self, X, y):
        from qnn.layers import QuantumLayer

        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y)
        self.classes_ = np.unique(y)
        if len(self.classes_) != 2:
            raise ValueError(f"TensorNetworkQNNClassifier: y must contain exactly 2 classes; got {self.classes_.tolist()}")
        self.n_features_in_ = X.shape[1]
        circ = tensor_network_circuit(self.network, X.shape[1], self.n_layers)
        rng = np.random.default_rng(self.seed)
        self.layer_ = QuantumLayer(circ, engine=self.engine, dtype=torch.float64)
        with torch.no_grad():
            self.layer_.weight.copy_(torch.from_numpy(2 * math.pi * rng.standard_normal(circ.n_weights)))
        self.bias_ = nn.Parameter(torch.zeros((), dtype=torch.float64))
        opt = torch.optim.SGD([self.layer_.weight, self.bias_], lr=self.stepsize, momentum=self.momentum,
                              nesterov=True)
        Xt = self._inputs(X)
        yt = torch.from_numpy(np.where(y == self.classes_[1], 1.0, -1.0))
        n = len(X)
        self.losses_ = []
        for _ in range(self.steps):
            train = rng.permutation(n)[: max(1, int(0.9 * n))]
            idx = torch.from_numpy(rng.choice(train, size=min(self.batch_size, len(train)), replace=False))
            opt.zero_grad()
            out = self.layer_(Xt[idx])[:, 0] + self.bias_
            loss = ((yt[idx] - out) ** 2).mean()
            loss.backward()
            opt.step()
            self.losses_.append(loss.item())
        return self

    def decision_function(self, X) -> np.ndarray:
        if not hasattr(self, "layer_"):
            raise ValueError("This TensorNetworkQNNClassifier instance is not fitted yet. Call 'fit' first.")
        with torch.no_grad():
            return (self.layer_(self._inputs(X))[:, 0] + self.bias_).numpy()

    def predict_proba(self, X) -> np.ndarray:
        p = (np.clip(self.decision_function(X), -1, 1) + 1) / 2
        return np.stack([1 - p, p], 1)

    def predict(self, X) -> np.ndarray:
        return self.classes_[(self.decision_function(X) > 0).astype(int)]


class QCKANnet(nn.Module):
    """QCKANnet of the paper: Conv1D-KAN(96, k3, s2) -> Conv1D-KAN(96, k2, s2) -> dropout ->
    flatten -> KAN 48 (G=5) -> 3 x 4-qubit PQC -> KAN 256 -> dropout -> KAN 32 -> dropout -> Linear(1).

    A Conv1D-KAN is a position-wise :class:`~qnn.kan.KANLinear` on the unfolded (valid, strided)
    patches.  Grid size 3 except the 48-unit layer (5).

    Example:
        >>> QCKANnet(11, seed=0).logits(torch.rand(2, 11)).shape
        torch.Size([2])
    """

    def __init__(self, n_features: int = 11, n_layers: int = 1, n_qubits: int = 4, n_circuits: int = 3,
                 filters: int = 96, dropout: float = 0.2, engine="torch", seed: int | None = None):
        super().__init__()
        self.n_features = n_features
        l1 = (n_features - 3) // 2 + 1
        l2 = (l1 - 2) // 2 + 1
        if l2 < 1:
            raise ValueError(f"QCKANnet: n_features must be >= 5 for the two strided convolutions; got {n_features}")
        state = torch.random.get_rng_state()
        if seed is not None:
            torch.manual_seed(seed)
        try:
            self.conv1 = KANLinear(3, filters, grid_size=3)
            self.conv2 = KANLinear(2 * filters, filters, grid_size=3)
            self.drop = nn.Dropout(dropout)
            per = 2**n_qubits
            self.per = per
            self.enc = KANLinear(l2 * filters, n_circuits * per, grid_size=5)
            self.circuits = nn.ModuleList(make_pqc(per, n_qubits, n_layers, engine=engine) for _ in range(n_circuits))
            self.post = nn.Sequential(KANLinear(n_circuits * n_qubits, 256, grid_size=3), nn.Dropout(dropout),
                                      KANLinear(256, 32, grid_size=3), nn.Dropout(dropout))
            self.head = nn.Linear(32, 1)
            nn.init.xavier_uniform_(self.head.weight)  # Keras Dense defaults
            nn.init.zeros_(self.head.bias)
        finally:
            if seed is not None:
                torch.random.set_rng_state(state)

    def logits(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"QCKANnet: expected input of shape (B, {self.n_features}); got {tuple(x.shape)}")
        h = self.conv1(x.unfold(1, 3, 2))  # (B, L1, filters)
        h = h.unfold(1, 2, 2)  # (B, L2, filters, 2)
        h = self.conv2(h.transpose(-1, -2).reshape(h.shape[0], h.shape[1], -1))
        q = self.enc(self.drop(h).flatten(1))
        q = torch.cat([c(s) for c, s in zip(self.circuits, q.split(self.per, -1))], -1)
        return self.head(self.post(q)).squeeze(-1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.logits(x))


class QCKANClassifier(KACQClassifier):
    """:class:`KACQClassifier` (same training recipe) around :class:`QCKANnet`."""

    def _make_module(self, n_features: int) -> nn.Module:
        kw = dict(self.model_kwargs)
        kw.setdefault("n_features", n_features)
        return QCKANnet(seed=self.seed, **kw)
