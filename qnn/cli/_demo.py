"""``qnn demo``: the heart-disease diagnostic page and the hybrid digits classifier."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["demo"]


@click.group()
def demo() -> None:
    """The demos: a diagnostic web page (heart) and a hybrid classifier trained live (digits)."""


def _load_or_train(model_path: Path, train: bool, retrain: bool, settings: dict, progress: bool):
    from qnn.apps.heart import HeartDemoModel

    if model_path.exists() and not retrain:
        click.echo(f"loading the saved model {model_path}")
        return HeartDemoModel.load(model_path)
    if not (train or retrain):
        raise click.ClickException(f"no saved heart model at {model_path}; create it with "
                                   f"`qnn train heart --out {model_path}` (or drop --no-train)")
    click.echo(f"no saved model at {model_path}: training one (KACQ-DCNN, "
               f"{settings.get('epochs', 'default')} epochs; about a minute on 2 cores)" if not retrain else
               f"retraining {model_path}")
    model = train_heart(progress, settings)
    model.save(model_path)
    m = model.metrics
    click.echo(f"saved {model_path}: held-out accuracy {m['test_accuracy']:.3f}, ROC-AUC {m['test_roc_auc']:.3f}")
    return model


def train_heart(progress: bool, settings: dict):
    """Train the demo model; a missing data file becomes one line saying where to get it."""
    from qnn.apps.heart import train_demo_model
    from qnn.datasets import DataError

    try:
        return train_demo_model(progress=progress, **settings)
    except DataError as exc:
        raise click.ClickException(
            f"{exc}; the heart model trains on the Kaggle heart-failure table: put heart.csv "
            "(https://www.kaggle.com/datasets/fedesoriano/heart-failure-prediction) in "
            "$QNN_DATA_DIR/heart/heart_failure_prediction/") from None


@demo.command("heart")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port (0: any free port).")
@click.option("--model", "model_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Saved model (default $QNN_MODEL_DIR/heart_demo.pt, ~/.cache/qnn/models/).")
@click.option("--train/--no-train", default=True, show_default=True,
              help="Train and save a model when none is found.")
@click.option("--retrain", is_flag=True, help="Train a new model even if one is saved.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Training settings when a model is trained (epochs, seed, ...; see qnn train heart --help).")
@click.option("--check", is_flag=True,
              help="Predict the first held-out patient, print it and exit instead of serving.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def heart(host: str, port: int, model_path: Path | None, train: bool, retrain: bool, overrides: tuple[str, ...],
          check: bool, no_progress: bool) -> None:
    """Serve the heart-disease diagnostic page until Ctrl-C.

    Enter the 11 clinical features of a patient; the page shows the probability of heart
    disease from a trained KACQ-DCNN, the conformal prediction set at the confidence level you
    choose (with its coverage on held-out patients), the features that pushed the prediction up
    or down (Kernel SHAP), and the model card.  Research demo, not a medical device.
    Needs heart.csv under $QNN_DATA_DIR when it trains a model.
    """
    from qnn.apps.heart import default_model_path, serve
    from qnn.cli._train import heart_settings

    settings = heart_settings(None, overrides)
    model = _load_or_train(model_path or default_model_path(), train, retrain, settings, not no_progress)
    if check:
        patient = model.splits["test"].iloc[0]
        (pred,) = model.predict(patient.to_frame().T, 0.9)
        items, _ = model.explain(patient.to_dict())
        click.echo(f"first held-out patient (diagnosis {int(patient['HeartDisease'])}): probability of heart "
                   f"disease {pred.probability:.4f}; 90 % prediction set {pred.prediction_set} (coverage on "
                   f"held-out data {pred.coverage:.3f}); strongest feature {items[0][0]} ({items[0][2]:+.3f})")
        return

    def ready(url: str) -> None:
        click.echo(f"heart demo at {url}  (research demo, not a medical device; Ctrl-C to stop)", err=False)

    serve(model, host=host, port=port, ready=ready)


@demo.command("digits", context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                          "help_option_names": []})
@click.pass_context
def digits(ctx: click.Context) -> None:
    """Train the 8-qubit hybrid classifier on scikit-learn's digits (options: --help)."""
    from qnn.demo import main as digits_main

    args = list(ctx.args)
    try:
        digits_main(args)
    except SystemExit as exc:  # argparse: --help (0) or a bad option (2, message already printed)
        if exc.code:
            raise click.exceptions.Exit(int(exc.code)) from None
