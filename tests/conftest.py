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
