"""Image datasets for the layer-swap study and the paper's preprocessing."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from qnn.datasets import DataError, creep_preprocess, load_cifar10, load_images

DATA = Path(os.environ.get("QNN_DATA_DIR", "/work/shared/datasets"))
# in CI the data directory is there: a missing file is a failure, not a skip
needs_data = pytest.mark.skipif(not (DATA / "mnist").exists() and not os.environ.get("CI"),
                                reason=f"data directory {DATA} not found (set QNN_DATA_DIR)")


def test_preprocess_pads_and_scales_like_torchvision():
    img = np.arange(28 * 28, dtype=np.int64).reshape(1, 28, 28) % 256
    x = creep_preprocess(img.astype(np.uint8))
    assert x.shape == (1, 1, 32, 32) and x.dtype == torch.float32
    assert torch.all(x[0, 0, :2] == -1) and torch.all(x[0, 0, :, -2:] == -1)
    # torchvision: Pad(2) -> ToTensor (/255) -> Normalize(0.5, 0.5)
    ref = (torch.from_numpy(img.astype(np.float32)) / 255 - 0.5) / 0.5
    torch.testing.assert_close(x[0, 0, 2:30, 2:30], ref[0], atol=1e-6, rtol=0)
    rgb = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)).astype(np.uint8)
    y = creep_preprocess(rgb)
    assert y.shape == (2, 3, 32, 32)
    torch.testing.assert_close(y[1, 2], torch.from_numpy(rgb[1, :, :, 2]).float() / 127.5 - 1)
    with pytest.raises(DataError, match=r"creep_preprocess: images must be \(n, 28, 28\) or \(n, 32, 32, 3\); got \(2, 5, 5\)"):
        creep_preprocess(np.zeros((2, 5, 5), dtype=np.uint8))
    with pytest.raises(DataError, match="creep_preprocess: images must be uint8; got float64"):
        creep_preprocess(np.zeros((2, 28, 28)))


def test_embedded_sample_needs_no_download():
    X, y = load_images("mnist-sample", "train")
    Xt, yt = load_images("mnist-sample", "test", limit=3)
    assert X.shape == (4000, 1, 32, 32) and torch.bincount(y).tolist() == [400] * 10
    assert Xt.shape == (30, 1, 32, 32) and torch.bincount(yt).tolist() == [3] * 10
    assert X.min() == -1 and X.max() == 1


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"load_images: name must be one of \['mnist', 'fashion_mnist', 'cifar10', 'mnist-sample'\]; got 'svhn'"):
        load_images("svhn")
    with pytest.raises(ValueError, match="load_images: split must be 'train' or 'test'; got 'val'"):
        load_images("mnist-sample", "val")
    with pytest.raises(ValueError, match="load_images: limit must be None or an int >= 1; got 0"):
        load_images("mnist-sample", limit=0)
    with pytest.raises(ValueError, match="load_cifar10: split must be 'train' or 'test'; got 'all'"):
        load_cifar10("all")


@needs_data
@pytest.mark.parametrize("name,n_train,channels", [("mnist", 60000, 1), ("fashion_mnist", 60000, 1), ("cifar10", 1000, 3)])
def test_data_directory_sets(name, n_train, channels):
    X, y = load_images(name, "train", data_dir=DATA)
    Xt, yt = load_images(name, "test", data_dir=DATA)
    assert X.shape == (n_train, channels, 32, 32) and Xt.shape[1:] == (channels, 32, 32)
    assert X.min() == -1 and X.max() == 1 and len(torch.unique(y)) == len(torch.unique(yt)) == 10
    if name == "cifar10":
        assert load_cifar10("test", data_dir=DATA)[2] == "jpeg-subset" and Xt.shape[0] == 1000


def _fake_batches(root: Path, n=4):
    folder = root / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (n, 3 * 32 * 32)).astype(np.uint8)
        labels = list(rng.integers(0, 10, n))
        (folder / name).write_bytes(pickle.dumps({b"data": data, b"labels": labels}))
    return folder


def test_official_batches_are_read_first(tmp_path):
    folder = _fake_batches(tmp_path)
    X, y, source = load_cifar10("train", data_dir=tmp_path)
    assert source == "official" and X.shape == (20, 32, 32, 3) and y.dtype == np.int64
    d = pickle.loads((folder / "data_batch_1").read_bytes())
    # row-major CHW rows in the batch file become HWC images
    np.testing.assert_array_equal(X[0], d[b"data"][0].reshape(3, 32, 32).transpose(1, 2, 0))


def test_archive_with_wrong_checksum_is_refused(tmp_path):
    (tmp_path / "cifar10").mkdir()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/test_batch")
        payload = pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [0]})
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    (tmp_path / "cifar10" / "cifar-10-python.tar.gz").write_bytes(buf.getvalue())
    assert hashlib.md5(buf.getvalue()).hexdigest() != "c58f30108f718f92721af3b95e74349a"
    with pytest.raises(DataError, match="does not match the published MD5 c58f30108f718f92721af3b95e74349a"):
        load_cifar10("test", data_dir=tmp_path)


def test_missing_cifar_says_where_and_how(tmp_path):
    with pytest.raises(DataError, match=r"dataset file 'cifar10/cifar-10-python.tar.gz' not found under .*download=True"):
        load_cifar10("test", data_dir=tmp_path)
