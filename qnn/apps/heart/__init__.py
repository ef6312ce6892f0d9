"""Heart-disease diagnostic demo: a saved KACQ-DCNN with its preprocessing and conformal
calibration (:class:`HeartDemoModel`), and a local web page to query it (:func:`create_app`,
:func:`serve`).  A research demo, not a medical device."""

from qnn.apps.heart._model import (
    FORMAT,
    LEVELS,
    BundleError,
    HeartDemoModel,
    Prediction,
    default_model_path,
    train_demo_model,
)
from qnn.apps.heart._server import create_app, serve

__all__ = ["FORMAT", "LEVELS", "BundleError", "HeartDemoModel", "Prediction", "create_app", "default_model_path",
           "serve", "train_demo_model"]
