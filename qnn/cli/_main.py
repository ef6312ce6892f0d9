"""The ``qnn`` command group and its entry point with one-line error reporting."""

from __future__ import annotations

import os
import sys

import click

from qnn.cli._bench import bench
from qnn.cli._demo import demo
from qnn.cli._hardware import hardware
from qnn.cli._swap import swap
from qnn.cli._train import train

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="qnn", prog_name="qnn")
def cli() -> None:
    """qnn: quantum-classical hybrid machine learning.

    \b
    qnn demo heart            the heart-disease diagnostic page (http://127.0.0.1:8000/)
    qnn demo digits           train the hybrid digits classifier
    qnn train creep CONFIG    the layer-swap grid of a TOML config (--set key=value)
    qnn train heart           the heart demo's model (KACQ-DCNN + conformal calibration)
    qnn swap creep-classical  swap layers of a model and print the report
    qnn hardware estimate     cost of a circuit workload on a backend; `submit` runs it
    qnn bench layer --quick   a benchmark from bench/
    """


for _command in (train, swap, hardware, bench, demo):
    cli.add_command(_command)


def _one_line(text: str) -> str:
    return " ".join(str(text).split()) or "failed"


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 success, 1 failure, 2 bad usage)."""
    args = sys.argv[1:] if argv is None else list(argv)
    debug = os.environ.get("QNN_DEBUG") not in (None, "", "0")
    try:
        rv = cli.main(args=args, prog_name="qnn", standalone_mode=False)
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "qnn"
        click.echo(f"{where}: error: {_one_line(exc.format_message())} (see '{where} --help')", err=True)
        return 2
    except click.Abort:
        click.echo("qnn: aborted", err=True)
        return 130
    except click.ClickException as exc:
        click.echo(f"qnn: error: {_one_line(exc.format_message())}", err=True)
        return exc.exit_code or 1
    except KeyboardInterrupt:
        click.echo("qnn: interrupted", err=True)
        return 130
    except Exception as exc:  # noqa: BLE001 - the command line reports every failure in one line
        if debug:
            raise
        click.echo(f"qnn: error: {_one_line(exc) if str(exc) else type(exc).__name__}", err=True)
        return 1
    return rv if isinstance(rv, int) else 0
