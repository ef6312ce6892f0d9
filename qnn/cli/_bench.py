"""``qnn bench``: run one of the benchmark scripts in the checkout's ``bench/`` folder."""

from __future__ import annotations

import subprocess
import sys

import click

from qnn.cli._paths import checkout_folder

__all__ = ["bench"]


def _available() -> dict:
    folder = checkout_folder("bench", "qnn bench")
    return {p.stem.removeprefix("bench_"): p for p in sorted(folder.glob("bench_*.py"))}


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("name", required=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option("--list", "list_only", is_flag=True, help="List the benchmarks and exit.")
def bench(name: str | None, args: tuple[str, ...], list_only: bool) -> None:
    """Run the benchmark NAME (bench/bench_NAME.py), passing ARGS to it.

    \b
    qnn bench --list               the benchmarks
    qnn bench layer --quick        quantum layer vs PennyLane / Qiskit ML, n in {4, 8}
    qnn bench layer -- --help      the benchmark's own options
    Results are written where each script says (bench/results/); see bench/README.md.
    """
    scripts = _available()
    if list_only or name is None:
        for key, path in scripts.items():
            doc = path.read_text().split('"""')[1].strip().splitlines()[0] if '"""' in path.read_text() else ""
            click.echo(f"{key:8s} {doc}")
        if name is None and not list_only:
            click.echo("run one with: qnn bench NAME [ARGS...]")
        return
    if name not in scripts:
        raise click.BadParameter(f"must be one of {sorted(scripts)}; got {name!r}", param_hint="NAME")
    code = subprocess.call([sys.executable, str(scripts[name]), *args])
    if code:
        raise click.ClickException(f"bench/{scripts[name].name} exited with status {code}")
