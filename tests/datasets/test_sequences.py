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
