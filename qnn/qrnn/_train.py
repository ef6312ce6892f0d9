"""Loss and evaluation helpers for the QRNN (spec §3)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["qrnn_loss", "loss_offset", "word_error_rate", "evaluate_sequences"]


def loss_offset(input_size: int) -> float:
    """``log(2**I - 1 + e) - 1``: CE of a perfect one-hot probability vector fed as logits.

    Example:
        >>> round(loss_offset(2), 4)
        0.7437
    """
    return math.log((1 << input_size) - 1 + math.e) - 1.0


def _mask(mask, targets: Tensor) -> Tensor:
    if mask is None:
        return torch.ones_like(targets, dtype=torch.bool)
    m = torch.as_tensor(mask, device=targets.device).bool()
    if m.dim() == 1:
        if m.shape[0] != targets.shape[-1]:
            raise ValueError(f"qrnn_loss: mask of shape (T,) must have T={targets.shape[-1]}; got {m.shape[0]}")
        m = m.expand_as(targets)
    if m.shape != targets.shape:
        raise ValueError(f"qrnn_loss: mask must have shape {tuple(targets.shape)} or (T,); got {tuple(m.shape)}")
    return m


def qrnn_loss(probs: Tensor, targets: Tensor, mask=None, *, kind: str = "ce_probs") -> Tensor:
    """QRNN training loss over the scored positions.

    ``kind="ce_probs"`` (the authors'): cross-entropy of ``softmax(probs)`` (probabilities fed
    as logits) minus :func:`loss_offset`, so a perfect prediction scores 0.
    ``kind="nll"``: mean ``-log p[target]``.

    Args:
        probs (Tensor): ``(B, K, T)`` with ``K = 2**I`` (``QRNNOutput.probs``).
        targets (Tensor): ``(B, T)`` target words (``targets_full[:, 1:]``).
        mask: bool ``(T,)`` or ``(B, T)`` positions to score (default all).

    Example:
        >>> p = torch.zeros(1, 4, 1); p[0, 2, 0] = 1.0
        >>> float(qrnn_loss(p, torch.tensor([[2]]))) < 1e-6
        True
    """
    if probs.dim() != 3 or targets.shape != (probs.shape[0], probs.shape[2]):
        raise ValueError(
            f"qrnn_loss: Expected probs (B, K, T) and targets (B, T); got {tuple(probs.shape)} and {tuple(targets.shape)}"
        )
    m = _mask(mask, targets)
    if not bool(m.any()):
        raise ValueError("qrnn_loss: mask selects no position")
    K = probs.shape[1]
    I = int(round(math.log2(K)))
    logits = probs.transpose(1, 2)[m]  # (n, K)
    tg = targets[m]
    if kind == "ce_probs":
        return F.cross_entropy(logits, tg) - loss_offset(I)
    if kind == "nll":
        return -torch.log(logits.gather(1, tg.unsqueeze(1)).clamp_min(1e-30)).mean()
    raise ValueError(f"qrnn_loss: kind must be 'ce_probs' or 'nll'; got {kind!r}")


def word_error_rate(words: Tensor, targets: Tensor, mask=None) -> float:
    """1 - fraction of exactly matched words at the masked positions (the authors' CER)."""
    m = _mask(mask, targets)
    return 1.0 - float((words[m] == targets[m]).float().mean())


@torch.no_grad()
def evaluate_sequences(model, inputs: Tensor, targets: Tensor, score_mask, ignore_mask=None, *, readout="sample",
                       batch_size: int = 1000, generator=None) -> dict:
    """Evaluate a :class:`~qnn.qrnn.QRNN` (postselect the ``ignore_mask`` steps, sample or argmax the rest).

    Returns ``{"loss", "accuracy", "min_postsel_prob"}`` where accuracy is the fraction of
    sequences whose words at all ``score_mask`` positions match.
    """
    L = inputs.shape[1]
    sm = _mask(score_mask, targets[:, 1:])
    ps = torch.zeros(L, dtype=torch.bool) if ignore_mask is None else torch.as_tensor(ignore_mask).bool()
    losses, correct, n, minp = [], 0, 0, 1.0
    for i in range(0, inputs.shape[0], batch_size):
        x, y = inputs[i : i + batch_size], targets[i : i + batch_size]
        out = model(x, y, postselect=ps, readout=readout, generator=generator)
        m = sm[i : i + batch_size]
        losses.append(float(qrnn_loss(out.probs, y[:, 1:], m)) * x.shape[0])
        ok = ((out.words == y[:, 1:]) | ~m).all(-1)
        correct += int(ok.sum())
        n += x.shape[0]
        minp = min(minp, float(out.min_postsel_prob))
    return {"loss": sum(losses) / n, "accuracy": correct / n, "min_postsel_prob": minp}
