"""Why does the paper-protocol accuracy stay below the paper's 92 %?  Two fitting checks on the
split of seed 0 (paper preprocessing, 11 features):

1. KACQ-DCNN variants trained 16 epochs without early stopping (dropout 0; tanh LSTM; classical
   channel only with KAN / MLP / without BiLSTM): final training loss and accuracy.
2. A plain ReLU MLP 11-W-256-32-1 (W = 320, 1024), Adam 1e-3, batch 32: training accuracy after
   16 / 50 / 100 epochs.

The paper's training curve reaches ~0.98 training accuracy by epoch 16 (with dropout); none of
these does (~0.85-0.88 at epoch 16), which points at the undocumented 12th input or another
difference in the authors' data pipeline rather than at the model code.

Usage: OMP_NUM_THREADS=1 python experiments/kacq/diagnose_fit.py > experiments/kacq/results/diagnose_fit.txt
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from qnn.datasets.heart import load_heart_failure, paper_preprocess  # noqa: E402
from qnn.models import KACQClassifier  # noqa: E402

torch.set_num_threads(1)
Xtr, Xte, ytr, yte, _ = paper_preprocess(load_heart_failure(), random_state=0)
for kw in [dict(dropout=0.0), dict(lstm_activation="tanh"), dict(quantum_channel=False, dropout=0.0),
           dict(quantum_channel=False, dropout=0.0, kan="mlp"), dict(quantum_channel=False, dropout=0.0, bilstm=0)]:
    c = KACQClassifier(epochs=16, patience=100, lr_patience=100, restore="last", seed=0, verbose=False,
                       **kw).fit(Xtr, ytr, Xte, yte)
    print(kw, "train acc (eval mode)", round(c.score(Xtr, ytr), 4), "test", round(c.score(Xte, yte), 4))
    print("  train loss per epoch", [round(h["loss"], 3) for h in c.history_], flush=True)

X = torch.tensor(Xtr, dtype=torch.float32)
y = torch.tensor(ytr, dtype=torch.float32)
Xt = torch.tensor(Xte, dtype=torch.float32)
for width in (320, 1024):
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(11, width), torch.nn.ReLU(), torch.nn.Linear(width, 256), torch.nn.ReLU(),
                            torch.nn.Linear(256, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    opt = torch.optim.Adam(m.parameters(), 1e-3)
    for ep in range(100):
        perm = torch.randperm(642)
        for s in range(0, 642, 32):
            i = perm[s:s + 32]
            opt.zero_grad()
            torch.nn.functional.binary_cross_entropy_with_logits(m(X[i]).squeeze(-1), y[i]).backward()
            opt.step()
        if ep + 1 in (16, 50, 100):
            with torch.no_grad():
                tr = ((m(X).squeeze(-1) > 0).float() == y).float().mean().item()
                te = ((m(Xt).squeeze(-1) > 0).numpy() == yte).mean()
            print(f"plain MLP width {width} epoch {ep + 1}: train acc {tr:.4f} test {te:.4f}", flush=True)
