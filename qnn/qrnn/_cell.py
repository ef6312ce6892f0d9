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
    """``W`` sequential neurons on the workspace, one autograd node with a hand-written backward.

    Neuron ``j`` acts on workspace lane ``j``: ``psi <- C[j] * psi + S[j] * flip_j(psi)`` where
    ``flip_j`` swaps the two values of lane ``j`` (``S`` carries the sign of the ``-iY`` mix).
    """

    @staticmethod
    def forward(ctx, psi: Tensor, C: Tensor, S: Tensor) -> Tensor:
        W = C.shape[0]
        B, D = psi.shape
        states = []
        flips = []
        for j in range(W):
            fl = psi.view(B, 1 << j, 2, D >> (j + 1)).flip(2).reshape(B, D)
            states.append(psi)
            flips.append(fl)
            psi = torch.addcmul(C[j] * psi, S[j], fl)
        ctx.save_for_backward(C, S, torch.stack(states), torch.stack(flips))
        return psi

    @staticmethod
    def backward(ctx, g: Tensor):
        C, S, states, flips = ctx.saved_tensors
        W = C.shape[0]
        B, D = g.shape
        gC = torch.empty_like(C) if ctx.needs_input_grad[1] else None
        gS = torch.empty_like(S) if ctx.needs_input_grad[2] else None
        for j in range(W - 1, -1, -1):
            if gC is not None:
                torch.mul(g, states[j], out=gC[j])
            if gS is not None:
                torch.mul(g, flips[j], out=gS[j])
            sg = (S[j] * g).view(B, 1 << j, 2, D >> (j + 1)).flip(2).reshape(B, D)
            g = torch.addcmul(sg, C[j], g)
        return g, gC, gS


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
        bit = (x >> sh) & 1  # (n_neurons, 2^N) value of each neuron's out bit
        low = (1 << sh) - 1
        src = ((x >> (sh + 1)) << sh) | (x & low)
        self.register_buffer("_src_index", src, persistent=False)
        self.register_buffer("_out_sign", (2 * bit - 1).to(dtype or torch.get_default_dtype()), persistent=False)
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
        """Per-neuron branch tables for one forward pass (they depend on parameters only).

        Returns a dict with ``ws_c``, ``ws_s`` of shape ``(W(S+1), 2**I, 2**W)`` (``s`` carries
        the sign of the ``-iY`` mixing), ``out_c``, ``out_s`` of shape ``(I, 2**N)`` and the kernel
        unitaries ``kernel`` (``(S, 2**W, 2**W)`` or per-lane angles when ``W > 10``).
        """
        I, W, N = self.input_size, self.hidden_size, self.n_qubits
        phi = torch.stack([n.phi for n in self.neurons])
        theta = torch.stack([n.theta for n in self.neurons])
        poly = subset_sum(phi, N - 1, self.degree)
        eta = poly.gather(1, self._src_index) + (theta + math.pi / 2).unsqueeze(1)
        half = eta / 2
        p = 1 << self.order
        c, s = torch.cos(half) ** p, torch.sin(half) ** p
        if self.mode == "unitary":
            r = torch.sqrt(c * c + s * s)
            c, s = c / r, s / r
            scale = 1.0
        else:
            # constant rescaling (cancels in the renormalisation) keeps |c|^2+|s|^2 around 1
            scale = 2.0 ** ((p - 1) / 2)
            c, s = c * scale, s * scale
        s = s * self._out_sign
        nw = W * (self.stages + 1)
        t = {
            "ws_c": c[:nw].reshape(nw, 1 << I, 1 << W),
            "ws_s": s[:nw].reshape(nw, 1 << I, 1 << W),
            "out_c": c[nw:],
            "out_s": s[nw:],
            "scale2": scale * scale,
        }
        t["ws_c_stage"] = t["ws_c"].split(W)
        t["ws_s_stage"] = t["ws_s"].split(W)
        if self.stages:
            if W <= 10:
                t["kernel"] = torch.stack([_kron_ry(th).T for th in self.unitary_theta])
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
    def _apply_lane(self, psi: Tensor, c: Tensor, s: Tensor, a: int, b: int) -> Tensor:
        flipped = psi.view(psi.shape[0], a, 2, b).flip(2).reshape(psi.shape)
        return torch.addcmul(c * psi, s, flipped)

    def _pre_readout(self, psi: Tensor, x: Tensor, t: dict, track: bool):
        """Input + kernel + output stages; returns the unnormalised full state ``(B, 2**I, 2**W)``,
        its squared norm relative to the input (the step's pass probability) and per-neuron
        pass probabilities if ``track``."""
        I, W = self.input_size, self.hidden_size
        B = psi.shape[0]
        if track:
            ws_c = t["ws_c"][:, x].unbind(0)  # nW x (B, 2^W)
            ws_s = t["ws_s"][:, x].unbind(0)
        scale2 = t["scale2"]
        renorm = self.mode != "unitary"
        log_succ = torch.zeros(B, dtype=psi.dtype, device=psi.device)
        neuron_p = [] if track else None
        k = 0
        for stage in range(self.stages + 1):
            if stage > 0:
                K = t["kernel"][stage - 1]
                if K.dim() == 2:
                    psi = psi @ K
                else:  # per-lane Ry for large W
                    for j in range(W):
                        cs = torch.cos(K[j] / 2)
                        sn = torch.sin(K[j] / 2) * torch.tensor([-1.0, 1.0], dtype=psi.dtype, device=psi.device)
                        psi = self._apply_lane(psi, cs, sn.view(1, 2, 1).expand(1 << j, 2, 1 << (W - 1 - j)).reshape(-1), 1 << j, 1 << (W - 1 - j))
            if track:
                for j in range(W):
                    new = self._apply_lane(psi, ws_c[k], ws_s[k], 1 << j, 1 << (W - 1 - j))
                    pn = new.pow(2).sum(-1) / psi.pow(2).sum(-1)
                    neuron_p.append(pn / scale2)
                    psi = new
                    k += 1
            else:
                psi = _NeuronStage.apply(psi, t["ws_c_stage"][stage][:, x], t["ws_s_stage"][stage][:, x])
            if renorm:
                n2 = psi.pow(2).sum(-1)
                log_succ = log_succ + torch.log(n2) - W * math.log(scale2)
                psi = psi / torch.sqrt(n2).unsqueeze(-1)
        out_c, out_s = t["out_c"].unbind(0), t["out_s"].unbind(0)
        full = torch.cat((psi.unsqueeze(1), psi.new_zeros(B, (1 << I) - 1, 1 << W)), 1).reshape(B, -1)
        N = self.n_qubits
        for o in range(I):
            new = self._apply_lane(full, out_c[o], out_s[o], 1 << o, 1 << (N - 1 - o))
            if track:
                neuron_p.append(new.pow(2).sum(-1) / full.pow(2).sum(-1) / scale2)
            full = new
        n2 = full.pow(2).sum(-1)
        if renorm:
            log_succ = log_succ + torch.log(n2) - I * math.log(scale2)
        succ = torch.exp(log_succ)
        if track:
            neuron_p = torch.stack(neuron_p, -1)
        return full.view(B, 1 << I, 1 << W), n2, succ, neuron_p

    def _readout(self, full: Tensor, n2: Tensor, m: Tensor):
        pw = full.pow(2).sum(-1)  # (B, 2^I)
        probs = pw / n2.unsqueeze(-1)
        ar = torch.arange(full.shape[0], device=full.device)
        psel = probs[ar, m]
        hx = full[ar, m] / torch.sqrt(pw[ar, m]).unsqueeze(-1)
        return probs, hx, psel

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
    ) -> CellOutput:
        """Low-level step on validated tensors: ``psi (B, 2**W)``, ``x (B,)`` words, ``m (B,)``
        target words (or ``None`` to sample/argmax)."""
        full, n2, succ, neuron_p = self._pre_readout(psi, x, tables, track)
        if m is None:
            with torch.no_grad():
                m = self._choose(full.pow(2).sum(-1) / n2.unsqueeze(-1), readout, generator)
        probs, hx, psel = self._readout(full, n2, m)
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
        out = self.step(psi, x, m, self.tables(), readout=readout, track=track_neurons)
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
        psi = psi.to(cell.unitary_theta.dtype)
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
                    full, n2, succ, neuron_p = cell._pre_readout(psi, x, tables, track)
                    with torch.no_grad():
                        pr = full.pow(2).sum(-1) / n2.unsqueeze(-1)
                        ms = cell._choose(pr, readout, generator)
                        ms = torch.where(P[:, t + 1], Y[:, t + 1], ms)
                    probs, hx_, psel = cell._readout(full, n2, ms)
                    out = CellOutput(probs, hx_, ms, psel, succ, neuron_p)
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
        out = QRNNOutput(probs, words, min_ps, psel, succ, rounds, psi, attempts)
        if unbatched:
            out = QRNNOutput(*(v if (v is None or k == "min_postsel_prob") else v[0] for k, v in zip(QRNNOutput._fields, out)))
        return out

    def _ckpt_step(self, psi, x, m, tables, track):
        return tuple(self.cell.step(psi, x, m, tables, track=track))
