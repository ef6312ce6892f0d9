"""FlippedQuanv3x3: the paper's 2-qubit "flipped" quantum convolution (creep.md §2a).

Weights go into the state, data into the observable: for each (out, in) channel pair a
2-qubit state psi = exp(i sum_k theta_k P_k)|00>, and each 3x3 patch M (zero-padded
bottom-right to 4x4, symmetrised, S = (M + M^T)/2) is measured, e = Re<psi|S|psi>.
Because e = sum_ij M_ij Re(psi_i^* psi_j), the layer *is* a convolution with the kernel
K = Re(psi psi^H)[0:3, 0:3] / C_in: that is the fast path (``F.conv2d``).  On a circuit engine
or hardware the state depends on the weights only, so one state per channel pair, measured
in its 15 Pauli bases, serves every image (``pauli_expectations`` + ``pauli_coefficients``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from qnn.circuit import Circuit, Param
from qnn.layers._common import circuit_engine, from_classical, paper_layer_dtypes, pos_int, randn_reset
from qnn.pauli import pauli_labels, pauli_matrices, su_gates

__all__ = ["FlippedQuanv3x3"]



class FlippedQuanv3x3(nn.Module):
    """Drop-in for ``nn.Conv2d(in_channels, out_channels, 3, stride, padding)``.

    Output pixel ``o``: ``(1/C_in) sum_c Re<psi_oc|S_c|psi_oc> + Re(bias_o)`` with
    ``psi_oc = exp(i sum_k theta[o, c, k] P_k)|00>`` (15 two-qubit Pauli strings, IXYZ order,
    first letter most significant, no 1/2 factor) and ``S_c`` the symmetrised, bottom-right
    zero-padded 3x3 patch of channel ``c``.

    Args:
        in_channels, out_channels (int): channel counts.
        stride (int), padding (int): as in ``nn.Conv2d`` (zero padding of the input).
        mode (str): ``"physical"`` (default: real ``theta``, normalised states, real bias) or
            ``"paper"`` (complex ``theta`` and bias as in the authors' code; the gate is then
            not unitary and only the real part of the bias reaches the output).
        bias (bool): add a per-output-channel bias (randn init).
        seed (int | None): seeds ``reset_parameters``.
        device, dtype: factory kwargs; ``dtype`` is the real dtype (float32 default, float64).
        engine (str | Engine | None): None (default): the dense torch fast path.  An engine
            name or instance (``"torch"``, ``"pennylane"``, ``"qiskit"``, ``"ibm"``): the
            circuit path -- one 2-qubit circuit ``PauliExp(theta_oc)|00>`` per (out, in) channel
            pair, measured for its 15 Pauli words, then contracted with the patches' Pauli
            coefficients (:meth:`forward_from_expectations`).  ``mode="paper"`` is refused
            there (not unitary).
        engine_options (dict | None): engine constructor options (with an engine name).

    Circuit-engine cost (``engine`` set), whatever the number or size of the images: one
    engine call of ``C_out * C_in`` circuit evaluations (the pairs' 15 angles are the rows of
    its batch), each giving the 15 expectation values ``<P_k>``; the backward on
    parameter-shift engines (qiskit, ibm) adds ``2 * 15 = 30`` shifted evaluations per pair
    (the generalised shift rule), in one further call.  :attr:`circuit` is that circuit.

    Shape:
        input ``(B, C_in, H, W)`` or ``(C_in, H, W)`` float; output ``(B, C_out, H', W')`` with
        ``H' = (H + 2 padding - 3) // stride + 1``, in the layer's real dtype.

    Example:
        >>> import torch, qnn
        >>> conv = qnn.layers.FlippedQuanv3x3(1, 2, seed=0)
        >>> conv
        FlippedQuanv3x3(in_channels=1, out_channels=2, stride=1, padding=0, mode=physical, bias=True)
        >>> x = torch.randn(3, 1, 6, 6)
        >>> y = conv(x); y.shape
        torch.Size([3, 2, 4, 4])
        >>> torch.allclose(y, conv.forward_reference(x), atol=1e-5)
        True
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        padding: int = 0,
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
        self.in_channels = pos_int(in_channels, "in_channels", name, 1)
        self.out_channels = pos_int(out_channels, "out_channels", name, 1)
        self.stride = pos_int(stride, "stride", name, 1)
        self.padding = pos_int(padding, "padding", name, 0)
        dtype, pdtype = paper_layer_dtypes(name, mode, seed, dtype)
        self.mode = mode
        self.seed = seed
        self._real = dtype
        self.weight = nn.Parameter(torch.empty(self.out_channels, self.in_channels, 15, device=device, dtype=pdtype))
        if bias:
            self.bias = nn.Parameter(torch.empty(self.out_channels, device=device, dtype=pdtype))
        else:
            self.register_parameter("bias", None)
        self.circuit = self.kernel_circuit() if self._engine is not None else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """randn ``theta`` and bias (real randn cast to complex in paper mode); repeatable with ``seed``."""
        randn_reset(self)

    @property
    def engine(self):
        """The circuit engine, or None for the dense path."""
        return None if self._engine is None else self._engine.engine

    @staticmethod
    def kernel_circuit() -> Circuit:
        """The 2-qubit circuit of one channel pair: inputs 0..14 are ``theta_oc`` (IXYZ order),
        the gate ``exp(i sum_k theta_k P_k)`` on ``|00>``, outputs ``<P_k>`` for the 15 words."""
        c = Circuit(2)
        idx = c.new_inputs(15)
        words = pauli_labels(2)
        c.add_pauli_exp([0, 1], words, [Param.input(i) for i in idx])
        for w in words:
            c.measure_pauli(w)
        return c

    def circuit_expectations(self) -> torch.Tensor:
        """``<psi_oc|P_k|psi_oc>`` (C_out, C_in, 15) evaluated on the circuit engine: one engine
        call with the C_out * C_in channel pairs as its batch (differentiable)."""
        if self._engine is None:
            raise ValueError(f"{type(self).__name__}: circuit_expectations needs an engine; got engine=None")
        rows = self.weight.reshape(-1, 15)
        out = self._engine.engine.run(self.circuit, rows, rows.new_zeros(0))
        return out.reshape(self.out_channels, self.in_channels, 15).to(self._real)

    # ---- the kernel states --------------------------------------------------------------
    def gates(self) -> torch.Tensor:
        """exp(i sum_k theta_k P_k) per channel pair, (C_out, C_in, 4, 4) complex."""
        return su_gates(self.weight, 2)

    def states(self) -> torch.Tensor:
        """psi_oc = gate |00>, (C_out, C_in, 4) complex (one state per channel pair)."""
        return self.gates()[..., :, 0]

    def kernel(self) -> torch.Tensor:
        """The equivalent Conv2d kernel Re(psi psi^H)[0:3, 0:3] / C_in, (C_out, C_in, 3, 3)."""
        psi = self.states()[..., :3]
        k = (psi.unsqueeze(-1) * psi.conj().unsqueeze(-2)).real
        return (k / self.in_channels).to(self._real)

    def conv2d_parameters(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(weight, bias)`` of the ``F.conv2d`` that :meth:`forward` computes: :meth:`kernel`
        and the real bias (None without bias).  Lets a model compose this layer with the next
        linear one (e.g. :class:`~qnn.models.creep.CreepNet` fuses its two convolutions)."""
        return self.kernel(), self._bias()

    def _bias(self) -> torch.Tensor | None:
        if self.bias is None:
            return None
        return (self.bias.real if self.bias.is_complex() else self.bias).to(self._real)

    def unitarity_error(self) -> float:
        """max over channel pairs of max |G G^H - I| and | ||psi|| - 1 |."""
        with torch.no_grad():
            g = self.gates()
            eye = torch.eye(4, dtype=g.dtype, device=g.device)
            u = (g @ g.mH - eye).abs().amax()
            nrm = (g[..., :, 0].abs().square().sum(-1).sqrt() - 1).abs().amax()
            return float(torch.maximum(u, nrm))

    # ---- forward paths ------------------------------------------------------------------
    def _check(self, x: torch.Tensor) -> torch.Tensor:
        name = type(self).__name__
        if not torch.is_tensor(x):
            raise TypeError(f"{name}: expected a torch.Tensor input; got {type(x).__name__}")
        if x.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"{name}: expected a float32 or float64 input; got {x.dtype}")
        if x.dim() not in (3, 4) or x.shape[-3] != self.in_channels:
            raise ValueError(
                f"{name}: expected input (B, {self.in_channels}, H, W) or ({self.in_channels}, H, W); "
                f"got shape {tuple(x.shape)}")
        if min(x.shape[-2:]) + 2 * self.padding < 3:
            raise ValueError(f"{name}: spatial size + 2*padding must be >= 3; got {tuple(x.shape[-2:])}")
        return x.to(self._real)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._engine is not None:
            self._check(x)
            return self.forward_from_expectations(x, self.circuit_expectations())
        x = self._check(x)
        return F.conv2d(x, *self.conv2d_parameters(), stride=self.stride, padding=self.padding)

    def forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        """Literal patch-by-patch computation (pad each 3x3 patch to 4x4, symmetrise, take
        Re<psi|S|psi>, average over input channels).  Slow; for tests on small images."""
        x = self._check(x)
        unbatched = x.dim() == 3
        if unbatched:
            x = x.unsqueeze(0)
        if self.padding:
            x = F.pad(x, (self.padding,) * 4)
        psi = self.states()  # (O, C, 4)
        b, c, hh, ww = x.shape
        ho = (hh - 3) // self.stride + 1
        wo = (ww - 3) // self.stride + 1
        out = x.new_zeros(b, self.out_channels, ho, wo)
        rows = []
        for i in range(ho):
            cols = []
            for j in range(wo):
                m = x[:, :, i * self.stride:i * self.stride + 3, j * self.stride:j * self.stride + 3]
                m4 = F.pad(m, (0, 1, 0, 1)).to(psi.dtype)  # (B, C, 4, 4), M top-left
                s = (m4 + m4.transpose(-1, -2)) / 2
                e = torch.einsum("oci,bcij,ocj->boc", psi.conj(), s, psi).real
                cols.append(e.mean(-1))
            rows.append(torch.stack(cols, -1))
        out = torch.stack(rows, -2).to(self._real)
        bias = self._bias()
        if bias is not None:
            out = out + bias.view(1, -1, 1, 1)
        return out[0] if unbatched else out

    # ---- the hardware-friendly form -----------------------------------------------------
    def pauli_expectations(self) -> torch.Tensor:
        """<psi_oc|P_k|psi_oc> for the 15 non-identity strings, (C_out, C_in, 15) real.

        This is all a circuit engine or a quantum computer has to estimate: C_out * C_in
        two-qubit states (one per channel pair), each measured for 15 Pauli observables --
        independent of the number of images and of the image size.
        """
        psi = self.states()
        p = pauli_matrices(2, psi.dtype).to(psi.device)
        return torch.einsum("oci,kij,ocj->ock", psi.conj(), p, psi).real.to(self._real)

    def state_norms(self) -> torch.Tensor:
        """<psi|psi> per channel pair, (C_out, C_in): 1 in physical mode (not measured)."""
        return self.states().abs().square().sum(-1).to(self._real)

    @staticmethod
    def pauli_coefficients(patches: torch.Tensor) -> torch.Tensor:
        """s_k(M) with Re<psi|S(M)|psi> = s_0 <psi|psi> + sum_{k>=1} s_k <P_k>, (..., 16).

        ``patches`` is (..., 3, 3); index 0 is the identity coefficient tr(S)/4, 1..15 the
        Pauli strings in IXYZ order: s_k = tr(P_k S)/4.
        """
        p = torch.cat([torch.eye(4, dtype=torch.complex128).unsqueeze(0), pauli_matrices(2)])
        m4 = F.pad(patches, (0, 1, 0, 1))
        s = (m4 + m4.transpose(-1, -2)) / 2
        coef = torch.einsum("kji,...ij->...k", p.real.to(s), s) / 4  # tr(P S) = sum_ij P_ji S_ij; Im part
        return coef                                                    # vanishes for symmetric real S

    def forward_from_expectations(self, x: torch.Tensor, expectations: torch.Tensor,
                                  norms: torch.Tensor | None = None) -> torch.Tensor:
        """The layer output from (estimated) Pauli expectations (C_out, C_in, 15): each output
        pixel is (1/C_in) sum_c [s_0(M_c) norm_oc + sum_k s_k(M_c) <P_k>_oc] + bias.  With the
        exact :meth:`pauli_expectations` this equals :meth:`forward`; with shot estimates it is
        the hardware layer.  ``norms`` defaults to 1 (normalised states)."""
        x = self._check(x)
        e = expectations.to(self._real)
        if norms is None:
            norms = torch.ones(e.shape[:2], dtype=self._real, device=e.device)
        full = torch.cat([norms.to(self._real).unsqueeze(-1), e], -1)  # (O, C, 16)
        basis = self.pauli_coefficients(torch.eye(9, dtype=self._real, device=e.device).reshape(9, 3, 3))
        kernel = torch.einsum("pk,ock->ocp", basis, full).reshape(*e.shape[:2], 3, 3) / self.in_channels
        return F.conv2d(x, kernel, self._bias(), stride=self.stride, padding=self.padding)

    @classmethod
    def from_conv2d(cls, conv: nn.Conv2d, *, copy_bias: bool = True, **kwargs) -> "FlippedQuanv3x3":
        """The flipped layer for a classical ``nn.Conv2d(C, C', 3)``: channels, stride,
        padding, bias flag and device taken from ``conv`` (its bias copied as a warm start with
        ``copy_bias``; the paper starts from a randn bias, ``copy_bias=False``).  Kernels other
        than 3x3, non-square strides or paddings, dilation, groups and padding modes other than
        zeros have no counterpart and are refused.

        Example:
            >>> import torch, qnn
            >>> qnn.layers.FlippedQuanv3x3.from_conv2d(torch.nn.Conv2d(1, 32, 3), seed=0)
            FlippedQuanv3x3(in_channels=1, out_channels=32, stride=1, padding=0, mode=physical, bias=True)
        """
        name = cls.__name__
        if not isinstance(conv, nn.Conv2d):
            raise TypeError(f"{name}.from_conv2d: expected an nn.Conv2d; got {type(conv).__name__}")
        sq = lambda v: v[0] == v[1]  # noqa: E731
        if conv.kernel_size != (3, 3) or not sq(conv.stride) or not isinstance(conv.padding, tuple) \
                or not sq(conv.padding) or conv.dilation != (1, 1) or conv.groups != 1 or conv.padding_mode != "zeros":
            raise ValueError(
                f"{name}.from_conv2d: needs a 3x3 kernel, square stride and padding, no dilation or groups, "
                f"zero padding; got kernel_size={conv.kernel_size}, stride={conv.stride}, padding={conv.padding}, "
                f"dilation={conv.dilation}, groups={conv.groups}, padding_mode={conv.padding_mode!r}")
        return from_classical(cls, conv, (conv.in_channels, conv.out_channels, conv.stride[0], conv.padding[0]),
                              kwargs, copy_bias)

    def extra_repr(self) -> str:
        eng = "" if self._engine is None else f", engine={getattr(self.engine, 'name', type(self.engine).__name__)}"
        return (f"in_channels={self.in_channels}, out_channels={self.out_channels}, stride={self.stride}, "
                f"padding={self.padding}, mode={self.mode}, bias={self.bias is not None}{eng}")

