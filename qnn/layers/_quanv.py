"""Quanvolution: a quantum drop-in for :class:`torch.nn.Conv2d` (Henderson et al. 2019).

Each ``kernel_size`` patch of the input, over all input channels, is encoded into one small
circuit (a :class:`~qnn.layers.QuantumLinear` with ``C_in * kh * kw`` features) and each output
of the circuit is one output channel at that position.  Stride, padding and the output size
follow ``nn.Conv2d``.  All patches of all images go to the engine as **one batch** (``unfold``
then one ``QuantumLinear`` call), so the torch engine runs the whole layer in a few batched
matrix products.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from qnn.layers._common import from_classical
from qnn.layers._quantum import DEFAULT_QUBIT_BUDGET, QuantumLinear

__all__ = ["QuanvConv2d"]


def _pair(value, what: str) -> tuple[int, int]:
    vals = (value, value) if isinstance(value, int) and not isinstance(value, bool) else tuple(value) \
        if isinstance(value, (tuple, list)) else None
    if vals is None or len(vals) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
        raise ValueError(f"QuanvConv2d: {what} must be an int or a pair of ints; got {value!r}")
    return vals


class QuanvConv2d(nn.Module):
    """Quanvolution layer: a parameterised circuit applied to every patch, like ``nn.Conv2d``.

    Args:
        in_channels (int), out_channels (int), kernel_size (int | tuple): as ``nn.Conv2d``.
        stride (int | tuple): default 1.
        padding (int | tuple | "valid" | "same"): zero padding (``"same"`` needs stride 1 and an
            odd kernel); default 0.
        bias (bool): a trainable bias per output channel (default True).
        n_layers, encoding, readout, n_qubits, ansatz, rotation, input_scale, qubit_budget,
        engine, engine_options, seed, device, dtype: passed to the patch circuit's
            :class:`~qnn.layers.QuantumLinear` (``in_features = in_channels * kh * kw``,
            ``out_features = out_channels``): by default each pixel of the patch is the angle of
            one qubit and output channel ``j`` is ``<Z_j>``; with more pixels than the qubit
            budget use ``encoding="amplitude"`` or ``"reupload"``.

    Shape:
        - Input: ``(N, C_in, H, W)`` or ``(C_in, H, W)``.
        - Output: ``(N, C_out, H_out, W_out)`` (or without ``N``), with ``H_out =
          (H + 2 * padding - kh) // stride + 1`` as for ``nn.Conv2d``.

    Attributes:
        quantum: the patch circuit (a :class:`~qnn.layers.QuantumLinear`); ``weight`` and
            ``bias`` are its parameters.

    Example:
        >>> import torch, qnn
        >>> q = qnn.layers.QuanvConv2d(1, 4, kernel_size=2, stride=2, seed=0)
        >>> q(torch.rand(3, 1, 8, 8)).shape
        torch.Size([3, 4, 4, 4])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        bias: bool = True,
        *,
        n_layers: int = 1,
        encoding: str = "angle",
        readout: str | list[str] = "z",
        n_qubits: int | None = None,
        ansatz: str = "strongly_entangling",
        rotation: str = "Y",
        input_scale: float = 1.0,
        qubit_budget: int = DEFAULT_QUBIT_BUDGET,
        engine: Any = "torch",
        engine_options: dict[str, Any] | None = None,
        seed: int | None = None,
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for what, v in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"QuanvConv2d: {what} must be an int >= 1; got {v!r}")
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride, "stride")
        if min(self.kernel_size) < 1 or min(self.stride) < 1:
            raise ValueError(f"QuanvConv2d: kernel_size and stride must be >= 1; got {kernel_size!r}, {stride!r}")
        if padding == "valid":
            padding = 0
        elif padding == "same":
            if self.stride != (1, 1) or any(k % 2 == 0 for k in self.kernel_size):
                raise ValueError(f"QuanvConv2d: padding='same' needs stride 1 and an odd kernel; got stride "
                                 f"{self.stride}, kernel_size {self.kernel_size}")
            padding = (self.kernel_size[0] // 2, self.kernel_size[1] // 2)
        self.padding = _pair(padding, "padding")
        if min(self.padding) < 0:
            raise ValueError(f"QuanvConv2d: padding must be >= 0; got {padding!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        features = in_channels * self.kernel_size[0] * self.kernel_size[1]
        try:
            self.quantum = QuantumLinear(
                features, out_channels, bias, n_qubits=n_qubits, n_layers=n_layers, encoding=encoding,
                readout=readout, ansatz=ansatz, rotation=rotation, input_scale=input_scale,
                qubit_budget=qubit_budget, engine=engine, engine_options=engine_options, seed=seed,
                device=device, dtype=dtype)
        except ValueError as exc:
            raise ValueError(f"QuanvConv2d: a {self.kernel_size[0]}x{self.kernel_size[1]} patch of "
                             f"{in_channels} channel(s) is {features} features: {exc}") from None

    @property
    def weight(self) -> nn.Parameter:
        return self.quantum.weight

    @property
    def bias(self) -> nn.Parameter | None:
        return self.quantum.bias

    @property
    def n_qubits(self) -> int:
        return self.quantum.n_qubits

    @property
    def circuit(self):
        return self.quantum.circuit

    def reset_parameters(self) -> None:
        self.quantum.reset_parameters()

    def output_shape(self, height: int, width: int) -> tuple[int, int]:
        """``(H_out, W_out)`` for an ``height x width`` input (``nn.Conv2d``'s rule)."""
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        return (height + 2 * ph - kh) // sh + 1, (width + 2 * pw - kw) // sw + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(x) or x.dim() not in (3, 4):
            got = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise ValueError(f"QuanvConv2d: expected input (N, C, H, W) or (C, H, W); got {got}")
        single = x.dim() == 3
        if single:
            x = x.unsqueeze(0)
        N, C, H, W = x.shape
        if C != self.in_channels:
            raise ValueError(f"QuanvConv2d: expected {self.in_channels} input channel(s); got {C}")
        Ho, Wo = self.output_shape(H, W)
        if Ho < 1 or Wo < 1:
            raise ValueError(f"QuanvConv2d: input {H}x{W} is smaller than the kernel {self.kernel_size} "
                             f"(padding {self.padding})")
        patches = F.unfold(x, self.kernel_size, padding=self.padding, stride=self.stride)  # (N, C*kh*kw, L)
        out = self.quantum(patches.transpose(1, 2))  # (N, L, C_out): every patch of every image at once
        out = out.transpose(1, 2).reshape(N, self.out_channels, Ho, Wo)
        return out[0] if single else out

    @classmethod
    def from_conv2d(cls, conv: nn.Conv2d, *, copy_bias: bool = True, **kwargs) -> "QuanvConv2d":
        """A QuanvConv2d with ``conv``'s channels, kernel, stride, padding, bias flag, device and
        dtype (the classical bias copied as a warm start with ``copy_bias``).  Dilation, groups
        and non-zero padding modes have no counterpart and are refused.

        Example:
            >>> import torch, qnn
            >>> q = qnn.layers.QuanvConv2d.from_conv2d(torch.nn.Conv2d(1, 3, 2), seed=0)
            >>> q
            QuanvConv2d(1, 3, kernel_size=(2, 2), stride=(1, 1), padding=(0, 0), n_qubits=4, engine=torch)
        """
        if not isinstance(conv, nn.Conv2d):
            raise TypeError(f"QuanvConv2d.from_conv2d: expected an nn.Conv2d; got {type(conv).__name__}")
        if conv.dilation != (1, 1) or conv.groups != 1 or conv.padding_mode != "zeros":
            raise ValueError(
                f"QuanvConv2d.from_conv2d: dilation, groups and padding modes other than zeros have no "
                f"quanvolution counterpart; got dilation={conv.dilation}, groups={conv.groups}, "
                f"padding_mode={conv.padding_mode!r}")
        return from_classical(cls, conv, (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                                          conv.padding), kwargs, copy_bias)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, n_qubits={self.n_qubits}, engine={self.quantum._engine_name()}")

    def __repr__(self) -> str:  # one line: the patch circuit is described by extra_repr
        return f"{type(self).__name__}({self.extra_repr()})"
