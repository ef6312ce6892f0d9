"""``qnn train``: run an experiment from a config file with ``--set key=value`` overrides."""

from __future__ import annotations

import importlib.util
import shlex
import sys
import tomllib
from pathlib import Path

import click

from qnn.cli._paths import checkout_folder

__all__ = ["train"]

_SET = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                    help="Override a config key (TOML value syntax: seeds=[0,1], lr=1e-3). Repeatable.")


def _load_module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@click.group()
def train() -> None:
    """Train an experiment from a config file."""


@train.command("creep")
@click.argument("config", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_SET
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Results folder (default experiments/creep/runs/<name>).")
@click.option("--ray", "ray_address", default=None, metavar="ADDRESS", help="'local' or a Ray cluster address.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def creep(config: Path, overrides: tuple[str, ...], out: Path | None, ray_address: str | None,
          no_progress: bool) -> None:
    """The layer-swap ("Quantum Creep") grid of a TOML CONFIG (experiments/creep/configs/).

    Finished tasks are skipped and an interrupted task resumes from its checkpoint; the summary
    table is printed at the end.  Example: qnn train creep experiments/creep/configs/ci_tiny.toml
    --set epochs=1 --out /tmp/creep
    """
    folder = checkout_folder("experiments/creep", "qnn train creep")
    runner = _load_module(folder / "run.py", "qnn_creep_run")
    grid = sys.modules["grid"]
    try:
        cfg = grid.load_config(config, list(overrides))
    except tomllib.TOMLDecodeError as exc:
        raise click.BadParameter(f"{config} is not valid TOML: {exc}", param_hint="CONFIG") from None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="CONFIG / --set") from None
    out = out or folder / "runs" / cfg["name"]
    command = "qnn " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    runner.run_grid(cfg, out, ray_address=ray_address, progress=not no_progress, command=command)
    click.echo(sys.modules["summarize"].summarize(out))


def heart_settings(config: Path | None, overrides: tuple[str, ...]) -> dict:
    """Settings of the heart demo model: a TOML file's keys, then ``key=value`` overrides."""
    from qnn.apps.heart._model import DEFAULT_SETTINGS

    settings: dict = {}
    if config is not None:
        try:
            settings.update(tomllib.loads(config.read_text()))
        except tomllib.TOMLDecodeError as exc:
            raise click.BadParameter(f"{config} is not valid TOML: {exc}", param_hint="CONFIG") from None
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"must be KEY=VALUE; got {item!r}", param_hint="--set")
        try:
            settings[key.strip()] = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            raise click.BadParameter(f"{key} must be a TOML value (a number, true/false); got {text!r}",
                                     param_hint="--set") from None
    unknown = sorted(set(settings) - set(DEFAULT_SETTINGS))
    if unknown:
        raise click.BadParameter(f"unknown key(s) {unknown}; valid keys are {sorted(DEFAULT_SETTINGS)}",
                                 param_hint="CONFIG / --set")
    for key, value in settings.items():
        want = type(DEFAULT_SETTINGS[key])
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (want is int and not isinstance(value, int)):
            raise click.BadParameter(f"{key} must be {'an int' if want is int else 'a number'}; got {value!r}",
                                     param_hint="CONFIG / --set")
        if value <= 0 and key != "seed" or value < 0:
            raise click.BadParameter(f"{key} must be positive; got {value!r}", param_hint="CONFIG / --set")
    return settings


@train.command("heart")
@click.argument("config", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_SET
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to save the model (default $QNN_MODEL_DIR/heart_demo.pt, ~/.cache/qnn/models/).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def heart(config: Path | None, overrides: tuple[str, ...], out: Path | None, no_progress: bool) -> None:
    """The heart demo's model: KACQ-DCNN, clean preprocessing, split-conformal calibration.

    Keys (optional TOML CONFIG, then --set): epochs, seed, batch_size, lr, n_layers, bilstm.
    Reads heart.csv from $QNN_DATA_DIR.  Example: qnn train heart --set epochs=5
    """
    from qnn.apps.heart import default_model_path
    from qnn.cli._demo import train_heart

    settings = heart_settings(config, overrides)
    out = out or default_model_path()
    model = train_heart(not no_progress, settings)
    model.save(out)
    m = model.metrics
    click.echo(f"saved {out}: held-out test accuracy {m['test_accuracy']:.3f}, ROC-AUC {m['test_roc_auc']:.3f}, "
               f"coverage at 90 % {m['coverage']['0.9']:.3f} (n_test={m['n_test']}); "
               f"{model.settings['fit_seconds']} s of training")
