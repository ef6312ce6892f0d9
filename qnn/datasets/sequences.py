"""Sequence tasks of the QRNN paper (Bausch 2020; spec ``qrnn.md`` §3).

Every task returns a :class:`SequenceTask`: integer words ``inputs`` and ``targets`` of shape
``(n, L)`` (``I`` bits per word, lane 0 = most significant bit), the scored positions
``score`` over the ``L - 1`` predictions (prediction ``t`` is for word ``t + 1``), and the
``ignore`` positions that evaluation postselects instead of sampling (teacher forcing at
don't-care steps).

Tasks: :func:`simple_seq`, :func:`elman_xor`, :func:`elman_letter`, :func:`dna`,
:func:`mnist_pixels` (MNIST 0/1, 3/6, ... pixel by pixel).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "SequenceTask",
    "simple_seq",
    "elman_xor",
    "elman_letter",
    "dna",
    "mnist_pixels",
    "preprocess_mnist",
    "deskew_mnist",
    "otsu_threshold",
    "lanczos_matrix",
    "ELMAN_LETTER_CODES",
]


@dataclass
class SequenceTask:
    """A batch of sequences.

    Attributes:
        name: task name.
        input_size: ``I``, bits per word.
        inputs: ``(n, L)`` long words fed at steps ``0..L-2``.
        targets: ``(n, L)`` long target words (``targets[:, 0]`` is never predicted).
        score: ``(L-1,)`` bool, the predictions that count for loss and accuracy.
        ignore: ``(L,)`` bool, target positions evaluation postselects (never scored).
        labels: optional ``(n,)`` class labels (MNIST).
    """

    name: str
    input_size: int
    inputs: Tensor
    targets: Tensor
    score: Tensor
    ignore: Tensor
    labels: Tensor | None = None

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def subset(self, idx) -> "SequenceTask":
        """The sequences ``idx`` (index tensor or slice)."""
        return SequenceTask(
            self.name,
            self.input_size,
            self.inputs[idx],
            self.targets[idx],
            self.score,
            self.ignore,
            None if self.labels is None else self.labels[idx],
        )


def _gen(seed):
    if isinstance(seed, torch.Generator):
        return seed
    g = torch.Generator()
    g.manual_seed(0 if seed is None else int(seed))
    return g


def _check_n(n, who):
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"{who}: n must be an int >= 1; got {n!r}")


def simple_seq() -> SequenceTask:
    """Memorise two 3-bit sequences of length 20: ``0,1,2,...,7,0,1,...`` and ``4,4,...``.

    Example:
        >>> simple_seq().inputs.shape
        torch.Size([2, 20])
    """
    a = torch.arange(20) % 8
    b = torch.full((20,), 4)
    x = torch.stack((a, b))
    L = 20
    return SequenceTask("simple-seq", 3, x, x.clone(), torch.ones(L - 1, dtype=torch.bool), torch.zeros(L, dtype=torch.bool))


def elman_xor(n: int, length: int = 36, seed=None) -> SequenceTask:
    """Elman's temporal XOR: triples ``(a, b, a XOR b)`` of bits, ``I = 2``.

    Input words are the bits (``00``/``01``).  Only the third bit of each triple is predictable
    and scored; the other targets carry the marker word ``10`` (= 2) and are postselected in
    evaluation.

    Example:
        >>> t = elman_xor(2, seed=0)
        >>> t.inputs.shape, int(t.score.sum())
        (torch.Size([2, 36]), 12)
    """
    _check_n(n, "elman_xor")
    if length < 3 or length % 3:
        raise ValueError(f"elman_xor: length must be a positive multiple of 3; got {length}")
    g = _gen(seed)
    ab = torch.randint(0, 2, (n, length // 3, 2), generator=g)
    x = torch.cat((ab, (ab[..., :1] ^ ab[..., 1:])), -1).reshape(n, length)
    pos = torch.arange(length)
    third = pos % 3 == 2
    y = torch.where(third, x, torch.full_like(x, 2))
    return SequenceTask("elman-xor", 2, x, y, third[1:].clone(), ~third)


#: 3-bit codes of the Elman letter task (consonant targets use the marker ``7`` = ``111``)
ELMAN_LETTER_CODES = {"b": 0, "d": 1, "g": 2, "a": 3, "i": 4, "u": 5}


def elman_letter(n: int, length: int = 36, seed=None) -> SequenceTask:
    """Elman's letter task: random consonants b/d/g expanded to ``ba``, ``dii``, ``guuu``; ``I = 3``.

    Words use :data:`ELMAN_LETTER_CODES`; the (unpredictable) consonant targets are the marker
    ``111``; every position is scored.

    Example:
        >>> t = elman_letter(3, seed=1)
        >>> t.inputs.shape, bool(t.score.all())
        (torch.Size([3, 36]), True)
    """
    _check_n(n, "elman_letter")
    rng = np.random.default_rng(None if isinstance(seed, torch.Generator) else seed)
    C = ELMAN_LETTER_CODES
    expand = {"b": "ba", "d": "dii", "g": "guuu"}
    xs = []
    for _ in range(n):
        s = ""
        while len(s) < length:
            s += expand["bdg"[rng.integers(3)]]
        xs.append([C[ch] for ch in s[:length]])
    x = torch.tensor(xs)
    cons = (x == C["b"]) | (x == C["d"]) | (x == C["g"])
    y = torch.where(cons, torch.full_like(x, 7), x)
    return SequenceTask("elman-letter", 3, x, y, torch.ones(length - 1, dtype=torch.bool), torch.zeros(length, dtype=torch.bool))


def dna(n: int, length: int, seed=None, *, carry: bool = True) -> SequenceTask:
    """Long-memory DNA task: ``L`` random bases 0-3 (GATC); one position ``u`` in ``[1, L/2)`` is
    marked by ``+4`` ("U"); the base under the mark has to be recalled at the last step; ``I = 3``.

    Targets follow the authors' generator (``RVQE/datasets/dna.py``): ``0`` before the mark, the
    marked word ``base + 4`` at ``u`` and ``base`` at every position after it (``carry=True``).
    Only the last prediction is scored; all other targets are postselected, in training (teacher
    forcing) and in evaluation (``ignore``), so the output lanes are projected onto ``base`` at
    every step after the mark.  ``carry=False`` gives the harder variant with all unscored
    targets ``0`` (postselected onto ``|000>``; the memory must then be carried by the
    workspace alone).

    Example:
        >>> t = dna(4, 10, seed=0)
        >>> t.inputs.shape, int(t.score.sum()), bool((t.targets[:, -1] < 4).all())
        (torch.Size([4, 10]), 1, True)
        >>> u = int((t.inputs[0] >= 4).nonzero())
        >>> bool(t.targets[0, u] == t.inputs[0, u]), bool((t.targets[0, u + 1:] == t.labels[0]).all())
        (True, True)
    """
    _check_n(n, "dna")
    if not isinstance(length, int) or length < 4:
        raise ValueError(f"dna: length must be an int >= 4; got {length!r}")
    g = _gen(seed)
    x = torch.randint(0, 4, (n, length), generator=g)
    hi = max(2, length // 2)
    mark = torch.randint(1, hi, (n,), generator=g)
    ar = torch.arange(n)
    base = x[ar, mark].clone()
    x[ar, mark] += 4
    y = torch.zeros_like(x)
    if carry:
        after = torch.arange(length).unsqueeze(0) > mark.unsqueeze(1)
        y = torch.where(after, base.unsqueeze(1).expand_as(x), y)
        y[ar, mark] = x[ar, mark]
    y[:, -1] = base
    score = torch.zeros(length - 1, dtype=torch.bool)
    score[-1] = True
    ignore = torch.ones(length, dtype=torch.bool)
    ignore[0] = False
    ignore[-1] = False
    return SequenceTask(f"dna-{length}", 3, x, y, score, ignore, base)


def _otsu_batch(x: np.ndarray) -> np.ndarray:
    """Per-row Otsu threshold of ``x (n, m)``: the value ``t`` maximising the between-class
    variance of ``{v <= t}`` and ``{v > t}`` (first maximum; ``min`` if all values are equal)."""
    v = np.sort(x.astype(np.float64), axis=1)
    n, m = v.shape
    cs = np.cumsum(v, axis=1)
    k = np.arange(1, m)  # size of the lower class
    w0 = k / m
    mu0 = cs[:, :-1] / k
    mu1 = (cs[:, -1:] - cs[:, :-1]) / (m - k)
    var = w0 * (1 - w0) * (mu0 - mu1) ** 2
    valid = v[:, :-1] < v[:, 1:]
    var = np.where(valid, var, -1.0)
    best = var.argmax(axis=1)
    t = v[np.arange(n), best]
    return np.where(var.max(axis=1) < 0, v[:, 0], t)


def otsu_threshold(img: np.ndarray) -> float:
    """Otsu's threshold (maximal between-class variance) of a grey image; ink is ``> threshold``."""
    return float(_otsu_batch(np.asarray(img).reshape(1, -1))[0])


def deskew_mnist(images: np.ndarray) -> np.ndarray:
    """Deskew grey images by their second moments (the usual MNIST deskewing).

    For each image, with intensity-weighted centre of mass ``(r0, c0)``, row variance ``var_r``
    and covariance ``cov_rc``, the slant ``a = cov_rc / var_r`` is removed by the shear
    ``out[r, c] = img[r, c + a (r - h) + (c0 - w)]`` (bilinear, zero outside), which also moves the
    centre of mass to the image centre ``(h, w) = ((H-1)/2, (W-1)/2)``.  After deskewing the
    row/column covariance of an image is ~0.  Blank images are returned unchanged.

    Args:
        images: ``(n, H, W)`` grey images (any real dtype; ink = large values).

    Returns:
        ``(n, H, W)`` float64 images.

    Example:
        >>> img = np.zeros((1, 28, 28)); img[0, 4:24, 10:13] = 1.0  # a vertical bar
        >>> bool(np.allclose(deskew_mnist(img).sum(), img.sum(), atol=1e-6))
        True
    """
    x = np.asarray(images)
    if x.ndim != 3 or not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"deskew_mnist: expected a real array of shape (n, H, W); got {x.dtype} {x.shape}")
    x = x.astype(np.float64)
    n, H, W = x.shape
    r = np.arange(H, dtype=np.float64)[None, :, None]
    c = np.arange(W, dtype=np.float64)[None, None, :]
    mass = x.sum((1, 2))
    safe = np.where(mass > 0, mass, 1.0)
    r0 = (x * r).sum((1, 2)) / safe
    c0 = (x * c).sum((1, 2)) / safe
    var_r = (x * (r - r0[:, None, None]) ** 2).sum((1, 2)) / safe
    cov = (x * (r - r0[:, None, None]) * (c - c0[:, None, None])).sum((1, 2)) / safe
    a = np.where((mass > 0) & (var_r > 0), cov / np.where(var_r > 0, var_r, 1.0), 0.0)
    h, w = (H - 1) / 2, (W - 1) / 2
    # source coordinates of every output pixel
    src_r = np.broadcast_to(r + (r0[:, None, None] - h), (n, H, W))
    src_c = c + a[:, None, None] * (r - h) + (c0[:, None, None] - w)
    src_c = np.broadcast_to(src_c, (n, H, W))
    out = np.zeros_like(x)
    rf, cf = np.floor(src_r), np.floor(src_c)
    fr, fc = src_r - rf, src_c - cf
    idx = np.arange(n)[:, None, None]
    for dr, wr in ((0, 1 - fr), (1, fr)):
        for dc, wc in ((0, 1 - fc), (1, fc)):
            rr, cc = (rf + dr).astype(np.int64), (cf + dc).astype(np.int64)
            ok = (rr >= 0) & (rr < H) & (cc >= 0) & (cc < W)
            vals = x[idx, np.clip(rr, 0, H - 1), np.clip(cc, 0, W - 1)]
            out += np.where(ok, vals, 0.0) * wr * wc
    blank = mass <= 0
    out[blank] = x[blank]
    return out


def lanczos_matrix(n_in: int, n_out: int, a: int = 3) -> np.ndarray:
    """Separable Lanczos resampling matrix ``(n_out, n_in)`` for resizing ``n_in`` pixels to ``n_out``.

    Output pixel ``i`` sits at source coordinate ``c = (i + 1/2) n_in / n_out - 1/2``; its weights
    are the Lanczos-``a`` window ``sinc(x) sinc(x / a)`` at ``x = (j - c) / s`` with
    ``s = max(1, n_in / n_out)`` (the kernel is widened when downsampling, so it low-pass filters),
    source indices outside the image reflected with the edge pixel repeated (Mathematica's
    ``Padding -> "Reversed"``), and each row normalised to sum 1.  Mathematica's ``ImageResize`` uses
    Lanczos resampling by default.

    Example:
        >>> M = lanczos_matrix(20, 10)
        >>> M.shape, bool(np.allclose(M.sum(1), 1.0))
        ((10, 20), True)
    """
    if n_in < 1 or n_out < 1 or a < 1:
        raise ValueError(f"lanczos_matrix: expected positive sizes and a >= 1; got {n_in}, {n_out}, a={a}")
    s = max(1.0, n_in / n_out)
    c = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    r = int(np.ceil(a * s))
    j = np.floor(c)[:, None].astype(np.int64) + np.arange(-r, r + 2)[None, :]
    x = (j - c[:, None]) / s
    w = np.where(np.abs(x) < a, np.sinc(x) * np.sinc(x / a), 0.0)
    period = 2 * n_in
    jj = np.mod(j, period)
    jj = np.where(jj >= n_in, period - 1 - jj, jj)  # symmetric reflection (edge repeated)
    M = np.zeros((n_out, n_in))
    np.add.at(M, (np.broadcast_to(np.arange(n_out)[:, None], jj.shape), jj), w)
    return M / M.sum(1, keepdims=True)


def preprocess_mnist(
    images: np.ndarray,
    *,
    crop: int = 20,
    size: int = 10,
    background: int = 1,
    deskew: bool = False,
    resize: str = "box",
) -> np.ndarray:
    """Crop the central ``crop x crop`` box, downsample to ``size x size``, binarise with a
    per-image Otsu threshold (ink = pixels above it).

    ``resize="box"`` averages ``crop/size`` x ``crop/size`` blocks; ``resize="lanczos"`` uses the
    Lanczos-3 filter of :func:`lanczos_matrix` (Mathematica's ``ImageResize`` default, which the
    authors' pipeline called; it blurs more than the box average, so thin strokes keep more ink
    pixels after binarisation).  With ``deskew=True`` the 28x28 images are first deskewed
    (:func:`deskew_mnist`), as in the authors' ``mnist36-ds`` data.

    Returns ``(n, size, size)`` uint8 bits, background bit = ``background``.
    """
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"preprocess_mnist: expected images of shape (n, 28, 28); got {images.shape}")
    if resize not in ("box", "lanczos"):
        raise ValueError(f"preprocess_mnist: resize must be 'box' or 'lanczos'; got {resize!r}")
    if resize == "box" and crop % size:
        raise ValueError(f"preprocess_mnist: crop ({crop}) must be a multiple of size ({size})")
    o = (28 - crop) // 2
    imgs = deskew_mnist(images) if deskew else images.astype(np.float64)
    x = imgs[:, o : o + crop, o : o + crop] / 255.0
    if resize == "box":
        f = crop // size
        x = x.reshape(-1, size, f, size, f).mean((2, 4))
    else:
        M = lanczos_matrix(crop, size)
        x = np.einsum("ij,njk,lk->nil", M, x, M)
    t = _otsu_batch(x.reshape(len(x), -1))
    ink = x > t[:, None, None]
    return np.where(ink, 1 - background, background).astype(np.uint8)


def mnist_pixels(
    digits=(0, 1),
    split: str = "train",
    *,
    n: int | None = None,
    data_dir=None,
    download: bool = False,
    seed=None,
    background: int = 1,
    fashion: bool = False,
    deskew: bool = False,
    resize: str = "box",
) -> SequenceTask:
    """Pixel-by-pixel MNIST (``mnist01``, ``mnist36``, ...), as in the authors' pipeline.

    Images are cropped to 20x20, resized to 10x10, binarised (:func:`preprocess_mnist`); step ``t``
    feeds the word ``(row_scan[t], col_scan[t])`` (``I = 2``; the row-major and the column-major
    scan of the 10x10 bits), for ``L = 100`` words.  The label (index of the digit in ``digits``,
    ``ceil(log2 #digits)`` bits left-padded to a multiple of ``I``) is the target of the last word;
    all other targets are ``0`` and postselected.  Only the last prediction is scored.

    Args:
        digits: the classes, in label order.
        split: ``"train"`` or ``"test"``.
        n: optional number of sequences (random subset, balanced is not enforced).
        data_dir, download: see :func:`qnn.datasets.mnist.load_mnist`.
        seed: subset seed.
        background: bit value of background pixels (the authors' CSVs use 1).
        fashion: use Fashion-MNIST instead.
        deskew: deskew the 28x28 images first (:func:`deskew_mnist`; the authors' ``-ds`` sets).
        resize: ``"box"`` (block average) or ``"lanczos"`` (Mathematica's default resampling; task
            suffix ``-lz``), see :func:`preprocess_mnist`.

    Example:
        >>> t = mnist_pixels((0, 1), "test", n=8)  # doctest: +SKIP
        >>> t.inputs.shape, t.input_size  # doctest: +SKIP
        (torch.Size([8, 100]), 2)
    """
    from qnn.datasets.mnist import load_fashion_mnist, load_mnist

    digits = tuple(int(d) for d in digits)
    if len(digits) < 2 or len(set(digits)) != len(digits):
        raise ValueError(f"mnist_pixels: digits must be >= 2 distinct classes; got {digits}")
    nbits = max(1, int(np.ceil(np.log2(len(digits)))))
    if nbits > 2:
        raise ValueError(f"mnist_pixels: at most 4 classes fit the 2-bit output word; got {len(digits)}")
    X, y = (load_fashion_mnist if fashion else load_mnist)(split, data_dir=data_dir, download=download)
    keep = np.isin(y, digits)
    X, y = X[keep], y[keep]
    if n is not None:
        rng = np.random.default_rng(seed)
        idx = rng.choice(len(y), size=min(n, len(y)), replace=False)
        X, y = X[idx], y[idx]
    bits = preprocess_mnist(X, background=background, deskew=deskew, resize=resize)
    row = bits.reshape(len(bits), -1)
    col = bits.transpose(0, 2, 1).reshape(len(bits), -1)
    words = torch.from_numpy((row.astype(np.int64) << 1) | col.astype(np.int64))
    lab = torch.tensor([digits.index(int(v)) for v in y], dtype=torch.long)
    L = words.shape[1]
    targets = torch.zeros_like(words)
    targets[:, -1] = lab
    score = torch.zeros(L - 1, dtype=torch.bool)
    score[-1] = True
    ignore = torch.ones(L, dtype=torch.bool)
    ignore[0] = False
    ignore[-1] = False
    name = (
        ("fashion" if fashion else "mnist")
        + "".join(map(str, digits))
        + ("-ds" if deskew else "")
        + ("-lz" if resize == "lanczos" else "")
    )
    return SequenceTask(name, 2, words, targets, score, ignore, lab)
