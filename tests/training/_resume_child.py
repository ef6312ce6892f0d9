"""A small hybrid run for the kill/resume tests (run as a script by test_checkpoint.py, imported
for the uninterrupted reference run).  Not a test module: nothing runs on import.

    python _resume_child.py CHECKPOINT OUT KILL_AT

trains ``make_model()`` on ``make_data()`` with a checkpoint; with ``KILL_AT >= 1`` the process
SIGKILLs itself at the start of that training batch (counted over the whole run, from 1).
"""

from __future__ import annotations

import os
import signal
import sys

import torch
from torch import nn

EPOCHS, BATCH, N = 5, 16, 96  # 6 batches per epoch


class KillAt(nn.Module):
    """Identity that SIGKILLs its own process at its ``kill_at``-th training forward."""

    def __init__(self, kill_at: int = -1):
        super().__init__()
        self.kill_at, self.calls = kill_at, 0

    def forward(self, x):
        if self.training:
            self.calls += 1
            if self.calls == self.kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
        return x


def make_data():
    g = torch.Generator().manual_seed(123)
    X = torch.randn(N + 32, 4, generator=g)
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).long() + (X[:, 3] > 1).long()
    return (X[:N], y[:N]), (X[N:], y[N:])


def make_model(kill_at: int = -1) -> nn.Module:
    from qnn.layers import QuantumLinear

    torch.manual_seed(7)
    # Dropout makes the run depend on the model RNG stream, which the checkpoint must restore.
    return nn.Sequential(KillAt(kill_at), nn.Linear(4, 3), nn.Tanh(),
                         QuantumLinear(3, 3, n_layers=1, seed=0), nn.Dropout(0.3), nn.Linear(3, 3))


def run(checkpoint=None, kill_at: int = -1, **kw):
    from qnn.training import fit

    train, test = make_data()
    model = make_model(kill_at)
    hist = fit(model, train, test=test, epochs=EPOCHS, batch_size=BATCH, lr=0.05, seed=3,
               checkpoint=checkpoint, progress=False, **kw)
    return model, hist


if __name__ == "__main__":
    torch.set_num_threads(1)
    ckpt, out, kill = sys.argv[1], sys.argv[2], int(sys.argv[3])
    model, hist = run(ckpt, kill)
    torch.save({"state": model.state_dict(), "history": hist.to_dict()}, out)
