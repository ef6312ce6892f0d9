import os
from pathlib import Path

import numpy as np
import pytest
import torch

from qnn.datasets import sequences as S

DATA = Path(os.environ.get("QNN_DATA_DIR", "/work/shared/datasets"))
needs_mnist = pytest.mark.skipif(
    not (DATA / "mnist" / "t10k-images-idx3-ubyte.gz").exists(),
    reason=f"MNIST IDX files not found under {DATA}/mnist (set QNN_DATA_DIR)",
)


def test_simple_seq():
    t = S.simple_seq()
    assert t.input_size == 3 and t.inputs.shape == (2, 20)
    assert t.inputs[0, :10].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 0, 1]
    assert bool((t.inputs[1] == 4).all()) and bool(t.score.all())


def test_elman_xor():
    t = S.elman_xor(5, seed=3)
    x = t.inputs.view(5, 12, 3)
    assert torch.equal(x[..., 2], x[..., 0] ^ x[..., 1])
    assert t.input_size == 2 and set(t.targets.unique().tolist()) <= {0, 1, 2}
    pos = torch.arange(36)
    assert torch.equal(t.targets[:, pos % 3 == 2], t.inputs[:, pos % 3 == 2])
    assert bool((t.targets[:, pos % 3 != 2] == 2).all())
    assert torch.equal(t.score, (pos[1:] % 3 == 2)) and torch.equal(t.ignore, pos % 3 != 2)
    assert torch.equal(S.elman_xor(5, seed=3).inputs, t.inputs)  # seeded
    with pytest.raises(ValueError, match="elman_xor: length must be a positive multiple of 3; got 10"):
        S.elman_xor(2, length=10)
    with pytest.raises(ValueError, match="elman_xor: n must be an int >= 1; got 0"):
        S.elman_xor(0)


def test_elman_letter():
    t = S.elman_letter(4, seed=0)
    C = S.ELMAN_LETTER_CODES
    inv = {v: k for k, v in C.items()}
    for row in t.inputs.tolist():
        s = "".join(inv[v] for v in row)
        # every consonant is followed by its vowel run (possibly cut at the end)
        for i, ch in enumerate(s):
            if ch == "d":
                assert s[i + 1 : i + 3] == "ii"[: len(s[i + 1 : i + 3])]
            if ch == "g":
                assert s[i + 1 : i + 4] == "uuu"[: len(s[i + 1 : i + 4])]
    cons = t.inputs <= 2
    assert bool((t.targets[cons] == 7).all()) and torch.equal(t.targets[~cons], t.inputs[~cons])


def test_dna():
    t = S.dna(50, 20, seed=1)
    assert t.input_size == 3
    marked = t.inputs >= 4
    assert bool((marked.sum(1) == 1).all())
    pos = marked.float().argmax(1)
    assert bool(((pos >= 1) & (pos < 10)).all())
    base = t.inputs[torch.arange(50), pos] - 4
    assert torch.equal(t.targets[:, -1], base) and torch.equal(t.labels, base)
    assert int(t.score.sum()) == 1 and bool(t.score[-1])
    assert bool(t.ignore[1:-1].all()) and not bool(t.ignore[0]) and not bool(t.ignore[-1])
    with pytest.raises(ValueError, match="dna: length must be an int >= 4; got 2"):
        S.dna(3, 2)


def test_dna_targets_follow_the_authors_layout():
    """The authors' generator (RVQE/datasets/dna.py: ``target[u:] = base; target[u] = base + 4``)
    teacher-forces the remembered base at every step after the mark; a variant with 0 targets
    there (postselecting |000>) is a much harder task the authors never trained on."""
    t = S.dna(64, 12, seed=3)
    for i in range(64):
        u = int((t.inputs[i] >= 4).nonzero())
        b = int(t.inputs[i, u]) - 4
        expect = torch.zeros(12, dtype=torch.long)
        expect[u] = b + 4
        expect[u + 1 :] = b
        assert torch.equal(t.targets[i], expect), (i, t.inputs[i], t.targets[i])
    # the harder variant: 0 everywhere except the last target; same inputs for the same seed
    h = S.dna(64, 12, seed=3, carry=False)
    assert torch.equal(h.inputs, t.inputs)
    assert bool((h.targets[:, :-1] == 0).all()) and torch.equal(h.targets[:, -1], t.targets[:, -1])


def test_otsu_and_preprocess():
    img = np.zeros((28, 28), dtype=np.uint8)
    img[8:20, 12:16] = 255
    bits = S.preprocess_mnist(img[None])
    assert bits.shape == (1, 10, 10)
    assert bits[0, 4, 5] == 0 and bits[0, 0, 0] == 1  # ink = 0, background = 1
    assert S.preprocess_mnist(img[None], background=0)[0, 0, 0] == 0
    with pytest.raises(ValueError, match=r"preprocess_mnist: expected images of shape \(n, 28, 28\)"):
        S.preprocess_mnist(np.zeros((2, 10, 10)))
    assert 0.0 <= S.otsu_threshold(np.array([0.0, 0.1, 0.9, 1.0])) < 0.9


def test_lanczos_matrix():
    # equal sizes: sinc at integer offsets is a delta, so the resize is the identity
    np.testing.assert_allclose(S.lanczos_matrix(12, 12), np.eye(12), atol=1e-12)
    M = S.lanczos_matrix(20, 10)
    np.testing.assert_allclose(M.sum(1), 1.0, atol=1e-12)  # constants are kept
    # away from the borders the window is symmetric about c = 2i + 1/2: a linear ramp is reproduced
    ramp = np.arange(20.0)
    np.testing.assert_allclose((M @ ramp)[3:7], 2 * np.arange(3, 7) + 0.5, atol=1e-12)
    # the kernel is widened by the factor 2: 6 source pixels on each side (a = 3)
    assert np.count_nonzero(np.abs(M[5]) > 1e-12) == 12
    # at the border the reflected pixels are folded back in (edge repeated): a constant stays constant
    np.testing.assert_allclose(M @ np.full(20, 0.7), 0.7, atol=1e-12)
    with pytest.raises(ValueError, match="lanczos_matrix: expected positive sizes"):
        S.lanczos_matrix(0, 10)


def test_preprocess_lanczos():
    img = np.zeros((1, 28, 28))
    img[0, 6:22, 13] = 255.0  # a one-pixel-wide vertical stroke
    img[0, 6:22, 18:21] = 255.0  # and a three-pixel-wide one
    box = S.preprocess_mnist(img, background=0)
    lz = S.preprocess_mnist(img, background=0, resize="lanczos")
    assert lz.shape == (1, 10, 10) and set(np.unique(lz)) <= {0, 1}
    # crisp strokes: both resizes keep both of them, in the same places
    assert lz[0, 1:9, 4].all() and lz[0, 1:9, 7:9].all() and lz.sum() == 3 * 8
    np.testing.assert_array_equal(lz, box)
    with pytest.raises(ValueError, match="preprocess_mnist: resize must be 'box' or 'lanczos'; got 'bicubic'"):
        S.preprocess_mnist(img, resize="bicubic")


def _slant(x):
    """Intensity-weighted cov(row, col) / var(row) of each image."""
    x = x.astype(float)
    r = np.arange(x.shape[1])[None, :, None]
    c = np.arange(x.shape[2])[None, None, :]
    m = x.sum((1, 2))
    r0 = (x * r).sum((1, 2)) / m
    c0 = (x * c).sum((1, 2)) / m
    dr, dc = r - r0[:, None, None], c - c0[:, None, None]
    return (x * dr * dc).sum((1, 2)) / (x * dr**2).sum((1, 2)), r0, c0


def test_deskew_straightens_a_slanted_bar():
    img = np.zeros((2, 28, 28))
    for r in range(4, 24):  # a bar leaning right by 1/3 pixel per row, off-centre
        c = 6 + (r - 4) // 3
        img[0, r, c : c + 3] = 1.0
    img[1, 5:20, 16:18] = 1.0  # upright bar, off-centre
    slant, _, _ = _slant(img)
    assert slant[0] > 0.25 and abs(slant[1]) < 1e-12
    out = S.deskew_mnist(img)
    s, r0, c0 = _slant(out)
    assert np.abs(s).max() < 0.02, s
    np.testing.assert_allclose(c0, 13.5, atol=1e-6)  # centre of mass moved to the centre
    np.testing.assert_allclose(r0, 13.5, atol=1e-6)
    np.testing.assert_allclose(out.sum((1, 2)), img.sum((1, 2)), rtol=1e-9)  # nothing cut off
    # a blank image stays blank (no division by zero)
    assert not S.deskew_mnist(np.zeros((1, 28, 28))).any()
    with pytest.raises(ValueError, match=r"deskew_mnist: expected a real array of shape \(n, H, W\)"):
        S.deskew_mnist(np.zeros((28, 28)))
    # preprocess with deskew: the slanted bar becomes a vertical one (same columns in every ink row)
    bits = S.preprocess_mnist((img[:1] * 255).astype(np.uint8), deskew=True, background=0)[0]
    cols = {tuple(np.flatnonzero(row)) for row in bits if row.any()}
    assert len(cols) == 1, bits


@needs_mnist
def test_mnist_pixels_deskewed():
    from qnn.datasets.mnist import load_mnist

    X, y = load_mnist("test", data_dir=DATA)
    X = X[np.isin(y, (3, 6))][:200]
    before, _, _ = _slant(X)
    after, _, _ = _slant(S.deskew_mnist(X))
    assert np.abs(after).mean() < 0.05 * np.abs(before).mean()
    t = S.mnist_pixels((3, 6), "test", n=40, seed=0, data_dir=DATA, deskew=True)
    u = S.mnist_pixels((3, 6), "test", n=40, seed=0, data_dir=DATA)
    assert t.name == "mnist36-ds" and torch.equal(t.labels, u.labels)
    assert not torch.equal(t.inputs, u.inputs)


@needs_mnist
def test_mnist_pixels_lanczos_separates_ink_counts():
    """With the Lanczos resize the number of ink pixels separates 0s from 1s better than with the
    box average (the trained 0/1 QRNNs behave much like ink counters)."""
    def best_ink_threshold_accuracy(t):
        ink = (1 - ((t.inputs >> 1) & 1)).sum(1).numpy()
        y = t.labels.numpy()
        return max(((ink > k) == (y == 0)).mean() for k in range(101))

    box = S.mnist_pixels((0, 1), "test", data_dir=DATA)
    lz = S.mnist_pixels((0, 1), "test", data_dir=DATA, resize="lanczos")
    assert lz.name == "mnist01-lz" and torch.equal(lz.labels, box.labels)
    assert best_ink_threshold_accuracy(lz) > best_ink_threshold_accuracy(box) + 0.005


@needs_mnist
def test_mnist_pixels():
    t = S.mnist_pixels((3, 6), "test", n=40, seed=0, data_dir=DATA)
    assert t.inputs.shape == (40, 100) and t.input_size == 2 and t.name == "mnist36"
    assert int(t.inputs.max()) <= 3 and set(t.labels.tolist()) <= {0, 1}
    assert torch.equal(t.targets[:, -1], t.labels) and bool((t.targets[:, :-1] == 0).all())
    row = (t.inputs >> 1) & 1
    col = t.inputs & 1
    # the column scan is the transposed row scan
    assert torch.equal(row.view(40, 10, 10).transpose(1, 2).reshape(40, 100), col)
    assert float(row.float().mean()) > 0.5  # background (1) dominates
    full = S.mnist_pixels((0, 1), "test", data_dir=DATA)
    assert len(full) == 980 + 1135
    with pytest.raises(ValueError, match="mnist_pixels: digits must be >= 2 distinct classes"):
        S.mnist_pixels((1, 1), "test", data_dir=DATA)
