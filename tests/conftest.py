import os

import pytest
import torch

# Keep the suite repeatable and polite on a 2-core machine.
torch.set_num_threads(int(os.environ.get("QNN_TEST_THREADS", "1")))

HAS_CUDA = torch.cuda.is_available()

requires_cuda = pytest.mark.skipif(not HAS_CUDA, reason="CUDA device not available")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "gpu" in item.keywords and not HAS_CUDA:
            item.add_marker(pytest.mark.skip(reason="CUDA device not available"))


# --------------------------------------------------------------- heart demo model (tests/apps, tests/cli)
from pathlib import Path as _Path


DATA = _Path(os.environ.get("QNN_DATA_DIR", _Path.home() / ".cache" / "qnn" / "data"))
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
