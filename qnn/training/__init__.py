"""One training loop for qnn: :func:`fit` with per-epoch metrics, a progress bar, a checkpoint
after every epoch (model, optimiser and RNG states) and exact resume; :class:`History` of the
per-epoch records; :func:`run_record` (git commit, package versions, command) for experiment
records; :func:`load_checkpoint` to read a checkpoint back.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from qnn.training import fit
    >>> X, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    >>> h = fit(nn.Linear(4, 3), (X, y), epochs=2, batch_size=8, progress=False)
    >>> len(h), sorted(h.to_paper_dict())
    (2, ['test_accs', 'test_losses', 'train_accs', 'train_losses'])
"""

import torch as _torch

from qnn.training._checkpoint import load_checkpoint
from qnn.training._fit import METRICS, fit
from qnn.training._history import History
from qnn.training._records import run_record

__all__ = ["fit", "History", "run_record", "load_checkpoint", "METRICS"]

# A saved History (plain data only) loads with torch.load(weights_only=True).
if hasattr(_torch.serialization, "add_safe_globals"):
    _torch.serialization.add_safe_globals([History])
