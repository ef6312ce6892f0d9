import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from qnn.datasets import DataError
from qnn.datasets.mnist import FASHION_MNIST_FILES, MNIST_FILES, load_fashion_mnist, load_mnist, read_idx

DATA = Path(os.environ.get("QNN_DATA_DIR", "/work/shared/datasets"))
HAS_MNIST = (DATA / "mnist" / "t10k-images-idx3-ubyte.gz").exists()
HAS_FASHION = (DATA / "fashion_mnist" / "t10k-images-idx3-ubyte.gz").exists()
needs_mnist = pytest.mark.skipif(not HAS_MNIST, reason=f"MNIST IDX files not found under {DATA}/mnist (set QNN_DATA_DIR)")


def _write_idx(path, arr, magic_type=0x08, gz=True):
    header = struct.pack(">HBB", 0, magic_type, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


class TestReadIdx:
    def test_roundtrip(self, tmp_path):
        a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
        _write_idx(tmp_path / "a.gz", a)
        _write_idx(tmp_path / "b", a, gz=False)
        assert np.array_equal(read_idx(tmp_path / "a.gz"), a)
        assert np.array_equal(read_idx(tmp_path / "b"), a)

    def test_bad_type(self, tmp_path):
        _write_idx(tmp_path / "a.gz", np.zeros((2, 2)), magic_type=0x0D)
        with pytest.raises(DataError, match="expected magic 0x0000 and element type 0x08"):
            read_idx(tmp_path / "a.gz")

    def test_truncated(self, tmp_path):
        a = np.zeros((3, 4), dtype=np.uint8)
        header = struct.pack(">HBB", 0, 8, 2) + struct.pack(">II", 3, 4)
        gzip.open(tmp_path / "t.gz", "wb").write(header + a.tobytes()[:5])
        with pytest.raises(DataError, match=r"header says \(3, 4\) = 12 values; found 5"):
            read_idx(tmp_path / "t.gz")


def test_checksum_tables():
    for files in (MNIST_FILES, FASHION_MNIST_FILES):
        assert len(files) == 4
        assert all(len(h) == 64 and int(h, 16) >= 0 for h in files.values())


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="dataset file 'mnist/t10k-images-idx3-ubyte.gz' not found"):
        load_mnist("test", data_dir=tmp_path, download=False)
    with pytest.raises(ValueError, match="split must be 'train' or 'test'; got 'val'"):
        load_mnist("val", data_dir=tmp_path)


@needs_mnist
def test_mnist_test_split():
    X, y = load_mnist("test", data_dir=DATA)
    assert X.shape == (10000, 28, 28) and X.dtype == np.uint8
    assert np.bincount(y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert y[:3].tolist() == [7, 2, 1]


@needs_mnist
def test_mnist_train_labels_via_env(monkeypatch):
    monkeypatch.setenv("QNN_DATA_DIR", str(DATA))
    X, y = load_mnist("train")
    assert X.shape == (60000, 28, 28)
    assert np.bincount(y).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


@pytest.mark.skipif(not HAS_FASHION, reason=f"Fashion-MNIST IDX files not found under {DATA}/fashion_mnist")
def test_fashion_test_split():
    X, y = load_fashion_mnist("test", data_dir=DATA)
    assert X.shape == (10000, 28, 28) and np.bincount(y).tolist() == [1000] * 10
