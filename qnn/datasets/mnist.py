"""MNIST and Fashion-MNIST from their IDX ``.gz`` files.

Files are looked up under ``<data_dir>/mnist/`` (or ``<data_dir>/fashion_mnist/``), where
``data_dir`` defaults to ``$QNN_DATA_DIR`` (see :func:`qnn.datasets.get_data_dir`).  Missing
files are downloaded from the official host only with ``download=True`` and checked against
the SHA-256 of the official ``.gz``.

Note: a local ``train-images-idx3-ubyte.gz`` may be a re-compressed copy whose decompressed
content is byte-identical to the official file but whose gzip header differs (and so does its
``.gz`` SHA-256, see ``PROVENANCE.md`` of the project's data directory); local files are used
as they are and their decoded content is validated (magic number, shape, size).
"""

from __future__ import annotations

import gzip
import os
import struct

import numpy as np

from qnn.datasets._base import DataError, fetch_file

__all__ = ["load_mnist", "load_fashion_mnist", "read_idx", "MNIST_FILES", "FASHION_MNIST_FILES"]

_MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"  # mirror used by torchvision
_MNIST_OFFICIAL = "http://yann.lecun.com/exdb/mnist/"
_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

#: file name -> SHA-256 of the official ``.gz``
MNIST_FILES = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
FASHION_MNIST_FILES = {
    "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (optionally gzipped) of unsigned bytes into a numpy array.

    Raises:
        DataError: bad magic number, unsupported element type, or truncated data.
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4:
        raise DataError(f"IDX file {path} is truncated: {len(data)} bytes")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise DataError(
            f"IDX file {path}: expected magic 0x0000 and element type 0x08 (ubyte); got {zero:#06x}, {dtype_code:#04x}"
        )
    shape = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    n = int(np.prod(shape))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != n:
        raise DataError(f"IDX file {path}: header says {shape} = {n} values; found {body.size}")
    return body.reshape(shape).copy()


def _load(folder: str, files: dict, url: str, split: str, data_dir, download: bool):
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}")
    prefix = "train" if split == "train" else "t10k"
    out = []
    for kind in ("images-idx3", "labels-idx1"):
        name = f"{prefix}-{kind}-ubyte.gz"
        path = fetch_file(f"{folder}/{name}", url=url + name, sha256=files[name], data_dir=data_dir, download=download)
        out.append(read_idx(path))
    images, labels = out
    n = 60000 if split == "train" else 10000
    if images.shape != (n, 28, 28) or labels.shape != (n,):
        raise DataError(f"{folder} {split}: expected images ({n}, 28, 28) and labels ({n},); got {images.shape}, {labels.shape}")
    return images, labels.astype(np.int64)


def load_mnist(split: str = "train", *, data_dir=None, download: bool = False):
    """MNIST digits as ``(images uint8 (n, 28, 28), labels int64 (n,))``.

    Args:
        split (str): ``"train"`` (60000) or ``"test"`` (10000).
        data_dir: folder holding ``mnist/*.gz``; default ``$QNN_DATA_DIR``.
        download (bool): fetch missing files (SHA-256 checked).

    Example:
        >>> X, y = load_mnist("test")  # doctest: +SKIP
        >>> X.shape, y[:3].tolist()  # doctest: +SKIP
        ((10000, 28, 28), [7, 2, 1])
    """
    return _load("mnist", MNIST_FILES, _MNIST_URL, split, data_dir, download)


def load_fashion_mnist(split: str = "train", *, data_dir=None, download: bool = False):
    """Fashion-MNIST, same format as :func:`load_mnist` (files under ``fashion_mnist/``)."""
    return _load("fashion_mnist", FASHION_MNIST_FILES, _FASHION_URL, split, data_dir, download)
