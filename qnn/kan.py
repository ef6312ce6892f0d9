"""Kolmogorov–Arnold network (KAN) layers with B-spline edge functions.

:class:`KANLinear` maps ``(*, in_features) -> (*, out_features)`` with one learnable univariate
function per edge ``(i, j)``, in one of two parameterisations:

* ``"tfkan"`` (the layer of ZPZhou-lab/tfkan used by KACQ-DCNN):
  ``phi_ij(x) = c_ij * (SiLU(x) + sum_k w_ijk B_k(x))``, ``y_j = sum_i phi_ij(x_i) + b_j``.
  One scale ``c`` per edge is shared by the SiLU base and the spline; the knots are fixed:
  ``G + 2K + 1`` equally spaced points from ``lo - K h`` to ``hi + K h`` (``h = (hi - lo) / G``),
  giving ``G + K`` basis functions per input.  Init: ``w ~ N(0, 0.1^2)``, ``c`` Glorot-uniform over
  ``(in, out)``, ``b = 0``.  Parameters: ``in*(G+K)*out + in*out + out``.
* ``"efficient"`` (efficient-KAN style): separate weights,
  ``phi_ij(x) = a_ij SiLU(x) + s_ij sum_k w_ijk B_k(x)`` (``s`` only if
  ``enable_spline_scaler``), plus an optional bias; each input has its own knot vector (a buffer),
  which :meth:`KANLinear.update_grid` adapts to a batch of data while preserving the learned
  functions by least squares.

The B-spline basis is computed once per forward by a vectorised Cox–de Boor recursion
(:func:`bspline_basis`); the layer is then a single matmul of ``[SiLU(x), B(x)]`` against the
combined weights.  B-splines vanish outside the extended knot range, so there only the SiLU
base remains.

Example:
    >>> import torch
    >>> from qnn.kan import KANLinear
    >>> layer = KANLinear(4, 3, grid_size=3)
    >>> layer(torch.rand(8, 4)).shape
    torch.Size([8, 3])
    >>> layer(torch.rand(8, 12, 4)).shape   # position-wise on (B, L, in)
    torch.Size([8, 12, 3])
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
import torch.nn.functional as F

__all__ = ["KANLinear", "bspline_basis", "uniform_bspline_basis", "uniform_knots"]

_PARAMETERIZATIONS = ("tfkan", "efficient")


def uniform_knots(grid_size: int, spline_order: int, grid_range=(-1.0, 1.0), *, dtype=None, device=None) -> Tensor:
    """Extended uniform knot vector of length ``grid_size + 2 * spline_order + 1``."""
    lo, hi = float(grid_range[0]), float(grid_range[1])
    h = (hi - lo) / grid_size
    return torch.linspace(
        lo - spline_order * h, hi + spline_order * h, grid_size + 2 * spline_order + 1,
        dtype=dtype, device=device,
    )


def bspline_basis(x: Tensor, knots: Tensor, spline_order: int) -> Tensor:
    """B-spline basis values by the Cox–de Boor recursion, vectorised.

    Args:
        x: inputs of shape ``(N, in)``.
        knots: ``(n_knots,)`` shared by all inputs, or ``(in, n_knots)`` one vector per input.
        spline_order: ``K`` (3 = cubic).

    Returns:
        ``(N, in, n_knots - K - 1)`` basis values.  Order-0 pieces are half-open ``[t_k, t_{k+1})``.
    """
    if knots.dim() == 1:
        t = knots.view(1, 1, -1)
    else:
        t = knots.unsqueeze(0)  # (1, in, n_knots)
    xe = x.unsqueeze(-1)  # (N, in, 1)
    b = ((xe >= t[..., :-1]) & (xe < t[..., 1:])).to(x.dtype)
    for k in range(1, spline_order + 1):
        left = (xe - t[..., : -(k + 1)]) / (t[..., k:-1] - t[..., : -(k + 1)])
        right = (t[..., k + 1 :] - xe) / (t[..., k + 1 :] - t[..., 1:-k])
        b = left * b[..., :-1] + right * b[..., 1:]
    return b


def _uniform_basis_and_lower(x: Tensor, grid_size: int, spline_order: int, lo: float, h: float):
    """Order-K basis and the order-(K-1) basis it was built from (None for K = 0)."""
    n_knots = grid_size + 2 * spline_order + 1
    with torch.no_grad():
        u = (x.unsqueeze(-1) - (lo - spline_order * h)) * (1.0 / h)  # (N, in, 1): position in knot units
        s = u - torch.arange(n_knots - 1, dtype=x.dtype, device=x.device)  # s_k, k = 0 .. n_knots-2
        b = ((s >= 0) & (s < 1)).to(x.dtype)
        lower = None
        for p in range(1, spline_order + 1):
            lower = b
            sk = s[..., : b.shape[-1] - 1]
            b = (sk * b[..., :-1] + (p + 1 - sk) * b[..., 1:]) * (1.0 / p)
    return b, lower


class _UniformBSpline(torch.autograd.Function):
    """Uniform-grid B-spline basis with the analytic derivative
    ``dB_{k,K}/dx = (B_{k,K-1} - B_{k+1,K-1}) / h`` in backward (no autograd graph through the
    recursion)."""

    @staticmethod
    def forward(ctx, x, grid_size, spline_order, lo, h):
        b, lower = _uniform_basis_and_lower(x, grid_size, spline_order, lo, h)
        ctx.save_for_backward(lower if lower is not None else b)
        ctx.order, ctx.h = spline_order, h
        return b

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_b):
        (lower,) = ctx.saved_tensors
        if ctx.order == 0:
            return torch.zeros_like(grad_b[..., 0]), None, None, None, None
        d = (lower[..., :-1] - lower[..., 1:]) * (1.0 / ctx.h)
        return (grad_b * d).sum(-1), None, None, None, None


class _TfkanLinear(torch.autograd.Function):
    """``y = B(x) @ (c * w) + SiLU(x) @ c (+ b)`` on a uniform grid, forward and backward by hand.

    Autograd on the same expression materialises ``c * w`` twice more in backward (once per
    factor of the product) and re-reads it for the reduction over the basis axis; here the
    weight gradient ``G = B^T dy`` is reused in place, so backward allocates one
    ``(in, nb, out)`` array (``dw``) instead of three.  Inputs: ``x (N, in)``, ``scale (in, out)``,
    ``spline_weight (in, nb, out)``, ``bias (out,)`` or None.
    """

    @staticmethod
    def forward(ctx, x, scale, spline_weight, bias, grid_size, spline_order, lo, h):
        n, n_in = x.shape
        n_out = scale.shape[1]
        basis, lower = _uniform_basis_and_lower(x, grid_size, spline_order, lo, h)
        w_eff = torch.mul(spline_weight, scale.unsqueeze(1))  # (in, nb, out)
        silu = F.silu(x)
        b2 = basis.reshape(n, -1)
        if bias is not None:
            y = torch.addmm(bias, b2, w_eff.view(-1, n_out))
        else:
            y = b2 @ w_eff.view(-1, n_out)
        y.addmm_(silu, scale)
        ctx.save_for_backward(x, b2, lower if lower is not None else basis, w_eff, silu, scale, spline_weight)
        ctx.order, ctx.h, ctx.has_bias = spline_order, h, bias is not None
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy):
        x, b2, lower, w_eff, silu, scale, spline_weight = ctx.saved_tensors
        n, n_in = x.shape
        n_out = scale.shape[1]
        gy = gy.contiguous()
        gx = gscale = gw = gb = None
        need_x, need_c, need_w, need_b = ctx.needs_input_grad[:4]
        if need_x:
            gbasis = (gy @ w_eff.view(-1, n_out).T).view(n, n_in, -1)  # (N, in, nb)
            if ctx.order == 0:
                gx = torch.zeros_like(x)
            else:
                d = (lower[..., :-1] - lower[..., 1:]) * (1.0 / ctx.h)
                gx = (gbasis * d).sum(-1)
            sig = torch.sigmoid(x)
            gx += (gy @ scale.T) * (sig * (1 + x * (1 - sig)))  # d SiLU / dx
        if need_c or need_w:
            g = (b2.T @ gy).view(n_in, -1, n_out)  # dL / d(c * w), (in, nb, out)
            if need_w:
                gw = g * scale.unsqueeze(1)
            if need_c:
                gscale = g.mul_(spline_weight).sum(1)
                gscale.addmm_(silu.T, gy)
        if need_b and ctx.has_bias:
            gb = gy.sum(0)
        return gx, gscale, gw, gb, None, None, None, None


def uniform_bspline_basis(x: Tensor, grid_size: int, spline_order: int, grid_range=(-1.0, 1.0)) -> Tensor:
    """:func:`bspline_basis` specialised to the uniform extended grid of :func:`uniform_knots`.

    With ``s_k = (x - t_k) / h`` the Cox–de Boor step is
    ``B_{k,p} = (s_k B_{k,p-1} + (p + 1 - s_k) B_{k+1,p-1}) / p``: no divisions by knot
    differences.  The gradient with respect to ``x`` uses the analytic B-spline derivative.
    Same values as :func:`bspline_basis` up to rounding.
    """
    lo, hi = float(grid_range[0]), float(grid_range[1])
    h = (hi - lo) / grid_size
    if x.requires_grad:
        return _UniformBSpline.apply(x, grid_size, spline_order, lo, h)
    return _uniform_basis_and_lower(x, grid_size, spline_order, lo, h)[0]


class KANLinear(nn.Module):
    r"""B-spline KAN layer, ``(*, in_features) -> (*, out_features)``.

    Args:
        in_features: size of the last input axis.
        out_features: size of the last output axis.
        grid_size: number of grid intervals ``G`` on ``grid_range``. Default 5.
        spline_order: B-spline order ``K``. Default 3.
        grid_range: ``(lo, hi)`` of the (initial) grid. Default ``(-1, 1)``.
        parameterization: ``"tfkan"`` (shared scale, fixed grid) or ``"efficient"`` (separate
            base/spline weights, :meth:`update_grid`). Default ``"tfkan"``.
        bias: learn an additive bias per output. Default True.
        spline_init_std: std of the spline coefficients at init (tfkan: 0.1).
        scale_base: efficient only, gain of the base-weight init. Default 1.0.
        enable_spline_scaler: efficient only, a separate per-edge spline scale. Default True.
        grid_eps: efficient only, blend between the uniform (1) and data-quantile (0) grid in
            :meth:`update_grid`. Default 0.02.

    Shape:
        - Input: ``(*, in_features)``
        - Output: ``(*, out_features)``, on the input's device.

    Attributes:
        knots (buffer): ``(G + 2K + 1,)`` for tfkan; ``(in_features, G + 2K + 1)`` for efficient.
        scale (tfkan): ``(in, out)`` shared scale ``c``.
        base_weight (efficient): ``(in, out)``.
        spline_weight: ``(in, G + K, out)`` spline coefficients ``w`` (``w_ijk`` is
            ``spline_weight[i, k, j]``).
        spline_scaler (efficient, optional): ``(in, out)``.
        bias: ``(out,)`` or None.

    Example:
        >>> layer = KANLinear(12, 112, grid_size=3)
        >>> sum(p.numel() for p in layer.parameters())  # 12*6*112 + 12*112 + 112
        9520
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        grid_size: int = 5,
        spline_order: int = 3,
        grid_range: tuple[float, float] = (-1.0, 1.0),
        parameterization: str = "tfkan",
        bias: bool = True,
        spline_init_std: float = 0.1,
        scale_base: float = 1.0,
        enable_spline_scaler: bool = True,
        grid_eps: float = 0.02,
        device=None,
        dtype=None,
    ):
        super().__init__()
        for name, v, lo in (("in_features", in_features, 1), ("out_features", out_features, 1),
                            ("grid_size", grid_size, 1), ("spline_order", spline_order, 0)):
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ValueError(f"KANLinear: {name} must be an int >= {lo}; got {v!r}")
        if parameterization not in _PARAMETERIZATIONS:
            raise ValueError(
                f"KANLinear: parameterization must be one of {list(_PARAMETERIZATIONS)}; got {parameterization!r}"
            )
        if len(grid_range) != 2 or not float(grid_range[0]) < float(grid_range[1]):
            raise ValueError(f"KANLinear: grid_range must be (lo, hi) with lo < hi; got {grid_range!r}")
        fk = {"device": device, "dtype": dtype}
        self.in_features = in_features
        self.out_features = out_features
        self.grid_size = grid_size
        self.spline_order = spline_order
        self.grid_range = (float(grid_range[0]), float(grid_range[1]))
        self.parameterization = parameterization
        self.spline_init_std = float(spline_init_std)
        self.scale_base = float(scale_base)
        self.enable_spline_scaler = bool(enable_spline_scaler) and parameterization == "efficient"
        self.grid_eps = float(grid_eps)
        n_basis = grid_size + spline_order
        knots = uniform_knots(grid_size, spline_order, self.grid_range, **fk)
        if parameterization == "efficient":
            knots = knots.unsqueeze(0).expand(in_features, -1).contiguous()
            self.base_weight = nn.Parameter(torch.empty(in_features, out_features, **fk))
            self.register_parameter("scale", None)
        else:
            self.scale = nn.Parameter(torch.empty(in_features, out_features, **fk))
            self.register_parameter("base_weight", None)
        self.register_buffer("knots", knots)
        # stored as (in, n_basis, out) so the flattened basis (N, in * n_basis) multiplies it directly
        self.spline_weight = nn.Parameter(torch.empty(in_features, n_basis, out_features, **fk))
        if self.enable_spline_scaler:
            self.spline_scaler = nn.Parameter(torch.empty(in_features, out_features, **fk))
        else:
            self.register_parameter("spline_scaler", None)
        if bias:
            self.bias = nn.Parameter(torch.empty(out_features, **fk))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    @property
    def n_basis(self) -> int:
        return self.grid_size + self.spline_order

    def reset_parameters(self) -> None:
        """Re-initialise: tfkan ``w ~ N(0, std^2)``, ``c`` Glorot-uniform, ``b = 0``; efficient
        ``base_weight`` Kaiming-uniform (gain ``scale_base``), ``w ~ N(0, std^2 / G)``, scaler 1."""
        with torch.no_grad():
            if self.parameterization == "tfkan":
                bound = math.sqrt(6.0 / (self.in_features + self.out_features))
                self.scale.uniform_(-bound, bound)
                self.spline_weight.normal_(0.0, self.spline_init_std)
            else:
                bound = self.scale_base / math.sqrt(self.in_features)
                self.base_weight.uniform_(-bound, bound)
                self.spline_weight.normal_(0.0, self.spline_init_std / math.sqrt(self.grid_size))
                if self.spline_scaler is not None:
                    self.spline_scaler.fill_(1.0)
            if self.bias is not None:
                self.bias.zero_()

    def basis(self, x: Tensor) -> Tensor:
        """B-spline basis of ``x`` (``(N, in)``) -> ``(N, in, G + K)``."""
        if self.parameterization == "tfkan":
            return uniform_bspline_basis(x, self.grid_size, self.spline_order, self.grid_range)
        return bspline_basis(x, self.knots, self.spline_order)

    def _effective_spline_weight(self) -> Tensor:
        """Spline coefficients times their scale, ``(in, n_basis, out)``."""
        if self.parameterization == "tfkan":
            return self.scale.unsqueeze(1) * self.spline_weight
        if self.spline_scaler is not None:
            return self.spline_weight * self.spline_scaler.unsqueeze(1)
        return self.spline_weight

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"KANLinear: expected input with last dimension {self.in_features}; got shape {tuple(x.shape)}"
            )
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        if self.parameterization == "tfkan":
            lo, hi = self.grid_range
            y = _TfkanLinear.apply(x2, self.scale, self.spline_weight, self.bias, self.grid_size,
                                   self.spline_order, lo, (hi - lo) / self.grid_size)
            return y.reshape(*lead, self.out_features)
        # efficient: knots per input (a buffer that update_grid moves), autograd through the basis
        B = self.basis(x2).reshape(x2.shape[0], -1)  # (N, in * nb)
        spl_w = self._effective_spline_weight().reshape(-1, self.out_features)  # (in * nb, out)
        y = torch.addmm(B @ spl_w, F.silu(x2), self.base_weight)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*lead, self.out_features)

    def edge_functions(self, x: Tensor) -> Tensor:
        """Values of every edge function ``phi_ij`` at ``x`` (``(N, in)``) -> ``(N, in, out)``
        (without the bias); handy for plotting the learned univariate maps."""
        B = self.basis(x)  # (N, in, nb)
        spl = torch.einsum("nik,iko->nio", B, self._effective_spline_weight())
        base_w = self.scale if self.parameterization == "tfkan" else self.base_weight
        return F.silu(x).unsqueeze(-1) * base_w + spl

    @torch.no_grad()
    def update_grid(self, x: Tensor, margin: float = 0.01) -> None:
        """Adapt the knots to the data ``x`` (``(N, in)`` or ``(*, in)``), efficient only.

        The new interior grid blends data quantiles and a uniform grid over the data range
        (weight ``grid_eps`` on uniform), is extended by ``K`` knots on each side, and the spline
        coefficients are refitted by least squares so that each edge's spline part is unchanged
        on the given data.
        """
        if self.parameterization != "efficient":
            raise ValueError(
                "KANLinear: update_grid needs parameterization='efficient' (the tfkan grid is fixed); "
                f"got {self.parameterization!r}"
            )
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"KANLinear: expected input with last dimension {self.in_features}; got shape {tuple(x.shape)}"
            )
        x = x.reshape(-1, self.in_features).to(self.knots.dtype)
        n = x.shape[0]
        G, K = self.grid_size, self.spline_order
        # current spline part of every edge on the data: (N, in, out)
        B = self.basis(x)
        target = torch.einsum("nik,iko->nio", B, self._effective_spline_weight())
        xs = torch.sort(x, dim=0).values
        idx = torch.linspace(0, n - 1, G + 1, device=x.device).long()
        grid_adaptive = xs[idx]  # (G+1, in)
        step = (xs[-1] - xs[0] + 2 * margin) / G
        grid_uniform = (torch.arange(G + 1, dtype=x.dtype, device=x.device).unsqueeze(1) * step
                        + xs[0] - margin)
        grid = self.grid_eps * grid_uniform + (1 - self.grid_eps) * grid_adaptive
        ext = torch.arange(1, K + 1, dtype=x.dtype, device=x.device).unsqueeze(1) * step
        grid = torch.cat([grid[:1] - ext.flip(0), grid, grid[-1:] + ext], dim=0)  # (G+2K+1, in)
        self.knots.copy_(grid.T)
        # refit coefficients: for each input i solve  B_i (N, nb) @ W_i (nb, out) = target_i
        Bn = self.basis(x).permute(1, 0, 2)  # (in, N, nb)
        new_w = torch.linalg.lstsq(Bn, target.permute(1, 0, 2)).solution  # (in, nb, out)
        if self.spline_scaler is not None:
            new_w = new_w / self.spline_scaler.unsqueeze(1)
        self.spline_weight.copy_(new_w)

    def extra_repr(self) -> str:
        s = f"in_features={self.in_features}, out_features={self.out_features}, grid_size={self.grid_size}"
        if self.spline_order != 3:
            s += f", spline_order={self.spline_order}"
        if self.grid_range != (-1.0, 1.0):
            s += f", grid_range={self.grid_range}"
        if self.parameterization != "tfkan":
            s += f", parameterization={self.parameterization!r}"
        if self.bias is None:
            s += ", bias=False"
        n = sum(p.numel() for p in self.parameters())
        return s + f" | {n} weights"
