"""KACQ-DCNN in the authors' own stack (TensorFlow/Keras 2.15 + tfkan + PennyLane 0.36), to check
whether qnn's PyTorch model trains like the Keras one on the paper protocol.

The authors' main notebook is not available, so this model is written from the spec
(``../shared/specs/kacq.md`` §2.2-§3), like ``qnn.models.KACQDCNN``, but with the authors'
libraries: ``tfkan.layers.DenseKAN``, ``tf.keras`` BiLSTM/Dense/Dropout, ``qml.qnn.KerasLayer``
(AmplitudeEmbedding(16 -> 4 wires, normalize) + StronglyEntanglingLayers + <Z_i>), Keras floatx
float64, Adam(1e-3), batch 32, binary cross-entropy, ModelCheckpoint on max val_accuracy,
EarlyStopping(val_loss, patience 10, restore_best_weights) and ReduceLROnPlateau-with-backtrack
(val_loss, factor 0.5, patience 5, the checkpoint reloaded before each cut).  Validation data =
the test split, as the authors did.  Preprocessing is done here independently of ``qnn``:
sklearn ``LabelEncoder`` on the 5 string columns, ``train_test_split(test_size=0.3,
stratify=y, random_state=seed)``, MinMax fitted on the training split.

It is *not* part of qnn and not run by CI (TensorFlow is not a qnn dependency).  Environment:

    python3 -m venv /tmp/tfenv
    /tmp/tfenv/bin/pip install "tensorflow-cpu==2.15.*" "tfkan==0.1.1" "pennylane==0.36.*" "autoray==0.6.12" pandas scikit-learn
    QNN_DATA_DIR=/work/shared/datasets /tmp/tfenv/bin/python experiments/kacq/keras_reference.py --seeds 0 1 2

Output: one JSON line per seed appended to ``results/keras_reference.jsonl`` with the per-epoch
Keras history (``accuracy`` = the running training accuracy with dropout active, as in the
paper's accuracy plot), the test accuracy / AUC of the kept weights and the eval-mode training
accuracy.  ``--classical-only`` drops the quantum channel (no PennyLane in the loop).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import common  # noqa: E402  (numpy and the standard library only at import time)

OUT = HERE / "results" / "keras_reference.jsonl"
FEATURES = ["Age", "Sex", "ChestPainType", "RestingBP", "Cholesterol", "FastingBS", "RestingECG", "MaxHR",
            "ExerciseAngina", "Oldpeak", "ST_Slope"]


def load_split(seed: int):
    import pandas as pd
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import LabelEncoder, MinMaxScaler

    path = Path(os.environ.get("QNN_DATA_DIR", "../shared/datasets")) / "heart/heart_failure_prediction/heart.csv"
    df = pd.read_csv(path)
    for c in ["Sex", "ChestPainType", "RestingECG", "ExerciseAngina", "ST_Slope"]:
        df[c] = LabelEncoder().fit_transform(df[c])
    X, y = df[FEATURES].to_numpy(np.float64), df["HeartDisease"].to_numpy(np.int64)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=seed, stratify=y)
    sc = MinMaxScaler().fit(Xtr)
    return sc.transform(Xtr), sc.transform(Xte), ytr, yte


def build(n_features: int, n_layers: int, classical_only: bool):
    import pennylane as qml
    import tensorflow as tf
    from tfkan.layers import DenseKAN

    L = tf.keras.layers
    inp = L.Input((n_features, 1))
    # classical channel
    c = L.Bidirectional(L.LSTM(64, activation="relu", return_sequences=True))(inp)
    c = L.Bidirectional(L.LSTM(64, activation="relu", return_sequences=True))(c)
    c = L.Dropout(0.2)(L.Flatten()(c))
    c = L.Dropout(0.2)(L.Dense(320, activation="relu")(c))
    c = L.Dropout(0.2)(DenseKAN(256, grid_size=3)(c))
    c = L.Dropout(0.2)(DenseKAN(32, grid_size=3)(c))
    if classical_only:
        out = L.Dense(1, activation="sigmoid")(c)
        return tf.keras.Model(inp, out)
    # quantum channel
    q = DenseKAN(112, grid_size=3)(inp)  # position-wise on (B, F, 1)
    q = L.Dropout(0.2)(L.Flatten()(q))
    q = L.Dropout(0.2)(DenseKAN(176, grid_size=3)(q))
    q = DenseKAN(48)(q)
    dev = qml.device("default.qubit", wires=4)

    @qml.qnode(dev, interface="tf", diff_method="backprop")
    def circuit(inputs, weights):
        qml.AmplitudeEmbedding(inputs, wires=range(4), normalize=True)
        qml.StronglyEntanglingLayers(weights, wires=range(4))
        return [qml.expval(qml.PauliZ(w)) for w in range(4)]

    outs = []
    for k in range(3):
        sl = L.Lambda(lambda t, k=k: t[:, 16 * k:16 * (k + 1)])(q)
        outs.append(qml.qnn.KerasLayer(circuit, {"weights": (n_layers, 4, 3)}, output_dim=4)(sl))
    q = L.Concatenate()(outs)
    q = L.Dropout(0.2)(DenseKAN(112, grid_size=3)(q))
    q = L.Dropout(0.2)(DenseKAN(32, grid_size=3)(q))
    out = L.Dense(1, activation="sigmoid")(L.Concatenate()([c, q]))
    return tf.keras.Model(inp, out)


def run(seed: int, n_layers: int, classical_only: bool, epochs: int) -> dict:
    import tensorflow as tf
    from sklearn.metrics import roc_auc_score

    tf.keras.backend.set_floatx("float64")
    tf.keras.utils.set_random_seed(seed)
    Xtr, Xte, ytr, yte = load_split(seed)
    Xtr3, Xte3 = Xtr[..., None], Xte[..., None]
    model = build(Xtr.shape[1], n_layers, classical_only)
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3), loss="binary_crossentropy", metrics=["accuracy"])

    class Backtrack(tf.keras.callbacks.Callback):
        """Checkpoint on max val_accuracy; LR halving on a val_loss plateau after reloading it."""

        def __init__(self):
            super().__init__()
            self.best_acc, self.best_w, self.best_epoch = -1.0, None, 0
            self.best_loss, self.wait = np.inf, 0

        def on_epoch_end(self, epoch, logs=None):
            if logs["val_accuracy"] > self.best_acc:
                self.best_acc, self.best_w, self.best_epoch = logs["val_accuracy"], self.model.get_weights(), epoch + 1
            if logs["val_loss"] < self.best_loss:
                self.best_loss, self.wait = logs["val_loss"], 0
            else:
                self.wait += 1
                lr = float(tf.keras.backend.get_value(self.model.optimizer.learning_rate))
                if self.wait >= 5 and lr > 1e-10:
                    self.model.set_weights(self.best_w)
                    tf.keras.backend.set_value(self.model.optimizer.learning_rate, max(lr * 0.5, 1e-10))
                    self.wait = 0

    bt = Backtrack()
    es = tf.keras.callbacks.EarlyStopping(monitor="val_loss", patience=10, restore_best_weights=True)
    t0 = time.perf_counter()
    hist = model.fit(Xtr3, ytr, epochs=epochs, batch_size=32, validation_data=(Xte3, yte),
                     callbacks=[bt, es], verbose=2)
    fit_s = time.perf_counter() - t0
    model.set_weights(bt.best_w)  # the checkpoint the paper evaluates
    p_te = model.predict(Xte3, verbose=0).ravel()
    p_tr = model.predict(Xtr3, verbose=0).ravel()
    return {"seed": seed, "n_layers": n_layers, "classical_only": classical_only,
            "accuracy": float(((p_te > 0.5) == yte).mean()), "roc_auc": float(roc_auc_score(yte, p_te)),
            "train_accuracy_eval": float(((p_tr > 0.5) == ytr).mean()), "best_epoch": bt.best_epoch,
            "epochs_run": len(hist.history["loss"]), "fit_s": round(fit_s, 1), "tf": tf.__version__,
            "history": {k: [round(float(v), 4) for v in vs] for k, vs in hist.history.items()}}


def summarize(out: Path = OUT, torch_runs: Path = HERE / "results" / "paper_protocol.jsonl") -> str:
    """Markdown table: Keras runs beside qnn's PyTorch runs of the same seeds (no TensorFlow needed)."""
    recs = [json.loads(l) for l in out.read_text().splitlines() if l.strip()] if out.exists() else []
    ours = {}
    if torch_runs.exists():
        for l in torch_runs.read_text().splitlines():
            if l.strip():
                r = json.loads(l)
                if r.get("interaction") is None and r["n_layers"] == 1:
                    ours[r["seed"]] = r
    lines = ["# KACQ-DCNN in the authors' stack (Keras 2.15 + tfkan + PennyLane 0.36) vs qnn (PyTorch)", "",
             "Paper protocol (test split = validation data, checkpoint on best test accuracy), same splits. "
             "'Keras train acc @16' is Keras's running training accuracy of epoch 16 (dropout active), the "
             "quantity of the paper's accuracy plot (≈0.98 there). Generated by "
             "`python experiments/kacq/keras_reference.py --summary-only`.", "",
             "| seed | model | Keras test acc | Keras AUC | Keras train acc @16 | Keras max train acc | "
             "Keras best epoch / run | qnn test acc | qnn AUC | qnn best epoch / run |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    side = []  # classical-channel-only runs, listed after the mean of the full model
    for r in sorted(recs, key=lambda r: (r["classical_only"], r["seed"])):
        acc = r["history"]["accuracy"]
        o = ours.get(r["seed"]) if not r["classical_only"] else None
        model = "classical channel only" if r["classical_only"] else f"full, L={r['n_layers']}"
        if r.get("max_epochs", 100) != 100:
            model += f" (at most {r['max_epochs']} epochs)"
        qnn_cols = (f"{o['accuracy']:.4f} | {o['roc_auc']:.4f} | {o['best_epoch']} / {o['epochs_run']} |"
                    if o else "- | - | - |")
        row = (f"| {r['seed']} | {model} | {r['accuracy']:.4f} | {r['roc_auc']:.4f} | "
               f"{acc[15] if len(acc) >= 16 else '-'} | {max(acc):.4f} | {r['best_epoch']} / {r['epochs_run']} | ")
        (side if r["classical_only"] else lines).append(row + qnn_cols)
    full = [r for r in recs if not r["classical_only"] and r["n_layers"] == 1]
    if full:
        ms = common.mean_sd
        pairs = [(r, ours[r["seed"]]) for r in full if r["seed"] in ours]
        t16 = [r["history"]["accuracy"][15] for r in full if len(r["history"]["accuracy"]) >= 16]
        lines.append(f"| mean (n={len(full)}) | full, L=1 | {ms([r['accuracy'] for r in full])} | "
                     f"{ms([r['roc_auc'] for r in full])} | {ms(t16) if t16 else '-'} | "
                     f"{ms([max(r['history']['accuracy']) for r in full])} | | "
                     + (f"{ms([o['accuracy'] for _, o in pairs])} | {ms([o['roc_auc'] for _, o in pairs])} | |"
                        if pairs else "- | - | |"))
    lines += side
    lines += ["", "Paper (Jahin et al.): test accuracy 0.9203, AUC 0.9477, training accuracy ≈0.98 at epoch 16."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--n-layers", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--classical-only", action="store_true")
    ap.add_argument("--summary-only", action="store_true", help="only rewrite results/keras_reference.md")
    a = ap.parse_args(argv)
    for s in ([] if a.summary_only else a.seeds):
        rec = run(s, a.n_layers, a.classical_only, a.epochs)
        common.append_cache(rec, OUT)
        h = rec["history"]
        print(f"seed {s}: test acc {rec['accuracy']:.4f} AUC {rec['roc_auc']:.4f} best epoch {rec['best_epoch']}/"
              f"{rec['epochs_run']}; Keras training accuracy per epoch {h['accuracy']}", flush=True)
    md = summarize()
    (OUT.parent / "keras_reference.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
