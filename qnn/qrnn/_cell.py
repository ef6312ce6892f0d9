"""QRNN cell and sequence model (Bausch 2020), fast batched real-state simulation.

Register layout (``N = I + W`` lanes, lane 0 = most significant bit): inout lanes ``0..I-1``
then workspace lanes ``I..I+W-1``; a full basis index is ``word * 2**W + w``.

Between steps the inout lanes are exactly ``|0..0>`` (they are measured and reset), so the
recurrent state ``hx`` is the real workspace state of shape ``(B, 2**W)``.  During the input
and kernel stages the inout lanes hold the *classical* input word ``x_t`` (the X gates
write a basis state), so those neurons are simulated on ``2**W`` amplitudes with their angle
tables conditioned on ``x_t`` (spec §6 "keep the inputs classical"); the output stage
runs on the full ``2**N`` state.  This is exactly the circuit of spec §2: the input
write/un-write are index permutations ``w -> (x XOR word) * 2**W + w`` that this layout
turns into a table lookup.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from qnn.qrnn._neuron import MODES, QuantumNeuron, num_subsets, sample_attempts, subset_sum

__all__ = ["QRNNCell", "QRNN", "CellOutput", "QRNNOutput", "num_parameters"]


def num_parameters(hidden_size: int, input_size: int, stages: int, degree: int) -> int:
    """Parameter count of a QRNN cell (spec §2):
    ``(W(S+1)+I)(1+sum_{j=1}^d C(W+I-1, j)) + S W``.

    Example:
        >>> num_parameters(8, 2, 2, 2)
        1212
    """
    W, I, S, d = hidden_size, input_size, stages, degree
    return (W * (S + 1) + I) * (1 + sum(math.comb(W + I - 1, j) for j in range(1, d + 1))) + S * W


class CellOutput(NamedTuple):
    """One QRNN step.

    Attributes:
        probs: ``(B, 2**I)`` distribution over the output word, read before the measurement.
        hx: ``(B, 2**W)`` workspace state after the measurement (normalised).
        word: ``(B,)`` the measured (postselected or sampled) word.
        postsel_prob: ``(B,)`` probability of ``word`` (``probs[b, word[b]]``).
        success_prob: ``(B,)`` probability that every neuron of the step succeeds in one pass.
        neuron_success: ``(B, n_neurons)`` per-neuron pass probability, or ``None`` if not tracked.
    """

    probs: Tensor
    hx: Tensor
    word: Tensor
    postsel_prob: Tensor
    success_prob: Tensor
    neuron_success: Tensor | None = None


class QRNNOutput(NamedTuple):
    """A QRNN run over a sequence of length ``L`` (``L - 1`` steps).

    Attributes:
        probs: ``(B, 2**I, L-1)``; ``probs[..., t]`` predicts word ``t+1`` from words ``0..t``.
        words: ``(B, L-1)`` measured words (targets where postselected, else sampled/argmax).
        min_postsel_prob: scalar, the smallest ``probs[b, word, t]`` over postselected steps
            (``1.0`` if no step was postselected).
        postsel_probs: ``(B, L-1)`` probability of the measured word at every step.
        success_prob: ``(B, L-1)`` per-step probability that all neurons succeed in one pass.
        aa_rounds: ``(B, L-1)`` estimated amplitude-amplification rounds per step
            (sum over neurons of ``1/sqrt(p_neuron)``), or ``None`` unless ``track_neurons``.
        hx: ``(B, 2**W)`` final workspace state.
        attempts: ``(B, L-1)`` RUS attempts per step in ``sampled`` mode (else ``None``).
    """

    probs: Tensor
    words: Tensor
    min_postsel_prob: Tensor
    postsel_probs: Tensor
    success_prob: Tensor
    aa_rounds: Tensor | None
    hx: Tensor
    attempts: Tensor | None = None


def _kron_ry(theta: Tensor) -> Tensor:
    """Kronecker product ``Ry(theta_0) x ... x Ry(theta_{W-1})`` (lane 0 = MSB)."""
    c, s = torch.cos(theta / 2), torch.sin(theta / 2)
    K = None
    for j in range(theta.shape[0]):
        R = torch.stack((torch.stack((c[j], -s[j])), torch.stack((s[j], c[j]))))
        K = R if K is None else torch.kron(K, R)
    return K


class _NeuronStage(torch.autograd.Function):
    """One stage — optional ``Ry`` on every workspace lane, then ``W`` sequential neurons — as a
    single autograd node with a hand-written backward.

    The state is stored batch-last, ``psi (2^W, B)``, so every half-view below is contiguous
    in runs of at least ``B`` numbers.  Both a neuron and an ``Ry(theta)`` on workspace lane ``j``
    act on the view ``(2^j, 2, 2^(W-1-j) * B)`` of ``psi`` as::

        new0 = c * v0 - s * v1,    new1 = c * v1 + s * v0

    for a rotation with the scalars ``c, s = cos(theta/2), sin(theta/2)`` (``R[j]``), for neuron ``j``
    with the tables ``c = T[j, 0]``, ``s = T[j, 1]`` viewed as ``(2^j, 2^(W-1-j) * B)``; ``T`` has shape
    ``(W, 2, 2^(W-1), B)`` (the out bit removed from the basis index) and ``R`` shape ``(W, 2)`` or
    ``(0, 2)`` (no rotations).
    """

    @staticmethod
    def _fwd_op(src, dst, c, s, a, r):
        v0, v1 = src.view(a, 2, r).unbind(1)
        o0, o1 = dst.view(a, 2, r).unbind(1)
        torch.mul(v0, c, out=o0)
        o0.addcmul_(s, v1, value=-1.0) if isinstance(s, Tensor) and s.dim() else o0.add_(v1, alpha=-float(s))
        torch.mul(v1, c, out=o1)
        o1.addcmul_(s, v0) if isinstance(s, Tensor) and s.dim() else o1.add_(v0, alpha=float(s))

    @staticmethod
    def forward(ctx, psi: Tensor, T: Tensor, R: Tensor) -> Tensor:
        W = T.shape[0]
        nr = R.shape[0]
        D, B = psi.shape
        states = psi.new_empty(nr + W + 1, D, B)
        states[0].copy_(psi)
        Rl = R.tolist()
        for i in range(nr + W):
            j = i if i < nr else i - nr
            a, r = 1 << j, (D >> (j + 1)) * B
            if i < nr:
                c, s = Rl[i]
            else:
                c, s = T[j, 0].view(a, r), T[j, 1].view(a, r)
            _NeuronStage._fwd_op(states[i], states[i + 1], c, s, a, r)
        ctx.save_for_backward(T, R, states)
        return states[nr + W].clone()

    @staticmethod
    def backward(ctx, g: Tensor):
        T, R, states = ctx.saved_tensors
        W = T.shape[0]
        nr = R.shape[0]
        D, B = g.shape
        gT = torch.empty_like(T) if ctx.needs_input_grad[1] else None
        gR = [] if ctx.needs_input_grad[2] else None
        Rl = R.tolist()
        g = g.contiguous()
        ng = torch.empty_like(g)
        for i in range(nr + W - 1, -1, -1):
            j = i if i < nr else i - nr
            a, r = 1 << j, (D >> (j + 1)) * B
            v0, v1 = states[i].view(a, 2, r).unbind(1)
            g0, g1 = g.view(a, 2, r).unbind(1)
            n0, n1 = ng.view(a, 2, r).unbind(1)
            if i < nr:
                c, s = Rl[i]
                if gR is not None:
                    gf, vf = g.view(a, 2, r), states[i].view(a, 2, r)
                    gc = (gf * vf).sum()
                    gs = (g1 * v0).sum() - (g0 * v1).sum()
                    gR.append(torch.stack((gc, gs)))
                torch.mul(g0, c, out=n0)
                n0.add_(g1, alpha=s)
                torch.mul(g1, c, out=n1)
                n1.add_(g0, alpha=-s)
            else:
                c, s = T[j, 0].view(a, r), T[j, 1].view(a, r)
                if gT is not None:
                    gc, gs = gT[j, 0].view(a, r), gT[j, 1].view(a, r)
                    torch.mul(g0, v0, out=gc)
                    gc.addcmul_(g1, v1)
                    torch.mul(g1, v0, out=gs)
                    gs.addcmul_(g0, v1, value=-1.0)
                torch.mul(c, g0, out=n0)
                n0.addcmul_(s, g1)
                torch.mul(c, g1, out=n1)
                n1.addcmul_(s, g0, value=-1.0)
            g, ng = ng, g
        if gR is not None:
            gR = torch.stack(gR[::-1]) if gR else torch.zeros_like(R)
        return g, gT, gR


class QRNNCell(nn.Module):
    r"""One step of the quantum recurrent neural network of Bausch (NeurIPS 2020).

    A step writes the input word onto the ``I`` inout lanes, runs an input stage (one
    :class:`QuantumNeuron` per workspace lane), ``S`` kernel stages (a trainable ``Ry`` on each
    workspace lane, then one neuron per workspace lane), un-writes the input, runs an output
    stage (one neuron per inout lane), reads the distribution over the output word and finally
    measures the inout lanes (postselecting on a target, or sampling / argmax) and resets them.

    The recurrent state ``hx`` is the real workspace state ``(B, 2**W)``; ``hx=None`` is ``|0..0>``.

    Args:
        input_size (int): ``I``, inout lanes (bits per word).
        hidden_size (int): ``W``, workspace lanes.
        stages (int): ``S``, kernel stages (default 2).
        order (int): RUS order of every neuron (default 2).
        degree (int): polynomial degree of every neuron (default 2).
        mode (str): neuron semantics, ``"postselect"`` (default, the paper's), ``"unitary"`` or
            ``"sampled"`` (see :class:`QuantumNeuron`).
        max_attempts (int): RUS retry budget in ``sampled`` mode.
        device, dtype: factory kwargs.

    Shape:
        - input: ``(B, I)`` or ``(I,)`` bits (0/1), MSB first.
        - hx: ``(B, 2**W)`` or ``(2**W,)``, or ``None``.
        - target: ``(B,)`` or ``()`` integer words in ``[0, 2**I)``, or ``None`` (then sample).

    Example:
        >>> _ = torch.manual_seed(0)
        >>> cell = QRNNCell(2, 3, stages=1, order=2, degree=2)
        >>> out = cell(torch.tensor([[1, 0], [0, 1]]), target=torch.tensor([0, 3]))
        >>> out.probs.shape, out.hx.shape, sum(p.numel() for p in cell.parameters())
        (torch.Size([2, 4]), torch.Size([2, 8]), 91)
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        stages: int = 2,
        order: int = 2,
        degree: int = 2,
        mode: str = "postselect",
        max_attempts: int = 100,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        for name, val, lo in (
            ("input_size", input_size, 1),
            ("hidden_size", hidden_size, 1),
            ("stages", stages, 0),
            ("order", order, 1),
            ("degree", degree, 1),
        ):
            if not isinstance(val, int) or isinstance(val, bool) or val < lo:
                raise ValueError(f"QRNNCell: {name} must be an int >= {lo}; got {val!r}")
        if mode not in MODES:
            raise ValueError(f"QRNNCell: mode must be one of {list(MODES)}; got {mode!r}")
        if input_size + hidden_size > 24:
            raise ValueError(
                f"QRNNCell: input_size + hidden_size must be <= 24 lanes; got {input_size + hidden_size}"
            )
        self.input_size = I = input_size
        self.hidden_size = W = hidden_size
        self.stages = stages
        self.order = order
        self.degree = degree
        self.mode = mode
        self.max_attempts = int(max_attempts)
        N = self.n_qubits = I + W
        fk = {"device": device, "dtype": dtype}
        kw = dict(degree=degree, order=order, mode=mode, max_attempts=max_attempts, **fk)
        outs = [I + j for _ in range(stages + 1) for j in range(W)] + list(range(I))
        self.neurons = nn.ModuleList([QuantumNeuron(N, o, **kw) for o in outs])
        self.unitary_theta = nn.Parameter(torch.empty(stages, W, **fk))
        # index/sign tables, rebuilt on .to(device) as buffers (not saved in state_dict)
        sh = torch.tensor([N - 1 - o for o in outs]).view(-1, 1)
        x = torch.arange(1 << N).view(1, -1)

        low = (1 << sh) - 1
        src = ((x >> (sh + 1)) << sh) | (x & low)
        self.register_buffer("_src_index", src, persistent=False)
        self.register_buffer("_word_weights", 2 ** torch.arange(I - 1, -1, -1), persistent=False)
        self.reset_parameters()

    # ------------------------------------------------------------------ parameters
    def reset_parameters(
        self, theta_std: float = 0.1, phi_std: float = 0.01, unitary_std: float = 0.01
    ) -> None:
        """Spec init: ``theta ~ N(0, 0.1)``, ``phi ~ N(0, 0.01)``, unitary ``theta ~ N(0, 0.01)``."""
        for n in self.neurons:
            n.reset_parameters(theta_std, phi_std)
        with torch.no_grad():
            if unitary_std > 0:
                self.unitary_theta.normal_(0.0, unitary_std)
            else:
                self.unitary_theta.zero_()

    @property
    def num_neurons(self) -> int:
        return self.hidden_size * (self.stages + 1) + self.input_size

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, stages={self.stages}, order={self.order}, degree={self.degree}"
        if self.mode != "postselect":
            s += f", mode={self.mode!r}"
        n = sum(p.numel() for p in self.parameters())
        return s + f" | {n} weights, {self.n_qubits + self.order} qubits"

    # ------------------------------------------------------------------ tables
    def tables(self) -> dict:
        """Per-neuron branch tables for one forward pass (they depend on the parameters only).

        Returns a dict with

        * ``ws``: ``(W(S+1) * 2 * 2**(W-1), 2**I)`` the ``(c, s)`` of every workspace neuron for every
          basis state of the other workspace lanes (the out bit removed) and every input word;
        * ``F``: ``(2**I, 2**W)`` the output stage in closed form: since the inout lanes start in
          ``|0..0>`` and output neuron ``o`` only sees earlier output lanes set, the amplitude of
          word ``m`` is ``psi_w * F[m, w]`` with ``F[m] = prod_o (c_o if m_o = 0 else s_o)``;
        * ``F_partial``: the same product after the first ``o + 1`` output neurons (for tracking);
        * ``kernel``: ``(S, 2**W, 2**W)`` unitary-layer matrices (per-lane angles if ``W > 10``);
        * ``log_scale2``: ``log`` of the constant factor applied to ``c^2 + s^2`` (cancels in the
          renormalisation; keeps unnormalised amplitudes around 1);
        * ``raw``: unscaled ``(c, s)`` of the same layout as ``ws`` (only needed for tracking).
        """
        I, W, N = self.input_size, self.hidden_size, self.n_qubits
        phi = torch.stack([n.phi for n in self.neurons])
        theta = torch.stack([n.theta for n in self.neurons])
        poly = subset_sum(phi, N - 1, self.degree)
        eta = poly.gather(1, self._src_index) + (theta + math.pi / 2).unsqueeze(1)
        half = eta / 2
        p = 1 << self.order
        c_raw, s_raw = torch.cos(half) ** p, torch.sin(half) ** p
        if self.mode == "unitary":
            r = torch.sqrt(c_raw * c_raw + s_raw * s_raw)
            c, s = c_raw / r, s_raw / r
            scale = 1.0
        else:
            # a constant factor (cancels in the renormalisation) keeps c^2+s^2 within 2^(+-(2^ord-1)/2)
            scale = 2.0 ** ((p - 1) / 2)
            c, s = c_raw * scale, s_raw * scale
        nw = W * (self.stages + 1)

        def ws_half(cc, ss):
            out = []
            for k in range(nw):
                j = k % W
                v = torch.stack((cc[k], ss[k])).view(2, 1 << I, 1 << j, 2, 1 << (W - 1 - j))[:, :, :, 0]
                out.append(v.reshape(2, 1 << I, -1))
            return torch.stack(out).permute(0, 1, 3, 2).reshape(-1, 1 << I)  # (nW*2*2^(W-1), 2^I)

        t = {"ws": ws_half(c, s), "log_scale2": math.log(scale * scale), "mode": self.mode}
        t["ws_stage"] = t["ws"].split(W * (1 << W), 0)
        # output stage in closed form
        co = c[nw:].view(I, 1 << I, 1 << W)
        so = s[nw:].view(I, 1 << I, 1 << W)
        F_partial = []
        prev = None
        for o in range(I):
            rows = []
            for m in range(1 << (o + 1)):
                prefix = m >> 1  # bits of lanes 0..o-1
                word = prefix << (I - o)  # inout basis with lanes >= o at 0
                f = co[o, word] if (m & 1) == 0 else so[o, word]
                rows.append(f if prev is None else prev[prefix] * f)
            prev = torch.stack(rows)
            F_partial.append(prev)
        t["F"] = prev
        t["F_partial"] = F_partial
        t["raw"] = (c_raw, s_raw, ws_half(c_raw, s_raw), nw)
        th = self.unitary_theta
        t["kernel_cs"] = torch.stack((torch.cos(th / 2), torch.sin(th / 2)), -1)  # (S, W, 2)
        t["no_rot"] = th.new_zeros(0, 2)
        if self.stages:
            if W <= 10:
                t["kernel"] = torch.stack([_kron_ry(th) for th in self.unitary_theta])
            else:
                t["kernel"] = self.unitary_theta
        return t

    # ------------------------------------------------------------------ validation
    def _check_bits(self, input: Tensor, who: str = "QRNNCell") -> Tensor:
        if not isinstance(input, Tensor):
            raise TypeError(f"{who}: input must be a torch.Tensor; got {type(input).__name__}")
        if input.dim() not in (1, 2):
            raise ValueError(f"{who}: Expected input to be 1D or 2D, got {input.dim()}D instead")
        if input.shape[-1] != self.input_size:
            raise ValueError(
                f"{who}: Expected input with last dimension input_size={self.input_size}; "
                f"got {input.shape[-1]}"
            )
        if input.is_complex() or not bool(((input == 0) | (input == 1)).all()):
            raise ValueError(f"{who}: input must be binary (0/1 bits); got values outside {{0, 1}}")
        return input

    def _check_hx(self, hx: Tensor | None, B: int, unbatched: bool, ref: Tensor) -> Tensor:
        dim = 1 << self.hidden_size
        dtype = self.unitary_theta.dtype
        if hx is None:
            h = torch.zeros(B, dim, dtype=dtype, device=ref.device)
            h[:, 0] = 1.0
            return h
        if not isinstance(hx, Tensor):
            raise TypeError(f"QRNNCell: hx must be a torch.Tensor or None; got {type(hx).__name__}")
        if hx.dim() not in (1, 2):
            raise ValueError(f"QRNNCell: Expected hx to be 1D or 2D, got {hx.dim()}D instead")
        if (hx.dim() == 1) != unbatched:
            raise ValueError(
                f"QRNNCell: For {'unbatched 1-D' if unbatched else 'batched 2-D'} input, hx should also be "
                f"{'1-D' if unbatched else '2-D'} but got {hx.dim()}-D tensor"
            )
        h = hx.unsqueeze(0) if unbatched else hx
        if h.shape != (B, dim):
            raise ValueError(f"QRNNCell: Expected hx of shape ({B}, {dim}); got {tuple(h.shape)}")
        if h.is_complex():
            raise TypeError("QRNNCell: hx must be a real tensor (all QRNN amplitudes are real); got complex")
        return h

    def _check_words(self, words: Tensor, name: str, who: str) -> Tensor:
        if not isinstance(words, Tensor):
            raise TypeError(f"{who}: {name} must be a torch.Tensor; got {type(words).__name__}")
        if words.is_floating_point() or words.is_complex() or words.dtype == torch.bool:
            raise TypeError(f"{who}: {name} must be an integer tensor of words; got dtype {words.dtype}")
        hi = 1 << self.input_size
        if words.numel() and (int(words.min()) < 0 or int(words.max()) >= hi):
            raise ValueError(
                f"{who}: {name} must hold words in [0, {hi}); got values in "
                f"[{int(words.min())}, {int(words.max())}]"
            )
        return words.long()

    # ------------------------------------------------------------------ simulation
    # Internally states are batch-last: psi (2**W, B).
    @staticmethod
    def _mix(psi: Tensor, c: Tensor, s: Tensor, a: int, b: int) -> Tensor:
        """Autograd version of one neuron (``c I + s (-iY)``) on the lane with ``a`` basis blocks above it;
        ``psi (a*2*b, B)``, ``c, s`` of shape ``(a*b, B)`` or ``(a*b, 1)``."""
        B = psi.shape[1]
        v = psi.view(a, 2, b, B)
        c, s = c.reshape(a, b, -1), s.reshape(a, b, -1)
        v0, v1 = v[:, 0], v[:, 1]
        return torch.stack((c * v0 - s * v1, c * v1 + s * v0), 1).reshape(psi.shape)

    def _kernel(self, psi: Tensor, K: Tensor) -> Tensor:
        if K.dim() == 2:
            return K @ psi
        W = self.hidden_size
        for j in range(W):
            cs, sn = torch.cos(K[j] / 2), torch.sin(K[j] / 2)
            h = 1 << (W - 1)
            psi = self._mix(psi, cs.expand(h, 1), sn.expand(h, 1), 1 << j, 1 << (W - 1 - j))
        return psi

    def _workspace(self, psi: Tensor, x: Tensor, t: dict, track: bool):
        """Input and kernel stages on the workspace state ``psi (2**W, B)`` for input words ``x (B,)``.

        Returns the unnormalised workspace state and, if ``track``, the list of per-neuron
        single-pass success probabilities (each ``(B,)``).
        """
        I, W = self.input_size, self.hidden_size
        D, B = psi.shape
        nw = W * (self.stages + 1)
        onehot = torch.nn.functional.one_hot(x, 1 << I).to(psi.dtype).T  # (2^I, B)
        neuron_p = [] if track else None
        if track:
            raw = (t["raw"][2] @ onehot).view(nw, 2, D // 2, B)
        # renormalise inside the step only when the unnormalised norm could leave float range
        budget = 0.0
        per_neuron = ((1 << self.order) - 1) / 2  # log2 bound of |c^2+s^2| after scaling
        for stage in range(self.stages + 1):
            fused = not track and stage > 0 and "kernel_cs" in t
            if stage > 0 and not fused:
                psi = self._kernel(psi, t["kernel"][stage - 1])
            if t["mode"] != "unitary" and budget + per_neuron * W > 60:
                psi = psi / psi.norm(dim=0, keepdim=True)
                budget = 0.0
            budget += per_neuron * W
            Ts = (t["ws_stage"][stage] @ onehot).view(W, 2, D // 2, B)
            if track:
                for j in range(W):
                    a, b = 1 << j, 1 << (W - 1 - j)
                    k = stage * W + j
                    n_in = psi.pow(2).sum(0)
                    pr = self._mix(psi, raw[k, 0], raw[k, 1], a, b)
                    neuron_p.append(pr.pow(2).sum(0) / n_in)
                    psi = self._mix(psi, Ts[j, 0], Ts[j, 1], a, b)
            else:
                R = t["kernel_cs"][stage - 1] if fused else t["no_rot"]
                psi = _NeuronStage.apply(psi, Ts, R)
        return psi, neuron_p

    def _output_probs(self, psi: Tensor, t: dict):
        """Unnormalised word weights ``pw (B, 2**I)`` and their sum ``n2 (B,)`` for workspace ``psi (2**W, B)``."""
        F = t["F"]
        pw = ((F * F) @ (psi * psi)).T
        return pw, pw.sum(-1)

    def _output_track(self, psi: Tensor, t: dict) -> list:
        """Per-output-neuron single-pass success probabilities (unscaled), each ``(B,)``."""
        c_raw, s_raw, _, nw = t["raw"]
        I, W = self.input_size, self.hidden_size
        q = psi * psi
        out = []
        prev = q.sum(0)
        prev_rows = None
        for o in range(I):
            co = c_raw[nw + o].view(1 << I, 1 << W)
            so = s_raw[nw + o].view(1 << I, 1 << W)
            rows = []
            for m in range(1 << (o + 1)):
                prefix = m >> 1
                word = prefix << (I - o)
                f = co[word] if (m & 1) == 0 else so[word]
                rows.append(f if prev_rows is None else prev_rows[prefix] * f)
            prev_rows = torch.stack(rows)
            tot = ((prev_rows * prev_rows) @ q).sum(0)
            out.append(tot / prev)
            prev = tot
        return out

    def _step_core(self, psi: Tensor, x: Tensor, t: dict, track: bool):
        psi_w, neuron_p = self._workspace(psi, x, t, track)
        pw, n2 = self._output_probs(psi_w, t)
        n_neur = self.num_neurons
        if t["mode"] == "unitary":
            succ = torch.ones_like(n2)
        else:
            succ = n2 / psi.pow(2).sum(0) * math.exp(-n_neur * t["log_scale2"])
        if track:
            neuron_p = torch.stack(neuron_p + self._output_track(psi_w, t), -1)
            if t["mode"] != "unitary":
                succ = neuron_p.prod(-1)
        return psi_w, pw, n2, succ, neuron_p

    def _measure(self, psi_w: Tensor, pw: Tensor, n2: Tensor, m: Tensor, t: dict):
        ar = torch.arange(pw.shape[0], device=pw.device)
        probs = pw / n2.unsqueeze(-1)
        pm = pw[ar, m]
        hx = psi_w * t["F"].T.index_select(1, m) / torch.sqrt(pm)
        return probs, hx, probs[ar, m]

    def full_state(self, hx: Tensor, x: Tensor) -> Tensor:
        """Normalised state of all ``W + I`` lanes just before the readout, ``(B, 2**(I+W))``,
        for workspace states ``hx (B, 2**W)`` and input words ``x (B,)`` (for checks)."""
        t = self.tables()
        psi_w, _ = self._workspace(hx.T.contiguous(), x, t, False)
        full = psi_w.T.unsqueeze(1) * t["F"].unsqueeze(0)
        return (full / full.flatten(1).norm(dim=-1).view(-1, 1, 1)).flatten(1)

    def _choose(self, probs: Tensor, readout: str, generator=None) -> Tensor:
        if readout == "argmax":
            return probs.argmax(-1)
        return torch.multinomial(probs.detach(), 1, generator=generator).squeeze(-1)

    def step(
        self,
        psi: Tensor,
        x: Tensor,
        m: Tensor | None,
        tables: dict,
        *,
        readout: str = "sample",
        track: bool = False,
        generator=None,
        force: Tensor | None = None,
    ) -> CellOutput:
        """Low-level step on validated tensors: ``psi (2**W, B)`` (batch-last), ``x (B,)`` words, ``m (B,)``
        target words (or ``None`` to sample/argmax; with ``force`` a bool ``(B,)`` mask, rows where
        ``force`` is true take ``m`` and the others are sampled)."""
        psi_w, pw, n2, succ, neuron_p = self._step_core(psi, x, tables, track)
        if m is None or force is not None:
            with torch.no_grad():
                ms = self._choose(pw / n2.unsqueeze(-1), readout, generator)
                if force is not None:
                    ms = torch.where(force, m, ms)
            m = ms
        probs, hx, psel = self._measure(psi_w, pw, n2, m, tables)
        return CellOutput(probs, hx, m, psel, succ, neuron_p)

    def forward(
        self,
        input: Tensor,
        hx: Tensor | None = None,
        *,
        target: Tensor | None = None,
        readout: str = "sample",
        track_neurons: bool = False,
    ) -> CellOutput:
        """One QRNN step (see class docstring).  Returns a :class:`CellOutput`."""
        self._check_bits(input)
        if readout not in ("sample", "argmax"):
            raise ValueError(f"QRNNCell: readout must be 'sample' or 'argmax'; got {readout!r}")
        unbatched = input.dim() == 1
        bits = input.unsqueeze(0) if unbatched else input
        B = bits.shape[0]
        x = (bits.long() * self._word_weights).sum(-1)
        psi = self._check_hx(hx, B, unbatched, bits)
        m = None
        if target is not None:
            target = self._check_words(target, "target", "QRNNCell")
            m = target.reshape(1) if unbatched else target
            if target.dim() != (0 if unbatched else 1) or m.shape != (B,):
                raise ValueError(
                    f"QRNNCell: Expected target of shape {'()' if unbatched else f'({B},)'}; got {tuple(target.shape)}"
                )
        out = self.step(psi.T.contiguous(), x, m, self.tables(), readout=readout, track=track_neurons)
        out = out._replace(hx=out.hx.T)
        if m is not None and not bool((out.postsel_prob > 0).all()):
            raise ValueError(
                "QRNNCell: postselection probability is zero for the target word "
                f"(batch rows {torch.nonzero(out.postsel_prob <= 0).flatten().tolist()}); cannot renormalise"
            )
        if unbatched:
            out = CellOutput(*(None if v is None else v[0] for v in out))
        return out


class QRNN(nn.Module):
    r"""Quantum RNN over word sequences: the :class:`QRNNCell` applied for ``L - 1`` steps.

    Step ``t`` consumes word ``t`` and predicts word ``t + 1`` (``probs[..., t]``); the output
    lanes are then postselected onto ``targets[:, t+1]`` where ``postselect`` is true (teacher
    forcing, used for training) and sampled (or argmax) elsewhere.

    Args:
        input_size (int): ``I``, bits per word.
        hidden_size (int): ``W``, workspace lanes.
        stages (int): ``S``, kernel stages.
        order (int): neuron order ``ord``.
        degree (int): neuron degree ``d``.
        mode (str): ``"postselect"`` | ``"unitary"`` | ``"sampled"``.
        checkpoint (bool): gradient-checkpoint every step (store one state per step, recompute
            inside it in the backward pass) for long sequences.
        max_attempts (int): RUS retry budget in ``sampled`` mode.
        device, dtype: factory kwargs.

    Shape:
        - inputs: ``(B, L)`` or ``(L,)`` integer words in ``[0, 2**I)``.
        - targets: same shape as inputs, or ``None``.
        - postselect: ``None`` (all steps if targets are given), or bool ``(L,)`` / ``(B, L)``
          (entry ``t+1`` says whether step ``t`` is forced to its target).
        - output: :class:`QRNNOutput` with ``probs`` of shape ``(B, 2**I, L-1)``.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> model = QRNN(2, 8, stages=2, order=2, degree=2)
        >>> sum(p.numel() for p in model.parameters())
        1212
        >>> seq = torch.randint(0, 4, (3, 6))
        >>> out = model(seq, targets=seq)
        >>> out.probs.shape, bool(out.min_postsel_prob > 0)
        (torch.Size([3, 4, 5]), True)
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        stages: int = 2,
        order: int = 2,
        degree: int = 2,
        mode: str = "postselect",
        checkpoint: bool = False,
        max_attempts: int = 100,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        self.cell = QRNNCell(
            input_size,
            hidden_size,
            stages=stages,
            order=order,
            degree=degree,
            mode=mode,
            max_attempts=max_attempts,
            device=device,
            dtype=dtype,
        )
        self.checkpoint = bool(checkpoint)

    input_size = property(lambda self: self.cell.input_size)
    hidden_size = property(lambda self: self.cell.hidden_size)

    def reset_parameters(self, *args, **kwargs) -> None:
        self.cell.reset_parameters(*args, **kwargs)

    def extra_repr(self) -> str:
        return "checkpoint=True" if self.checkpoint else ""

    def forward(
        self,
        inputs: Tensor,
        targets: Tensor | None = None,
        *,
        postselect: Tensor | None = None,
        hx: Tensor | None = None,
        readout: str = "sample",
        track_neurons: bool = False,
        generator: torch.Generator | None = None,
    ) -> QRNNOutput:
        cell = self.cell
        who = "QRNN"
        if readout not in ("sample", "argmax"):
            raise ValueError(f"QRNN: readout must be 'sample' or 'argmax'; got {readout!r}")
        inputs = cell._check_words(inputs, "inputs", who)
        if inputs.dim() not in (1, 2):
            raise ValueError(f"QRNN: Expected inputs to be 1D (L,) or 2D (B, L), got {inputs.dim()}D instead")
        unbatched = inputs.dim() == 1
        X = inputs.unsqueeze(0) if unbatched else inputs
        B, L = X.shape
        if L < 2:
            raise ValueError(f"QRNN: sequences must have length >= 2; got {L}")
        Y = None
        if targets is not None:
            targets = cell._check_words(targets, "targets", who)
            if targets.shape != inputs.shape:
                raise ValueError(
                    f"QRNN: targets must have the same shape as inputs {tuple(inputs.shape)}; got {tuple(targets.shape)}"
                )
            Y = targets.unsqueeze(0) if unbatched else targets
        if postselect is None:
            P = torch.full((B, L), Y is not None, dtype=torch.bool, device=X.device)
        else:
            if Y is None:
                raise ValueError("QRNN: postselect was given but targets is None")
            P = torch.as_tensor(postselect, device=X.device).bool()
            if P.dim() == 1:
                if P.shape[0] != L:
                    raise ValueError(f"QRNN: postselect of shape (L,) must have L={L}; got {P.shape[0]}")
                P = P.unsqueeze(0).expand(B, L)
            elif P.shape != (B, L):
                raise ValueError(f"QRNN: postselect must have shape ({L},) or ({B}, {L}); got {tuple(P.shape)}")
        psi = cell._check_hx(hx, B, unbatched and hx is not None and hx.dim() == 1, X)
        psi = psi.to(cell.unitary_theta.dtype).T.contiguous()  # batch-last internally
        tables = cell.tables()
        P_host = P.cpu()
        track = track_neurons or cell.mode == "sampled"
        probs_l, words_l, psel_l, succ_l, rounds_l, att_l = [], [], [], [], [], []
        for t in range(L - 1):
            x = X[:, t]
            all_ps = bool(P_host[:, t + 1].all())
            any_ps = bool(P_host[:, t + 1].any())
            if all_ps:
                m = Y[:, t + 1]
            else:
                m = None
            if self.checkpoint and torch.is_grad_enabled() and m is not None:
                out = checkpoint(self._ckpt_step, psi, x, m, tables, track, use_reentrant=False)
                out = CellOutput(*out)
            else:
                if m is None and any_ps:
                    out = cell.step(psi, x, Y[:, t + 1], tables, readout=readout, track=track,
                                    generator=generator, force=P[:, t + 1])
                else:
                    out = cell.step(psi, x, m, tables, readout=readout, track=track, generator=generator)
            if any_ps:
                bad = P[:, t + 1] & ~(out.postsel_prob > 0)
                if bool(bad.any()):
                    raise ValueError(
                        f"QRNN: postselection probability is zero at step {t} for the target word "
                        f"(batch rows {torch.nonzero(bad).flatten().tolist()}); cannot renormalise"
                    )
            psi = out.hx
            probs_l.append(out.probs)
            words_l.append(out.word)
            psel_l.append(out.postsel_prob)
            succ_l.append(out.success_prob)
            if track:
                np_ = out.neuron_success
                if np_ is not None:
                    rounds_l.append((1.0 / torch.sqrt(np_)).sum(-1))
                    if cell.mode == "sampled":
                        att_l.append(sample_attempts(np_.detach(), cell.max_attempts, generator).sum(-1))
        probs = torch.stack(probs_l, -1)
        words = torch.stack(words_l, -1)
        psel = torch.stack(psel_l, -1)
        succ = torch.stack(succ_l, -1)
        mask = P[:, 1:]
        if bool(mask.any()):
            min_ps = psel.detach()[mask].min()
        else:
            min_ps = torch.ones((), dtype=psel.dtype, device=psel.device)
        rounds = torch.stack(rounds_l, -1).detach() if rounds_l else None
        attempts = torch.stack(att_l, -1) if att_l else None
        out = QRNNOutput(probs, words, min_ps, psel, succ, rounds, psi.T, attempts)
        if unbatched:
            out = QRNNOutput(*(v if (v is None or k == "min_postsel_prob") else v[0] for k, v in zip(QRNNOutput._fields, out)))
        return out

    def _ckpt_step(self, psi, x, m, tables, track):
        return tuple(self.cell.step(psi, x, m, tables, track=track))
