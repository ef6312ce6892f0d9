"""Where data lives, and how it is fetched with a checksum.

Loaders look, in order, at an explicit ``data_dir`` argument, the ``QNN_DATA_DIR``
environment variable, and ``~/.cache/qnn/data``.  A file missing there is downloaded
from its official source (only if ``download=True``) and checked against its SHA-256
before it is used; a mismatch deletes the file and raises.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

__all__ = ["get_data_dir", "fetch_file", "sha256_of", "md5_of", "DataError"]


class DataError(ValueError):
    """A dataset file is missing, corrupt, or does not match its schema."""


def get_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get("QNN_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "qnn" / "data"


def _digest(path, h) -> str:
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_of(path: str | os.PathLike) -> str:
    return _digest(path, hashlib.sha256())


def md5_of(path: str | os.PathLike) -> str:
    """MD5 of a file: some datasets publish only MD5 checksums (an integrity check, not security)."""
    return _digest(path, hashlib.md5())  # noqa: S324


def fetch_file(
    relpath: str,
    *,
    url: str | None,
    sha256: str | None,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    md5: str | None = None,
) -> Path:
    """Return the local path of ``data_dir/relpath``, downloading it from ``url`` if absent
    (checked against ``sha256``, or ``md5`` where only that is published).

    Raises:
        DataError: the file is absent and cannot be downloaded, or its checksum is wrong.
    """
    root = get_data_dir(data_dir)
    path = root / relpath
    if path.exists():
        return path
    if not download or url is None:
        raise DataError(
            f"dataset file {relpath!r} not found under {root} (set QNN_DATA_DIR or pass data_dir="
            + ("; or pass download=True" if url else "")
            + ")"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
    os.close(fd)
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as f:  # noqa: S310
            shutil.copyfileobj(r, f)
        for algo, want, fn in (("sha256", sha256, sha256_of), ("md5", md5, md5_of)):
            if want is not None:
                got = fn(tmp)
                if got != want:
                    raise DataError(f"checksum mismatch for {url}: expected {algo} {want}, got {got}")
        os.replace(tmp, path)
    except OSError as e:  # network errors
        raise DataError(f"could not download {relpath!r} from {url}: {e}") from e
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
