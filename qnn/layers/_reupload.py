"""DataReUploadingLinear: Hamiltonian embedding + SU(2^n) data re-uploading (creep.md §2b).

Fast path: one ``eigh`` of the real symmetric data Hamiltonian per sample, reused by every
repetition (the state is evolved as V diag(e^{i t lam}) V^T psi, matrix-vector products only),
the trainable SU(2^n) gates built once per batch from Pauli bitmask tables, and a custom
backward whose data-gradient uses the divided-difference (Daleckii-Krein) form, exact also
where eigenvalues repeat (zero-padded inputs, duplicated rows).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from qnn.circuit import Circuit, Param
from qnn.layers._common import circuit_engine, from_classical, paper_layer_dtypes, pos_int, randn_reset
from qnn.pauli import divided_difference_expi, parallel_map, pauli_decompose, pauli_labels, pauli_matrices, su_gates

__all__ = ["DataReUploadingLinear"]

_MAX_QUBITS = 8


_CHUNK = 16  # samples per work item: V (16 x 2^n x 2^n) stays in cache across the repetitions


class _ReuploadEvolve(torch.autograd.Function):
    """psi_L = W_L U ... W_1 U psi_0 with U = exp(i t H) = V diag(e^{i t lam}) V^T per sample.

    Inputs: H (B, N, N) real symmetric, W (L, N, N) complex, psi0 (N,) complex (constant),
    t (float).  Output (B, N) complex.  The batch is processed in chunks of ``_CHUNK`` samples
    (in parallel over ``torch.get_num_threads()`` threads on CPU): per chunk one ``eigh``, then
    all repetitions as mat-vecs while the chunk's eigenvectors are cache-resident.
    """

    @staticmethod
    def forward(ctx, h, w, psi0, t):
        chunks = list(h.split(_chunk_size(h)))
        res = parallel_map(lambda hc: _forward_chunk(hc, w, psi0, t), chunks)
        ctx.t = t
        ctx.chunks = res  # (lam, v, ph, coords, phis) per chunk; saved as plain tensors
        ctx.save_for_backward(w)
        return torch.cat([r[-1] for r in res])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        (w,) = ctx.saved_tensors
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        sizes = [r[0].shape[0] for r in ctx.chunks]
        items = list(zip(ctx.chunks, grad.split(sizes)))
        res = parallel_map(lambda it: _backward_chunk(it[0], it[1], w, ctx.t, need_h, need_w), items)
        gh = torch.cat([r[0] for r in res]) if need_h else None
        gw = torch.stack([r[1] for r in res]).sum(0) if need_w else None
        return gh, gw, None, None


def _chunk_size(h: torch.Tensor) -> int:
    b = max(h.shape[0], 1)
    if h.device.type != "cpu":
        return b
    threads = max(torch.get_num_threads(), 1)
    n = max(round(b / _CHUNK), 1)
    n = -(-n // threads) * threads  # a multiple of the thread count: balanced work items
    return -(-b // n)


def _forward_chunk(h, w, psi0, t):
    lam, v = torch.linalg.eigh(h)  # once per sample, reused by all repetitions
    ph = torch.polar(torch.ones_like(lam), t * lam).to(w.dtype)  # (b, N)
    vt = v.transpose(-1, -2)
    b, n = lam.shape
    psi = psi0.to(w.dtype).expand(b, n)
    coords = []  # V^T psi_{l-1}: the state entering each data gate, in H's eigenbasis
    phis = []    # U psi_{l-1}: the state entering each trainable gate
    wt = w.transpose(1, 2).contiguous()
    for l in range(w.shape[0]):
        c = _rmatvec(vt, psi)
        phi = _rmatvec(v, ph * c)
        psi = phi @ wt[l]
        coords.append(c)
        phis.append(phi)
    return lam, v, ph, torch.stack(coords, 1), torch.stack(phis, 1), psi


def _backward_chunk(saved, g, w, t, need_h, need_w):
    lam, v, ph, coords, phis, _ = saved
    vt = v.transpose(-1, -2)
    n_rep = w.shape[0]
    gw = torch.empty_like(w) if need_w else None
    a_all = []
    wc = w.conj().resolve_conj()
    for l in reversed(range(n_rep)):
        if need_w:
            gw[l] = g.transpose(0, 1) @ phis[:, l].conj()  # sum_b g_b phi_b^H
        g_phi = g @ wc[l]                                  # W^H g
        a = _rmatvec(vt, g_phi)                            # V^T g_phi
        a_all.append(a)
        g = _rmatvec(v, ph.conj() * a)                     # U^H g_phi
    gh = None
    if need_h:
        # d(exp(itH) psi)/dH by Daleckii-Krein: V (Gamma o (V^T dH V)) V^T psi, summed over reps;
        # adjoint: V (conj(Gamma) o sum_l a_l b_l^T) V^T with b_l = V^T conj(psi_{l-1})
        a_st = torch.stack(a_all[::-1], 1)  # (b, L, N)
        m = a_st.transpose(1, 2) @ coords.conj()
        gamma = divided_difference_expi(lam, t)
        r = (gamma.conj() * m).real.to(v.dtype)
        gh = v @ r @ vt
    return gh, gw


def _rmatvec(m: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """real (b, N, N) @ complex (b, N) -> complex (b, N).

    Done in row form, [Re z; Im z] (b, 2, N) @ m^T, one real bmm: MKL runs this GEMV-like
    product about 3x faster than m @ (b, N, 2)."""
    rows = torch.view_as_real(z).transpose(-1, -2)
    out = torch.matmul(rows, m.transpose(-1, -2))
    return torch.complex(out[..., 0, :], out[..., 1, :])


class DataReUploadingLinear(nn.Module):
    """The paper's data re-uploading layer, a drop-in for ``nn.Linear(in_features, out_features)``.

    ``n`` qubits; the sample ``x`` is zero-padded to ``4**n``, reshaped row-major to
    ``X`` (2^n, 2^n), ``H = (X + X^T) / 2``, ``U(x) = exp(i t H)`` with ``t = 1 / n_reps``.
    From ``|+>^n`` each repetition ``l`` applies ``U(x)`` then
    ``W_l = exp(i sum_k theta[l, k] P_k)`` (all ``4**n - 1`` non-identity Pauli strings, IXYZ
    order, no 1/2).  Output ``k`` is ``|psi_k|^2 + bias_k`` for ``k < out_features``
    (basis index ``k`` big-endian: the first Kronecker factor is the most significant bit).

    Args:
        in_features (int): input size (``<= 4**n``).
        out_features (int): output size (``<= 2**n``).
        n_qubits (int | None): default: smallest ``n`` with ``4**n >= in_features`` and
            ``2**n >= out_features``; at most 8 (the per-sample ``2^n x 2^n`` eigensystem and the
            ``(4^n - 1)``-parameter gates grow as 4^n).
        n_reps (int): repetitions (default 10).
        mode (str): ``"physical"`` (default; real ``theta``, unitary gates) or ``"paper"``
            (complex ``theta`` as in the authors' code, non-unitary ``W_l``).
        bias (bool): add a real bias (randn init, as in the paper).
        seed (int | None): seeds ``reset_parameters``.
        device, dtype: factory kwargs; ``dtype`` is the real dtype (float32 default or
            float64); paper-mode ``theta`` is the matching complex dtype.
        engine (str | Engine | None): None (default): the dense torch fast path.  An engine
            name or instance: the circuit path (:meth:`reupload_circuit`): ``H`` on every wire,
            then per repetition the data gate ``PauliExp`` with coefficients ``t c_P(x)``,
            ``c_P(x) = Tr(P H(x)) / 2^n`` (a fixed linear map of ``x``, the circuit's inputs;
            the identity part is a global phase) and the trainable ``PauliExp(theta_l)`` over
            all ``4^n - 1`` words; readout: basis probabilities.  ``mode="paper"`` is refused
            there (not unitary).
        engine_options (dict | None): engine constructor options (with an engine name).

    Shape:
        input ``(*, in_features)`` float; output ``(*, out_features)`` in the layer's real dtype.

    Costs per forward: one real symmetric ``eigh`` of size 2^n per sample, ``n_reps`` SU(2^n)
    gates per batch, ``4 n_reps`` real (2^n x 2^n) mat-vecs per sample.

    Example:
        >>> import torch, qnn
        >>> layer = qnn.layers.DataReUploadingLinear(10, 3, n_reps=2, seed=0)
        >>> layer
        DataReUploadingLinear(in_features=10, out_features=3, n_qubits=2, n_reps=2, mode=physical, bias=True)
        >>> layer(torch.randn(4, 10)).shape
        torch.Size([4, 3])
        >>> layer.unitarity_error() < 1e-5
        True
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        n_qubits: int | None = None,
        n_reps: int = 10,
        mode: str = "physical",
        bias: bool = True,
        seed: int | None = None,
        device: Any = None,
        dtype: torch.dtype | None = None,
        engine: Any = None,
        engine_options: dict | None = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self._engine = circuit_engine(name, engine, engine_options, mode)
        in_features = pos_int(in_features, "in_features", name)
        out_features = pos_int(out_features, "out_features", name)
        n_reps = pos_int(n_reps, "n_reps", name)
        dtype, pdtype = paper_layer_dtypes(name, mode, seed, dtype)
        need = max(math.ceil(math.log(in_features, 4) - 1e-12), math.ceil(math.log2(out_features) - 1e-12), 1)
        while 4**need < in_features or 2**need < out_features:
            need += 1
        if n_qubits is None:
            n_qubits = need
        n_qubits = pos_int(n_qubits, "n_qubits", name)
        if n_qubits > _MAX_QUBITS:
            d = 2**n_qubits
            per_sample = 6 * d * d * (8 if dtype == torch.float64 else 4)
            raise ValueError(
                f"{name}: n_qubits must be <= {_MAX_QUBITS}; got {n_qubits} (in_features={in_features}, "
                f"out_features={out_features}): each sample needs a dense {d}x{d} Hamiltonian "
                f"eigensystem (~{per_sample / 2**20:.0f} MiB per sample with the backward) and each "
                f"gate has 4**{n_qubits}-1 = {4**n_qubits - 1} parameters; reduce in_features to at most "
                f"4**{_MAX_QUBITS} = {4**_MAX_QUBITS} (e.g. pooling or a classical nn.Linear before this layer)")
        if 4**n_qubits < in_features:
            raise ValueError(f"{name}: in_features must be <= 4**n_qubits = {4**n_qubits}; got {in_features}")
        if 2**n_qubits < out_features:
            raise ValueError(f"{name}: out_features must be <= 2**n_qubits = {2**n_qubits}; got {out_features}")
        self.in_features = in_features
        self.out_features = out_features
        self.n_qubits = n_qubits
        self.n_reps = n_reps
        self.mode = mode
        self.seed = seed
        self.t = 1.0 / n_reps
        self.weight = nn.Parameter(torch.empty(n_reps, 4**n_qubits - 1, device=device, dtype=pdtype))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_features, device=device, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.circuit = self.reupload_circuit() if self._engine is not None else None
        self.reset_parameters()

    @property
    def engine(self):
        """The circuit engine, or None for the dense path."""
        return None if self._engine is None else self._engine.engine

    def reupload_circuit(self) -> Circuit:
        """The layer as a :class:`~qnn.circuit.Circuit`: inputs are the data Hamiltonian's
        4^n - 1 Pauli coefficients (:meth:`data_coefficients`), weights the flattened
        ``weight`` (n_reps, 4^n - 1); outputs the 2^n basis probabilities."""
        n, words = self.n_qubits, pauli_labels(self.n_qubits)
        c = Circuit(n)
        data = c.new_inputs(len(words))
        theta = c.new_weights("theta", (self.n_reps, len(words)))
        for w in range(n):
            c.add("H", w)
        for l in range(self.n_reps):
            c.add_pauli_exp(range(n), words, [Param.input(i, scale=self.t) for i in data])
            c.add_pauli_exp(range(n), words, [Param.weight(k) for k in theta[l * len(words):(l + 1) * len(words)]])
        c.measure_probs()
        return c

    def data_coefficients(self, x: torch.Tensor) -> torch.Tensor:
        """``c_P(x) = Tr(P H(x)) / 2^n`` for the 4^n - 1 non-identity strings, (B, 4^n - 1): a
        fixed linear map of ``x`` (``H(x) = c_I I + sum_P c_P P``)."""
        return pauli_decompose(self.hamiltonian(x), self.n_qubits)

    @property
    def real_dtype(self) -> torch.dtype:
        return self.weight.real.dtype if self.weight.is_complex() else self.weight.dtype

    @property
    def complex_dtype(self) -> torch.dtype:
        return torch.complex128 if self.real_dtype == torch.float64 else torch.complex64

    def reset_parameters(self) -> None:
        """randn ``theta`` (real randn cast to complex in paper mode) and randn bias; repeatable with ``seed``."""
        randn_reset(self)

    def gates(self) -> torch.Tensor:
        """The ``n_reps`` trainable gates ``W_l``, (n_reps, 2^n, 2^n) complex (once per batch)."""
        return su_gates(self.weight, self.n_qubits)

    def unitarity_error(self) -> float:
        """max |W_l W_l^H - I| over the trainable gates (~1e-6 float32 in physical mode)."""
        with torch.no_grad():
            w = self.gates()
            eye = torch.eye(w.shape[-1], dtype=w.dtype, device=w.device)
            return float((w @ w.mH - eye).abs().max())

    def hamiltonian(self, x: torch.Tensor) -> torch.Tensor:
        """H(x) = (X + X^T)/2 for each sample, (B, 2^n, 2^n) in the layer's real dtype."""
        d = 2**self.n_qubits
        flat = x.reshape(-1, self.in_features).to(self.real_dtype)
        pad = d * d - self.in_features
        if pad:
            flat = torch.nn.functional.pad(flat, (0, pad))
        xm = flat.reshape(-1, d, d)
        return 0.5 * (xm + xm.transpose(1, 2))

    def _check(self, x: torch.Tensor) -> None:
        name = type(self).__name__
        if not torch.is_tensor(x):
            raise TypeError(f"{name}: expected a torch.Tensor input; got {type(x).__name__}")
        if x.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"{name}: expected a float32 or float64 input; got {x.dtype}")
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            got = "a scalar" if x.dim() == 0 else x.shape[-1]
            raise ValueError(f"{name}: expected input with last dimension {self.in_features}, got {got}")
        if x.numel() and not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name}: input contains NaN or inf")

    def _plus(self) -> torch.Tensor:
        d = 2**self.n_qubits
        return torch.full((d,), 1.0 / math.sqrt(d), dtype=self.complex_dtype, device=self.weight.device)

    def _readout(self, psi: torch.Tensor, lead) -> torch.Tensor:
        out = psi[:, : self.out_features].abs().square()
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*lead, self.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        lead = x.shape[:-1]
        if self._engine is not None:
            flat = x.reshape(-1, self.in_features)
            if flat.shape[0] == 0:
                return self._readout(self._plus().expand(0, -1), lead) + 0.0 * self.weight.sum()
            probs = self._engine.engine.run(self.circuit, self.data_coefficients(flat), self.weight.reshape(-1))
            out = probs[:, : self.out_features].to(self.real_dtype)
            if self.bias is not None:
                out = out + self.bias
            return out.reshape(*lead, self.out_features)
        h = self.hamiltonian(x)
        if h.shape[0] == 0:
            return self._readout(self._plus().expand(0, -1), lead) + 0.0 * self.weight.real.sum()
        psi = _ReuploadEvolve.apply(h, self.gates(), self._plus(), self.t)
        return self._readout(psi, lead)

    def forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        """The straightforward computation: per sample and per repetition ``matrix_exp(i t H)``,
        gates from an explicit Pauli stack, plain autograd.  Slow; for tests (small n)."""
        self._check(x)
        lead = x.shape[:-1]
        paulis = pauli_matrices(self.n_qubits, self.complex_dtype).to(self.weight.device)
        gen = torch.einsum("lk,kij->lij", self.weight.to(self.complex_dtype), paulis)
        h = self.hamiltonian(x).to(self.complex_dtype)
        rows = []
        for b in range(h.shape[0]):
            psi = self._plus()
            for l in range(self.n_reps):
                psi = torch.linalg.matrix_exp(1j * self.t * h[b]) @ psi
                psi = torch.linalg.matrix_exp(1j * gen[l]) @ psi
            rows.append(psi)
        psi = torch.stack(rows) if rows else self._plus().expand(0, -1)
        return self._readout(psi, lead)

    @classmethod
    def from_linear(cls, linear: nn.Linear, *, copy_bias: bool = True, **kwargs) -> "DataReUploadingLinear":
        """The re-uploading layer for a classical ``nn.Linear``: ``in_features``,
        ``out_features``, bias flag and device taken from ``linear`` (its bias copied as a warm
        start with ``copy_bias``; the paper starts from a randn bias, ``copy_bias=False``).

        Example:
            >>> import torch, qnn
            >>> qnn.layers.DataReUploadingLinear.from_linear(torch.nn.Linear(12544, 10), seed=0)
            DataReUploadingLinear(in_features=12544, out_features=10, n_qubits=7, n_reps=10, mode=physical, bias=True)
        """
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"{cls.__name__}.from_linear: expected an nn.Linear; got {type(linear).__name__}")
        return from_classical(cls, linear, (linear.in_features, linear.out_features), kwargs, copy_bias)

    def extra_repr(self) -> str:
        eng = "" if self._engine is None else f", engine={getattr(self.engine, 'name', type(self.engine).__name__)}"
        return (f"in_features={self.in_features}, out_features={self.out_features}, n_qubits={self.n_qubits}, "
                f"n_reps={self.n_reps}, mode={self.mode}, bias={self.bias is not None}{eng}")

