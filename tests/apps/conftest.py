import os
from pathlib import Path

import pytest

DATA = Path(os.environ.get("QNN_DATA_DIR", Path.home() / ".cache" / "qnn" / "data"))
HAVE_HEART = (DATA / "heart" / "heart_failure_prediction" / "heart.csv").is_file()
needs_heart = pytest.mark.skipif(not HAVE_HEART, reason=f"heart.csv not found under {DATA} (set QNN_DATA_DIR)")


@pytest.fixture(scope="session")
def heart_bundle(tmp_path_factory):
    """A small trained heart demo model saved to a file: (model, path).  Seconds on one core."""
    if not HAVE_HEART:
        pytest.skip(f"heart.csv not found under {DATA} (set QNN_DATA_DIR)")
    from qnn.apps.heart import train_demo_model

    model = train_demo_model(epochs=2, progress=False)
    path = model.save(tmp_path_factory.mktemp("heart") / "heart_demo.pt")
    return model, path
