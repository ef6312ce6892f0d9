"""The "Let the Quantum Creep In" network (Wang et al., arXiv 2409.17583) and its swaps.

:class:`CreepNet` is the paper's classical baseline (creep.md §1): ``Conv2d(C, 32, 3) ->
Conv2d(32, 16, 3) -> Flatten -> Linear(12544, 10)`` on 32x32 images, with no activation, so
levels 0 and 1 are affine classifiers.  :func:`hybrid_net` builds any swap configuration with
:func:`qnn.swap`: the convolutions become :class:`~qnn.layers.FlippedQuanv3x3`, the linear
layer :class:`~qnn.layers.DataReUploadingLinear` (7 qubits, 10 repetitions), in ``mode``
``"paper"`` (complex parameters, as the authors' code) or ``"physical"`` (unitary).

Configurations (:data:`CONFIGURATIONS`):

* ``level0`` / ``level1`` / ``level2``: the paper's cumulative sequence (both convolutions,
  then the linear layer);
* every one of the 8 subsets of ``{conv1, conv2, fc}`` by name (``"classical"``, ``"conv1"``,
  ``"conv1+fc"``, ...);
* classical controls that tell "quantum" from "nonlinear" (levels 0 and 1 are affine, level
  2 adds the first nonlinearity): ``control-tanh`` (the baseline with ``tanh`` after each
  convolution: same parameters, only a nonlinearity added) and ``control-mlp`` (the linear
  layer replaced by ``Linear(12544, h) -> tanh -> Linear(h, 10)`` with ``h`` chosen so that
  its real parameter count matches the physical-mode DataReUploadingLinear's 163,840).
"""

from __future__ import annotations

from itertools import combinations

import torch
from torch import nn

from qnn.layers import DataReUploadingLinear, FlippedQuanv3x3
from qnn.swap import SwapPlan, SwapReport, n_params

__all__ = ["CreepNet", "composed_conv", "hybrid_net", "CONFIGURATIONS", "LEVELS", "CONTROLS", "PAPER_RESULTS", "quantum_layers"]

LEVELS = {"level0": (), "level1": ("conv1", "conv2"), "level2": ("conv1", "conv2", "fc")}
_SUBSETS = {("+".join(s) if s else "classical"): s
            for r in range(4) for s in combinations(("conv1", "conv2", "fc"), r)}
CONTROLS = ("control-tanh", "control-mlp")
CONFIGURATIONS = tuple(LEVELS) + tuple(_SUBSETS) + CONTROLS
MODES = ("paper", "physical")

#: creep.md §4: last-epoch test accuracy (%) mean and population std over 5 runs
PAPER_RESULTS = {
    ("mnist", "level0"): (92.30, 0.13), ("mnist", "level1"): (92.34, 0.13), ("mnist", "level2"): (96.92, 0.32),
    ("fashion_mnist", "level0"): (83.62, 0.14), ("fashion_mnist", "level1"): (83.41, 0.37),
    ("fashion_mnist", "level2"): (86.57, 0.62),
    ("cifar10", "level0"): (36.98, 0.31), ("cifar10", "level1"): (38.85, 0.26), ("cifar10", "level2"): (48.94, 0.09),
}


class CreepNet(nn.Module):
    """The paper's classical baseline (level 0), or a classical control.

    Args:
        in_channels: 1 (MNIST, Fashion-MNIST) or 3 (CIFAR-10).
        n_classes: outputs (10).
        image_size: input height = width (32 in the paper).
        control: None (the baseline), ``"control-tanh"`` or ``"control-mlp"`` (module docstring).
        hidden: the control-mlp width (default: matched to DataReUploadingLinear, see above).
        seed: initialises the layers (PyTorch's default schemes) from this seed without
            touching the caller's global RNG.

    Example:
        >>> net = CreepNet(seed=0)
        >>> net(torch.zeros(2, 1, 32, 32)).shape, sum(p.numel() for p in net.parameters())
        (torch.Size([2, 10]), 130394)
    """

    def __init__(self, in_channels: int = 1, n_classes: int = 10, *, image_size: int = 32,
                 control: str | None = None, hidden: int | None = None, seed: int | None = None):
        super().__init__()
        if in_channels not in (1, 3):
            raise ValueError(f"CreepNet: in_channels must be 1 or 3; got {in_channels!r}")
        if control not in (None,) + CONTROLS:
            raise ValueError(f"CreepNet: control must be None or one of {list(CONTROLS)}; got {control!r}")
        if not isinstance(image_size, int) or image_size < 5:
            raise ValueError(f"CreepNet: image_size must be an int >= 5; got {image_size!r}")
        self.control = control
        flat = 16 * (image_size - 4) ** 2
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            self.conv1 = nn.Conv2d(in_channels, 32, 3)
            self.conv2 = nn.Conv2d(32, 16, 3)
            if control == "control-mlp":
                h = hidden or matched_hidden(flat, n_classes)
                self.fc = nn.Sequential(nn.Linear(flat, h), nn.Tanh(), nn.Linear(h, n_classes))
            else:
                self.fc = nn.Linear(flat, n_classes)
        self.act = nn.Tanh() if control == "control-tanh" else nn.Identity()

    #: Without an activation between them (every configuration but control-tanh), compute
    #: ``conv2(conv1(x))`` as one 5x5 convolution with the composed kernel (see
    #: :func:`composed_conv`): the same affine map, ~9x fewer flops, and no gradient through
    #: the 32-channel intermediate.  Taken only where both layers are plain 3x3 stride-1
    #: unpadded convolutions on their conv fast path without hooks; set False to run them one
    #: after the other.
    fuse_convs: bool = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fuse_convs and isinstance(self.act, nn.Identity):
            h = composed_conv(self.conv1, self.conv2, x)
            if h is not None:
                return self.fc(h.flatten(1))
        h = self.act(self.conv1(x))
        h = self.act(self.conv2(h))
        return self.fc(h.flatten(1))


def _conv3x3_parameters(m: nn.Module):
    """``(weight, bias)`` of a layer whose forward is ``F.conv2d(x, weight, bias)`` with a 3x3
    kernel, stride 1, no padding, dilation or groups; None for anything else (subclasses,
    circuit engines, layers with forward hooks)."""
    if m._forward_hooks or m._forward_pre_hooks:
        return None
    if type(m) is nn.Conv2d:
        plain = (m.kernel_size == (3, 3) and m.stride == (1, 1) and m.padding in ((0, 0), "valid")
                 and m.dilation == (1, 1) and m.groups == 1)
        return (m.weight, m.bias) if plain else None
    if type(m) is FlippedQuanv3x3 and m.stride == 1 and m.padding == 0 and getattr(m, "engine", None) is None:
        return m.conv2d_parameters()
    return None


def composed_conv(first: nn.Module, second: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """``second(first(x))`` for two linear 3x3 convolution layers as one 5x5 convolution, or
    None where that does not apply (then call the layers).

    Cross-correlations compose by convolving their kernels: ``(x * K1 + b1) * K2 + b2 =
    x * K + b`` with ``K[o, i] = sum_c K1[c, i] conv K2[o, c]`` (full 2-D convolution, 5x5) and
    ``b[o] = b2[o] + sum_c b1[c] sum(K2[o, c])``.  Exact up to rounding; the gradients reach
    both layers' parameters through ``K`` and ``b``.

    Example:
        >>> c1, c2, x = nn.Conv2d(1, 4, 3), nn.Conv2d(4, 2, 3), torch.randn(3, 1, 8, 8)
        >>> torch.allclose(composed_conv(c1, c2, x), c2(c1(x)), atol=1e-5)
        True
    """
    p1, p2 = _conv3x3_parameters(first), _conv3x3_parameters(second)
    if p1 is None or p2 is None:
        return None
    (k1, b1), (k2, b2) = p1, p2
    if not (torch.is_tensor(x) and x.dim() == 4 and x.shape[1] == k1.shape[1] and k2.shape[1] == k1.shape[0]
            and x.dtype == k1.dtype == k2.dtype and min(x.shape[-2:]) >= 5):
        return None  # the layers themselves raise or cast
    # K[o, i] = sum_c sum_j K1[c, i, u - j] K2[o, c, j]: a cross-correlation of the zero-padded
    # K1 (batch = input channel i) with the flipped K2
    k = torch.nn.functional.conv2d(torch.nn.functional.pad(k1.transpose(0, 1), (2, 2, 2, 2)), k2.flip(-1, -2))
    k = k.transpose(0, 1)
    b = b2
    if b1 is not None:
        shift = k2.sum((-1, -2)) @ b1
        b = shift if b2 is None else b2 + shift
    return torch.nn.functional.conv2d(x, k, b)


def matched_hidden(flat: int, n_classes: int, n_qubits: int = 7, n_reps: int = 10) -> int:
    """Width ``h`` of ``Linear(flat, h) -> Linear(h, n_classes)`` whose parameter count is
    closest to a physical-mode DataReUploadingLinear's ``n_reps * (4**n - 1) + n_classes``."""
    target = n_reps * (4**n_qubits - 1) + n_classes
    return max(1, round((target - n_classes) / (flat + 1 + n_classes)))


def quantum_layers(mode: str = "physical", *, n_reps: int = 10, seed: int | None = None) -> dict:
    """The swap factories of the paper: ``{"conv1"|"conv2": ..., "fc": ...}``."""
    if mode not in MODES:
        raise ValueError(f"hybrid_net: mode must be one of {list(MODES)}; got {mode!r}")

    def conv(m, seed=None):
        return FlippedQuanv3x3.from_conv2d(m, copy_bias=False, mode=mode, seed=seed)

    def fc(m, seed=None):
        return DataReUploadingLinear.from_linear(m, copy_bias=False, n_reps=n_reps, mode=mode, seed=seed)

    return {"conv1": conv, "conv2": conv, "fc": fc}


def hybrid_net(configuration: str = "level2", *, in_channels: int = 1, mode: str = "physical",
               image_size: int = 32, n_reps: int = 10, seed: int | None = 0) -> tuple[nn.Module, SwapReport]:
    """One configuration of the study: ``(model, report)``.

    Args:
        configuration: one of :data:`CONFIGURATIONS`.
        in_channels, image_size: as :class:`CreepNet`.
        mode: ``"physical"`` or ``"paper"`` (ignored where nothing is swapped).
        n_reps: repetitions of the data re-uploading layer (10 in the paper).
        seed: initialises the classical layers (the same seed gives the same classical layers in
            every configuration) and, offset per layer, the quantum ones.

    Example:
        >>> model, report = hybrid_net("conv1+fc", mode="paper", seed=0)
        >>> [r.new for r in report.rows]
        ['FlippedQuanv3x3', 'DataReUploadingLinear']
    """
    if configuration not in CONFIGURATIONS:
        raise ValueError(f"hybrid_net: configuration must be one of {list(CONFIGURATIONS)}; got {configuration!r}")
    if configuration in CONTROLS:
        net = CreepNet(in_channels, image_size=image_size, control=configuration, seed=seed)
        return net, SwapReport([], n_params(net), n_params(net))
    swapped = LEVELS.get(configuration, _SUBSETS.get(configuration))
    net = CreepNet(in_channels, image_size=image_size, seed=seed)
    plan = SwapPlan(net, ["conv1", "conv2", "fc"], schedule="subsets",
                    factories=quantum_layers(mode, n_reps=n_reps))
    return plan.build(swapped, seed=None if seed is None else 1000 * seed + 1)
