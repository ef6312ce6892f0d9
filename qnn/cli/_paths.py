"""Where the source checkout's folders are (experiments/, bench/): beside the ``qnn`` package."""

from __future__ import annotations

from pathlib import Path

import click

import qnn

__all__ = ["checkout_folder"]


def checkout_folder(name: str, what: str) -> Path:
    """``<checkout>/<name>``, or a ClickException saying that ``what`` needs a source checkout."""
    root = Path(qnn.__file__).resolve().parents[1]
    folder = root / name
    if not folder.is_dir():
        raise click.ClickException(
            f"{what} needs a qnn source checkout (git clone); {folder} does not exist")
    return folder
