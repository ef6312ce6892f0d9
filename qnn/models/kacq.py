"""KACQ-DCNN (Jahin et al., arXiv 2410.07446): a dual-channel KAN + quantum-circuit classifier.

:class:`KACQDCNN` is the torch module (topology of the authors' Keras model, spec §2.2), with the
paper's ablations as constructor switches; :class:`KACQClassifier` wraps it as a scikit-learn
estimator with the paper's training recipe (BCE, Adam 1e-3, batch 32, <= 100 epochs, checkpoint on
best validation accuracy, early stopping on validation loss, ReduceLROnPlateau with backtracking).

The three 4-qubit circuits are :class:`qnn.layers.QuantumLayer` objects built from a
:class:`qnn.Circuit` (amplitude embedding of 16 values, ``StronglyEntanglingLayers``, ``<Z>`` on
every wire), so the model runs on any qnn engine (``engine="torch"``, ``"pennylane"``, ...); the
three run in one engine call (:func:`qnn.layers.forward_many`, ``Engine.run_many``).

Example:
    >>> import torch
    >>> from qnn.models import KACQDCNN
    >>> model = KACQDCNN(n_features=11, seed=0)
    >>> model(torch.rand(4, 11)).shape
    torch.Size([4])
"""

from __future__ import annotations

import copy
import math
import time
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn
import torch.nn.functional as F

from qnn.kan import KANLinear
from qnn.layers import forward_many

__all__ = ["KerasLSTM", "KACQDCNN", "KACQClassifier", "make_pqc"]


# --------------------------------------------------------------------------- LSTM
class KerasLSTM(nn.Module):
    r"""(Bi)directional LSTM with a configurable cell activation, as Keras ``LSTM(activation=...)``.

    Keras applies ``activation`` in place of both tanh's of the LSTM cell:
    ``c_t = f * c_{t-1} + i * act(g)``, ``h_t = o * act(c_t)`` with sigmoid gates (gate order
    i, f, g, o).  ``torch.nn.LSTM`` only supports tanh, so this module runs the recurrence itself
    (inputs of every time step are projected in one matmul; the loop is over time only).
    Initialisation follows Keras: Glorot-uniform input kernel, orthogonal recurrent kernel, zero
    bias with forget-gate bias 1.

    Args:
        input_size: features per time step.
        hidden_size: units per direction.
        bidirectional: run a second, time-reversed LSTM and concatenate. Default True.
        activation: ``"relu"`` (the paper's setting) or ``"tanh"``.

    Shape:
        - Input: ``(B, T, input_size)``
        - Output: ``(B, T, D * hidden_size)`` (all time steps; ``D = 2`` if bidirectional)

    Example:
        >>> m = KerasLSTM(1, 64)
        >>> m(torch.rand(3, 11, 1)).shape
        torch.Size([3, 11, 128])
    """

    def __init__(self, input_size: int, hidden_size: int, *, bidirectional: bool = True,
                 activation: str = "relu"):
        super().__init__()
        if activation not in ("relu", "tanh"):
            raise ValueError(f"KerasLSTM: activation must be 'relu' or 'tanh'; got {activation!r}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bidirectional = bidirectional
        self.activation = activation
        D = 2 if bidirectional else 1
        self.weight_ih = nn.Parameter(torch.empty(D, input_size, 4 * hidden_size))
        self.weight_hh = nn.Parameter(torch.empty(D, hidden_size, 4 * hidden_size))
        self.bias = nn.Parameter(torch.empty(D, 4 * hidden_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        H = self.hidden_size
        with torch.no_grad():
            for d in range(self.weight_ih.shape[0]):
                nn.init.xavier_uniform_(self.weight_ih[d])
                # Keras orthogonal init of the (H, 4H) recurrent kernel
                nn.init.orthogonal_(self.weight_hh[d])
            self.bias.zero_()
            self.bias[:, H : 2 * H] = 1.0  # unit_forget_bias

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(
                f"KerasLSTM: expected input (B, T, {self.input_size}); got shape {tuple(x.shape)}"
            )
        B, T, _ = x.shape
        H = self.hidden_size
        D = self.weight_ih.shape[0]
        act = torch.relu if self.activation == "relu" else torch.tanh
        if D == 2:
            xs = torch.stack([x, x.flip(1)], 0)  # (2, B, T, in)
        else:
            xs = x.unsqueeze(0)
        # (D, B, T, 4H)
        xw = torch.baddbmm(self.bias.unsqueeze(1), xs.reshape(D, B * T, -1), self.weight_ih).view(D, B, T, 4 * H)
        h = x.new_zeros(D, B, H)
        c = x.new_zeros(D, B, H)
        outs = []
        for t in range(T):
            gates = xw[:, :, t] + torch.bmm(h, self.weight_hh)
            i, f, g, o = gates.chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * act(g)
            h = torch.sigmoid(o) * act(c)
            outs.append(h)
        out = torch.stack(outs, 2)  # (D, B, T, H)
        if D == 2:
            return torch.cat([out[0], out[1].flip(1)], dim=-1)
        return out[0]

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, bidirectional={self.bidirectional}, "
                f"activation={self.activation!r}")


# --------------------------------------------------------------------------- PQC
def make_pqc(n_inputs: int = 16, n_qubits: int = 4, n_layers: int = 1, *, embedding: str = "amplitude",
             engine="torch", **engine_options):
    """One KACQ circuit as a qnn quantum layer: ``(*, n_inputs) -> (*, n_qubits)``.

    ``embedding="amplitude"``: amplitude embedding of ``n_inputs <= 2**n_qubits`` values
    (L2-normalised), then ``StronglyEntanglingLayers(n_layers)``, then ``<Z_i>`` on every wire.
    ``embedding="angle"``: ``RY(x_i)`` on each wire (``n_inputs`` must equal ``n_qubits``), same
    ansatz and readout.  Weights are initialised uniform on ``[0, 2 pi)`` (PennyLane
    ``KerasLayer``/``TorchLayer`` default).
    """
    from qnn.circuit import Circuit, amplitude_embedding, angle_embedding, strongly_entangling_layers
    from qnn.layers import QuantumLayer

    c = Circuit(n_qubits)
    if embedding == "amplitude":
        if not 1 <= n_inputs <= 2**n_qubits:
            raise ValueError(f"make_pqc: amplitude embedding on {n_qubits} qubits takes 1..{2**n_qubits} "
                             f"inputs; got {n_inputs}")
        amplitude_embedding(c, n_inputs)
    elif embedding == "angle":
        if n_inputs != n_qubits:
            raise ValueError(f"make_pqc: angle embedding needs n_inputs == n_qubits ({n_qubits}); got {n_inputs}")
        angle_embedding(c, rotation="Y")
    else:
        raise ValueError(f"make_pqc: embedding must be 'amplitude' or 'angle'; got {embedding!r}")
    strongly_entangling_layers(c, n_layers, name="sel")
    c.measure_z()
    layer = QuantumLayer(c, engine=engine, engine_options=engine_options or None)
    with torch.no_grad():
        for p in layer.parameters():
            p.uniform_(0.0, 2 * math.pi)
    return layer


class _PQCStandIn(nn.Module):
    """Parameter-light classical stand-in for a PQC: L2-normalise, frozen random projection, tanh."""

    def __init__(self, n_inputs: int, n_outputs: int):
        super().__init__()
        self.register_buffer("proj", torch.randn(n_inputs, n_outputs) / math.sqrt(n_inputs))
        self.gain = nn.Parameter(torch.ones(n_outputs))

    def forward(self, x: Tensor) -> Tensor:
        x = x / (x.norm(dim=-1, keepdim=True) + 1e-12)
        return torch.tanh(self.gain * (x @ self.proj) * math.sqrt(x.shape[-1]))


# --------------------------------------------------------------------------- model
class KACQDCNN(nn.Module):
    r"""KACQ-DCNN: classical (BiLSTM + Dense + KAN) and quantum (KAN + 3 PQCs + KAN) channels.

    Classical channel: BiLSTM(64/dir, ReLU) x ``bilstm`` -> flatten -> dropout -> Dense 320 ReLU
    -> dropout -> KAN 256 (G=3) -> dropout -> KAN 32 (G=3) -> dropout.
    Quantum channel: KAN 112 position-wise on ``(B, n_features, 1)`` (G=3) -> flatten -> dropout ->
    KAN 176 (G=3) -> dropout -> KAN ``n_circuits * 16`` (G=5) -> ``n_circuits`` slices of 16 ->
    one 4-qubit PQC each -> concat -> KAN 112 (G=3) -> dropout -> KAN 32 (G=3) -> dropout.
    Head: concat -> Linear(64, 1) -> sigmoid.

    Args:
        n_features: input width (11 heart features; the paper's Keras model had 12).
        n_qubits: qubits per circuit (4).
        n_layers: ``StronglyEntanglingLayers`` depth ``L`` (1..4 in the paper).
        n_circuits: number of parallel circuits (3).
        engine: qnn engine name or instance for the circuits.
        kan: ``"kan"`` or ``"mlp"`` (every KAN replaced by Linear + ReLU; the MLP ablation).
        classical_kan / quantum_kan: use KANs in that channel (False = Linear + ReLU there; the
            ``wo_densekan_in_classical`` / ``wo_densekan_in_quantum`` ablations).
        embedding: ``"amplitude"`` (16 values per circuit) or ``"angle"`` (``n_qubits`` values
            per circuit, RY on each wire; the angle-embedding ablation).
        quantum_channel / classical_channel: keep that channel.
        bilstm: number of recurrent layers, 0, 1 or 2.  With 0, Dense 320 acts on the raw inputs
            and the quantum channel starts with a flat KAN ``n_features -> 112`` (the
            ``wo_all_BiLSTM`` checkpoint).
        lstm_bidirectional: BiLSTM (True) or plain LSTM (False, the ``replaced_BiLSTM_with_LSTM``
            ablation; 64 units, so the flatten width halves).
        lstm_activation: ``"relu"`` (Keras setting of the paper) or ``"tanh"``.
        dropout: dropout probability (0 = the ``wo_dropouts`` ablation).
        pqc: ``"quantum"`` or ``"classical"`` (a frozen random projection + tanh with 4 trainable
            gains per circuit: a parameter-matched stand-in to test what the circuits add).
        kan_parameterization: ``"tfkan"`` (paper) or ``"efficient"``.
        seed: seed for the initialisation (None = torch's global RNG).

    Shape:
        - Input: ``(B, n_features)``
        - Output: ``(B,)`` probabilities of the positive class.

    Example:
        >>> m = KACQDCNN(n_features=11, quantum_channel=False, seed=0)
        >>> m(torch.rand(2, 11)).shape
        torch.Size([2])
    """

    def __init__(
        self,
        n_features: int = 11,
        n_qubits: int = 4,
        n_layers: int = 1,
        n_circuits: int = 3,
        engine="torch",
        kan: str = "kan",
        embedding: str = "amplitude",
        quantum_channel: bool = True,
        classical_channel: bool = True,
        bilstm: int = 2,
        lstm_bidirectional: bool = True,
        lstm_activation: str = "relu",
        dropout: float = 0.2,
        classical_kan: bool = True,
        quantum_kan: bool = True,
        pqc: str = "quantum",
        kan_parameterization: str = "tfkan",
        seed: int | None = None,
    ):
        super().__init__()
        if not isinstance(n_features, int) or n_features < 1:
            raise ValueError(f"KACQDCNN: n_features must be a positive int; got {n_features!r}")
        if kan not in ("kan", "mlp"):
            raise ValueError(f"KACQDCNN: kan must be 'kan' or 'mlp'; got {kan!r}")
        if embedding not in ("amplitude", "angle"):
            raise ValueError(f"KACQDCNN: embedding must be 'amplitude' or 'angle'; got {embedding!r}")
        if bilstm not in (0, 1, 2):
            raise ValueError(f"KACQDCNN: bilstm must be 0, 1 or 2; got {bilstm!r}")
        if not (quantum_channel or classical_channel):
            raise ValueError("KACQDCNN: at least one of quantum_channel / classical_channel must be True")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"KACQDCNN: dropout must be in [0, 1); got {dropout!r}")
        if pqc not in ("quantum", "classical"):
            raise ValueError(f"KACQDCNN: pqc must be 'quantum' or 'classical'; got {pqc!r}")
        if not isinstance(n_layers, int) or n_layers < 1:
            raise ValueError(f"KACQDCNN: n_layers must be an int >= 1; got {n_layers!r}")
        self.n_features = n_features
        self.n_qubits = n_qubits
        self.n_layers = n_layers
        self.n_circuits = n_circuits
        self.kan = kan
        self.embedding = embedding
        self.quantum_channel = quantum_channel
        self.classical_channel = classical_channel
        self.bilstm = bilstm
        self.lstm_bidirectional = lstm_bidirectional
        self.lstm_activation = lstm_activation
        self.dropout = dropout
        self.classical_kan = classical_kan and kan == "kan"
        self.quantum_kan = quantum_kan and kan == "kan"
        self.pqc = pqc
        self.kan_parameterization = kan_parameterization
        self.engine_name = engine if isinstance(engine, str) else type(engine).__name__

        gen_state = None
        if seed is not None:
            gen_state = torch.random.get_rng_state()
            torch.manual_seed(seed)
        try:
            self._build(engine)
            self._keras_dense_init()
        finally:
            if gen_state is not None:
                torch.random.set_rng_state(gen_state)

    def _keras_dense_init(self) -> None:
        """Keras ``Dense`` defaults for every ``nn.Linear``: Glorot-uniform kernel, zero bias."""
        for mod in self.modules():
            if isinstance(mod, nn.Linear):
                nn.init.xavier_uniform_(mod.weight)
                nn.init.zeros_(mod.bias)

    def _dense(self, n_in: int, n_out: int, grid: int, use_kan: bool) -> nn.Module:
        if use_kan:
            return KANLinear(n_in, n_out, grid_size=grid, parameterization=self.kan_parameterization)
        return nn.Sequential(nn.Linear(n_in, n_out), nn.ReLU())

    def _build(self, engine) -> None:
        F_ = self.n_features
        p = self.dropout
        width = 0
        if self.classical_channel:
            rnn = []
            d_in = 1
            for _ in range(self.bilstm):
                rnn.append(KerasLSTM(d_in, 64, bidirectional=self.lstm_bidirectional,
                                     activation=self.lstm_activation))
                d_in = 128 if self.lstm_bidirectional else 64
            self.rnn = nn.ModuleList(rnn)
            flat = F_ * d_in if self.bilstm else F_
            self.classical = nn.Sequential(
                nn.Dropout(p) if self.bilstm else nn.Identity(),
                nn.Linear(flat, 320), nn.ReLU(), nn.Dropout(p),
                self._dense(320, 256, 3, self.classical_kan), nn.Dropout(p),
                self._dense(256, 32, 3, self.classical_kan), nn.Dropout(p),
            )
            width += 32
        if self.quantum_channel:
            qk = self.quantum_kan
            if self.bilstm:
                self.q_in = self._dense(1, 112, 3, qk)  # position-wise on (B, F, 1)
                q_flat = F_ * 112
                self.q_pre = nn.Sequential(
                    nn.Dropout(p),
                    self._dense(q_flat, 176, 3, qk), nn.Dropout(p),
                )
            else:
                self.q_in = self._dense(F_, 112, 3, qk)  # flat, as in wo_all_BiLSTM
                self.q_pre = nn.Sequential(
                    nn.Dropout(p),
                    self._dense(112, 176, 3, qk), nn.Dropout(p),
                )
            per = 2**self.n_qubits if self.embedding == "amplitude" else self.n_qubits
            self.per_circuit = per
            self.q_enc = self._dense(176, self.n_circuits * per, 5, qk)
            if self.pqc == "quantum":
                self.circuits = nn.ModuleList(
                    make_pqc(per, self.n_qubits, self.n_layers, embedding=self.embedding, engine=engine)
                    for _ in range(self.n_circuits)
                )
            else:
                self.circuits = nn.ModuleList(_PQCStandIn(per, self.n_qubits) for _ in range(self.n_circuits))
            self.q_post = nn.Sequential(
                self._dense(self.n_circuits * self.n_qubits, 112, 3, qk), nn.Dropout(p),
                self._dense(112, 32, 3, qk), nn.Dropout(p),
            )
            width += 32
        self.head = nn.Linear(width, 1)

    # parts, also used by the benchmark to time each channel
    def classical_forward(self, x: Tensor) -> Tensor:
        h = x.unsqueeze(-1)
        for rnn in self.rnn:
            h = rnn(h)
        return self.classical(h.flatten(1))

    def quantum_forward(self, x: Tensor) -> Tensor:
        if self.bilstm:
            q = self.q_in(x.unsqueeze(-1)).flatten(1)
        else:
            q = self.q_in(x)
        q = self.q_enc(self.q_pre(q))
        parts = q.split(self.per_circuit, dim=-1)
        if self.pqc == "quantum":  # the three circuits in one engine call
            outs = forward_many(self.circuits, parts)
        else:
            outs = [circ(s) for circ, s in zip(self.circuits, parts)]
        return self.q_post(torch.cat(outs, dim=-1))

    def forward(self, x: Tensor) -> Tensor:
        """Probability of the positive class, shape ``(B,)``."""
        return torch.sigmoid(self.logits(x))

    def logits(self, x: Tensor) -> Tensor:
        """Pre-sigmoid output, shape ``(B,)`` (use with ``BCEWithLogitsLoss``)."""
        if x.dim() != 2 or x.shape[1] != self.n_features:
            raise ValueError(
                f"KACQDCNN: expected input of shape (B, {self.n_features}); got {tuple(x.shape)}"
            )
        parts = []
        if self.classical_channel:
            parts.append(self.classical_forward(x))
        if self.quantum_channel:
            parts.append(self.quantum_forward(x))
        return self.head(torch.cat(parts, dim=-1)).squeeze(-1)

    def extra_repr(self) -> str:
        n = sum(p.numel() for p in self.parameters() if p.requires_grad)
        opts = [f"n_features={self.n_features}", f"n_qubits={self.n_qubits}", f"n_layers={self.n_layers}",
                f"engine={self.engine_name!r}"]
        for k, default in (("kan", "kan"), ("embedding", "amplitude"), ("quantum_channel", True),
                           ("classical_channel", True), ("bilstm", 2), ("lstm_bidirectional", True),
                           ("dropout", 0.2), ("pqc", "quantum")):
            v = getattr(self, k)
            if v != default:
                opts.append(f"{k}={v!r}")
        return ", ".join(opts) + f" | {n} weights"


# --------------------------------------------------------------------------- estimator
class KACQClassifier:
    """scikit-learn style binary classifier around :class:`KACQDCNN` with the paper's training.

    Training: ``BCEWithLogits`` (= sigmoid + BCE), Adam(``lr``), mini-batches of ``batch_size``,
    at most ``epochs`` epochs.  After every epoch the validation set is scored:

    * checkpoint: the weights with the best validation accuracy (ties keep the earlier epoch, as
      Keras ``ModelCheckpoint(save_best_only=True)``);
    * early stopping when validation loss has not improved for ``patience`` epochs;
    * ReduceLROnPlateau with backtracking: after ``lr_patience`` epochs without a validation-loss
      improvement the checkpointed weights are reloaded and the learning rate is halved
      (``min_lr`` 1e-10).

    At the end the model holds the weights chosen by ``restore`` (``"val_accuracy"``: the
    checkpoint, as the paper evaluates; ``"val_loss"``: the best-validation-loss weights;
    ``"last"``).  If no validation set is given, a stratified ``validation_fraction`` of the
    training rows is held out (never the test set).

    Args:
        epochs, batch_size, lr, patience, lr_patience, lr_factor: training recipe.
        restore: which weights to keep, see above.
        validation_fraction: used only when ``fit`` gets no ``X_val``.
        seed: seeds the initialisation, shuffling and dropout.
        verbose: tqdm progress bar over epochs.
        threads: ``torch.set_num_threads`` during fit/predict (None = leave as is).
        **model_kwargs: forwarded to :class:`KACQDCNN` (``n_layers``, ``engine``, ablations...).

    Attributes:
        model_ (KACQDCNN), classes_ (ndarray of the two labels), history_ (list of per-epoch dicts),
        best_epoch_ (int, 1-based epoch of the restored weights), n_features_in_ (int).

    Example:
        >>> import numpy as np
        >>> X = np.random.rand(40, 11); y = (X[:, 0] > 0.5).astype(int)
        >>> clf = KACQClassifier(epochs=2, seed=0, verbose=False).fit(X, y)  # doctest: +SKIP
        >>> clf.predict_proba(X[:3]).shape  # doctest: +SKIP
        (3, 2)
    """

    def __init__(self, *, epochs: int = 100, batch_size: int = 32, lr: float = 1e-3, patience: int = 10,
                 lr_patience: int = 5, lr_factor: float = 0.5, min_lr: float = 1e-10,
                 restore: str = "val_accuracy", validation_fraction: float = 0.1, seed: int | None = None,
                 verbose: bool = True, threads: int | None = None, **model_kwargs):
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.patience = patience
        self.lr_patience = lr_patience
        self.lr_factor = lr_factor
        self.min_lr = min_lr
        self.restore = restore
        self.validation_fraction = validation_fraction
        self.seed = seed
        self.verbose = verbose
        self.threads = threads
        self.model_kwargs = model_kwargs

    # sklearn plumbing --------------------------------------------------------------
    def get_params(self, deep: bool = True) -> dict:
        keys = ["epochs", "batch_size", "lr", "patience", "lr_patience", "lr_factor", "min_lr", "restore",
                "validation_fraction", "seed", "verbose", "threads"]
        d = {k: getattr(self, k) for k in keys}
        d.update(self.model_kwargs)
        return d

    def set_params(self, **params):
        for k, v in params.items():
            if hasattr(self, k) and k != "model_kwargs":
                setattr(self, k, v)
            else:
                self.model_kwargs[k] = v
        return self

    def __repr__(self) -> str:
        return "KACQClassifier(" + ", ".join(f"{k}={v!r}" for k, v in self.get_params().items()) + ")"

    def _check_X(self, X, fitted: bool) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2:
            raise ValueError(f"KACQClassifier: X must be 2-D (n_samples, n_features); got shape {X.shape}")
        if fitted and X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"KACQClassifier: X has {X.shape[1]} features, but the model was fitted with {self.n_features_in_}"
            )
        if not np.all(np.isfinite(X)):
            raise ValueError("KACQClassifier: X contains NaN or infinite values")
        return X

    def _encode_y(self, y) -> np.ndarray:
        y = np.asarray(y)
        if y.ndim != 1:
            raise ValueError(f"KACQClassifier: y must be 1-D; got shape {y.shape}")
        bad = ~np.isin(y, self.classes_)
        if bad.any():
            raise ValueError(f"KACQClassifier: y has labels {np.unique(y[bad])[:5]} not in classes_ {self.classes_}")
        return (y == self.classes_[1]).astype(np.float32)

    # training ------------------------------------------------------------------------
    def fit(self, X, y, X_val=None, y_val=None):
        """Train on ``(X, y)``; validation on ``(X_val, y_val)`` or a held-out part of ``X``."""
        if self.restore not in ("val_accuracy", "val_loss", "last"):
            raise ValueError(f"KACQClassifier: restore must be 'val_accuracy', 'val_loss' or 'last'; got {self.restore!r}")
        X = self._check_X(X, fitted=False)
        y = np.asarray(y)
        if len(y) != len(X):
            raise ValueError(f"KACQClassifier: X has {len(X)} rows but y has {len(y)}")
        classes = np.unique(y)
        if len(classes) != 2:
            raise ValueError(f"KACQClassifier: y must contain exactly 2 classes; got {classes.tolist()}")
        self.classes_ = classes
        self.n_features_in_ = X.shape[1]
        yb = self._encode_y(y)
        if X_val is None:
            from sklearn.model_selection import train_test_split

            X, X_val, yb, yv = train_test_split(X, yb, test_size=self.validation_fraction,
                                                random_state=self.seed, stratify=yb)
        else:
            X_val = self._check_X(X_val, fitted=True)
            yv = self._encode_y(y_val)
        old_threads = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            self._train(X, yb, X_val, yv)
        finally:
            torch.set_num_threads(old_threads)
        return self

    def _make_module(self, n_features: int) -> nn.Module:
        """The torch module to train (subclasses swap the architecture); needs ``logits``."""
        kwargs = dict(self.model_kwargs)
        kwargs.setdefault("n_features", n_features)
        return KACQDCNN(seed=self.seed, **kwargs)

    def _train(self, X, y, Xv, yv) -> None:
        gen = torch.Generator().manual_seed(self.seed if self.seed is not None else int(torch.seed() % 2**31))
        if self.seed is not None:
            torch.manual_seed(self.seed)  # dropout masks
        self.model_ = model = self._make_module(X.shape[1])
        Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
        Xvt, yvt = torch.from_numpy(np.asarray(Xv, np.float32)), torch.from_numpy(yv)
        try:  # the fused CPU kernel is ~4x faster than the default on these 3 M parameters
            opt = torch.optim.Adam(model.parameters(), lr=self.lr, fused=True)
        except (RuntimeError, TypeError, ValueError):
            opt = torch.optim.Adam(model.parameters(), lr=self.lr)
        lr = self.lr
        best_acc, best_acc_state, best_acc_epoch = -1.0, None, 0
        best_loss, best_loss_state, best_loss_epoch = math.inf, None, 0
        since_loss, since_lr = 0, 0
        self.history_ = []
        n = len(Xt)
        bar = range(self.epochs)
        if self.verbose:
            from tqdm.auto import tqdm

            bar = tqdm(bar, desc="KACQ-DCNN", unit="epoch")
        for epoch in bar:
            t0, c0 = time.perf_counter(), time.process_time()
            model.train()
            perm = torch.randperm(n, generator=gen)
            tot = 0.0
            for s in range(0, n, self.batch_size):
                idx = perm[s : s + self.batch_size]
                opt.zero_grad(set_to_none=True)
                loss = F.binary_cross_entropy_with_logits(model.logits(Xt[idx]), yt[idx])
                loss.backward()
                opt.step()
                tot += loss.item() * len(idx)
            model.eval()
            with torch.no_grad():
                zv = model.logits(Xvt)
                vloss = F.binary_cross_entropy_with_logits(zv, yvt).item()
                vacc = ((zv > 0).float() == yvt).float().mean().item()
            rec = {"epoch": epoch + 1, "loss": tot / n, "val_loss": vloss, "val_accuracy": vacc, "lr": lr,
                   "time_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}
            self.history_.append(rec)
            if self.verbose:
                bar.set_postfix(loss=f"{rec['loss']:.3f}", val_loss=f"{vloss:.3f}", val_acc=f"{vacc:.3f}")
            if vacc > best_acc:
                best_acc, best_acc_epoch = vacc, epoch + 1
                best_acc_state = copy.deepcopy(model.state_dict())
            if vloss < best_loss:
                best_loss, best_loss_epoch = vloss, epoch + 1
                best_loss_state = copy.deepcopy(model.state_dict())
                since_loss = since_lr = 0
            else:
                since_loss += 1
                since_lr += 1
            if since_loss >= self.patience:
                break
            if since_lr >= self.lr_patience and lr > self.min_lr:
                model.load_state_dict(best_acc_state)  # backtrack to the checkpoint
                lr = max(lr * self.lr_factor, self.min_lr)
                for g in opt.param_groups:
                    g["lr"] = lr
                since_lr = 0
        if self.restore == "val_accuracy":
            model.load_state_dict(best_acc_state)
            self.best_epoch_ = best_acc_epoch
        elif self.restore == "val_loss":
            model.load_state_dict(best_loss_state)
            self.best_epoch_ = best_loss_epoch
        else:
            self.best_epoch_ = len(self.history_)
        model.eval()

    # inference -----------------------------------------------------------------------
    def _check_fitted(self):
        if not hasattr(self, "model_"):
            raise ValueError("This KACQClassifier instance is not fitted yet. Call 'fit' first.")

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, shape ``(n_samples, 2)``, columns in ``classes_`` order."""
        self._check_fitted()
        X = self._check_X(X, fitted=True)
        self.model_.eval()
        out = []
        with torch.no_grad():
            for s in range(0, len(X), 1024):
                out.append(self.model_(torch.from_numpy(X[s : s + 1024])).double().numpy())
        p = np.concatenate(out) if out else np.zeros(0)
        return np.stack([1.0 - p, p], axis=1)

    def predict(self, X) -> np.ndarray:
        """Labels from ``classes_`` with threshold 0.5."""
        p = self.predict_proba(X)[:, 1]
        return self.classes_[(p > 0.5).astype(int)]

    def score(self, X, y) -> float:
        return float(np.mean(self.predict(X) == np.asarray(y)))
