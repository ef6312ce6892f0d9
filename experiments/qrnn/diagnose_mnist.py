"""Where does a trained MNIST QRNN go wrong?  For the best checkpoint of a `train_qrnn.py` run:
argmax accuracy and the distribution of p(correct label) on the validation images (the 500 per
digit held out by `train_qrnn.py`) and on training images, per class, with the pixel steps
postselected as in evaluation.

    python experiments/qrnn/diagnose_mnist.py experiments/qrnn/runs/mnist01-b100 \
        > experiments/qrnn/results/mnist01-b100_diagnosis.txt
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from qnn.qrnn import QRNN  # noqa: E402

_spec = importlib.util.spec_from_file_location("train_qrnn", Path(__file__).with_name("train_qrnn.py"))
train_qrnn = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(train_qrnn)


def load_run_model(run: Path, checkpoint: str = "best.pt") -> tuple[QRNN, argparse.Namespace]:
    """The model saved in a ``train_qrnn.py`` run directory, and the run's arguments."""
    args = argparse.Namespace(**json.loads((run / "args.json").read_text()))
    blob = torch.load(run / checkpoint, weights_only=False)
    model = QRNN(2, args.W, stages=args.S, order=args.ord, degree=args.d)
    model.load_state_dict(blob["model"] if "model" in blob else blob)
    return model, args


@torch.no_grad()
def last_step_probs(model, task, batch: int = 500) -> torch.Tensor:
    """``(n, 4)`` probabilities of the label word, pixel steps postselected as in evaluation."""
    return torch.cat([model(task.inputs[i:i + batch], task.targets[i:i + batch], postselect=task.ignore,
                            readout="argmax").probs[:, :, -1] for i in range(0, len(task), batch)])


def report(model, task, name):
    p = last_step_probs(model, task)
    lab = task.labels
    pc = p[torch.arange(len(lab)), lab]
    pred = p.argmax(1)
    print(f"{name} (n = {len(lab)}): argmax accuracy {float((pred == lab).float().mean()):.4f}, "
          f"mean p(correct) {float(pc.mean()):.4f}, p(correct) > 0.99: {float((pc > 0.99).float().mean()):.3f}, "
          f"p(correct) < 0.02: {float((pc < 0.02).float().mean()):.3f}")
    for c in range(int(lab.max()) + 1):
        m = lab == c
        print(f"  class {c}: n = {int(m.sum())}, argmax accuracy {float((pred[m] == c).float().mean()):.4f}, "
              f"p(correct) < 0.02: {float((pc[m] < 0.02).float().mean()):.3f}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir")
    ap.add_argument("--checkpoint", default="best.pt", help="best.pt (default) or checkpoint.pt")
    ap.add_argument("--train-n", type=int, default=1000, help="training images per class to check")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    run = Path(a.run_dir)
    model, args = load_run_model(run, a.checkpoint)
    sampler = train_qrnn.Sampler(args)
    print(f"run {run.name}, {a.checkpoint}, task {args.task}")
    report(model, sampler.validation(), "validation")
    g = torch.Generator().manual_seed(0)
    idx = torch.cat([c[torch.randperm(len(c), generator=g)[: a.train_n]] for c in sampler.by_class])
    report(model, sampler.train.subset(idx), "training images")


if __name__ == "__main__":
    main()
