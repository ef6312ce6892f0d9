"""qnn.training.fit: records per epoch, inputs, progress bar, RNG hygiene and bad arguments."""

from __future__ import annotations

import copy
import json
import re

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from qnn.training import History, fit


def _data(n=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 4, generator=g)
    return X, (X[:, 0] + X[:, 1] > 0).long()


def _model(dropout=0.0):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Dropout(dropout), nn.Linear(8, 2))


def _no_seconds(h):
    return [{k: v for k, v in e.items() if k != "seconds"} for e in h.epochs]


def test_records_per_epoch_and_learning():
    X, y = _data()
    seen = []
    h = fit(_model(), (X, y), epochs=6, lr=0.05, batch_size=10, test=(X[:20], y[:20]), progress=False,
            on_epoch_end=seen.append)
    assert [e["epoch"] for e in h.epochs] == list(range(1, 7)) and seen == h.epochs
    assert set(h.last()) == {"epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "seconds"}
    assert h.epochs[-1]["train_loss"] < h.epochs[0]["train_loss"]
    assert h.last()["test_accuracy"] > 0.85
    for e in h.epochs:
        assert 0 <= e["train_accuracy"] <= 1 and 0 <= e["test_accuracy"] <= 1 and e["seconds"] > 0
        # accuracies are counts over whole sets: multiples of 1/48 and 1/20
        assert abs(e["train_accuracy"] * 48 - round(e["train_accuracy"] * 48)) < 1e-9
    paper = h.to_paper_dict()
    assert paper["train_losses"] == h.column("train_loss") and len(paper["test_accs"]) == 6
    assert h.record["command"] and h.runs[0]["start_epoch"] == 0


def test_train_metrics_are_running_means_of_the_training_batches():
    X, y = _data(n=30)
    losses = []

    def loss(out, t):
        v = nn.functional.cross_entropy(out, t)
        losses.append((v.item(), len(t)))
        return v

    h = fit(_model(), (X, y), epochs=1, loss=loss, batch_size=8, progress=False, metrics=())
    assert [n for _, n in losses] == [8, 8, 8, 6]
    assert h.last()["train_loss"] == pytest.approx(sum(v * n for v, n in losses) / 30, rel=1e-12)
    assert set(h.last()) == {"epoch", "train_loss", "seconds"}


def test_same_seed_same_result_whatever_the_global_rng_and_global_rng_untouched():
    X, y = _data()
    kw = dict(epochs=2, batch_size=8, lr=0.05, seed=5, progress=False)
    torch.manual_seed(1)
    m1 = _model(dropout=0.5)
    before = torch.random.get_rng_state()
    h1 = fit(m1, (X, y), **kw)
    assert torch.equal(torch.random.get_rng_state(), before)  # fit leaves the caller's RNG as it was
    m2 = _model(dropout=0.5)
    torch.manual_seed(12345)
    torch.rand(77)  # whatever the caller does to the global RNG in between
    h2 = fit(m2, (X, y), **kw)
    assert _no_seconds(h1) == _no_seconds(h2)
    for a, b in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(a, b)
    h3 = fit(_model(dropout=0.5), (X, y), **{**kw, "seed": 6})
    assert _no_seconds(h3) != _no_seconds(h1)


def test_generator_instead_of_seed():
    X, y = _data()
    h1 = fit(_model(), (X, y), epochs=2, batch_size=8, generator=torch.Generator().manual_seed(4), progress=False)
    h2 = fit(_model(), (X, y), epochs=2, batch_size=8, seed=4, progress=False)
    assert _no_seconds(h1) == _no_seconds(h2) and h1.config["seed"] == 4


class _PairDataset(Dataset):
    def __init__(self, X, y):
        self.X, self.y = X, y

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        return self.X[i], self.y[i]


@pytest.mark.parametrize("make", [TensorDataset, _PairDataset], ids=["TensorDataset", "custom"])
def test_dataset_input_matches_tensor_input(make):
    X, y = _data()
    kw = dict(epochs=2, batch_size=7, eval_batch_size=5, seed=1, progress=False)
    m1, m2 = _model(), _model()
    h1 = fit(m1, (X, y), test=(X, y), **kw)
    h2 = fit(m2, make(X, y), test=make(X, y), **kw)
    assert _no_seconds(h1) == _no_seconds(h2)
    for a, b in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(a, b)


def test_numpy_input_and_binary_logit_accuracy():
    X, y = _data()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 1), nn.Flatten(0))
    h = fit(model, (X.numpy(), y.float().numpy()), epochs=8, lr=0.1, batch_size=8, loss=nn.BCEWithLogitsLoss(),
            test=(X, y.float()), progress=False)
    assert h.last()["test_accuracy"] > 0.85


def test_custom_metric_mapping_and_model_mode_kept():
    X, y = _data()
    model = _model().eval()
    h = fit(model, (X, y), epochs=1, batch_size=16, progress=False, test=(X, y),
            metrics={"mean_logit": lambda out, t: out.mean()})
    assert {"train_mean_logit", "test_mean_logit"} <= set(h.last()) and not model.training


def test_progress_bar_enabled_and_disabled(capsys):
    X, y = _data()
    fit(_model(), (X, y), epochs=2, batch_size=8, progress=True)
    err = capsys.readouterr().err
    assert "epoch 1/2" in err and "epoch 2/2" in err and re.search(r"loss=\d\.\d{4}", err)
    fit(_model(), (X, y), epochs=2, batch_size=8, progress=False)
    assert capsys.readouterr().err == ""


def test_history_json_round_trip_pickle_and_deepcopy(tmp_path):
    X, y = _data()
    h = fit(_model(), (X, y), epochs=2, batch_size=8, test=(X, y), progress=False)
    assert History.from_json(h.to_json()) == h
    h.to_json(tmp_path / "h.json")
    assert History.from_json(tmp_path / "h.json") == h
    assert copy.deepcopy(h) == h
    paper = json.loads(json.dumps(h.to_paper_dict()))
    assert sorted(paper) == ["test_accs", "test_losses", "train_accs", "train_losses"]
    assert paper["test_accs"] == [e["test_accuracy"] for e in h.epochs]
    with pytest.raises(ValueError, match=r"History.last: no epoch recorded yet"):
        History().last()
    with pytest.raises(ValueError, match=r"History.from_dict: expected a dict with key 'epochs'; got \['x'\]"):
        History.from_dict({"x": 1})


X0, Y0 = _data(n=12)


class _NoPairs(Dataset):
    def __len__(self):
        return 3

    def __getitem__(self, i):
        return torch.zeros(4)


BAD = [
    ("epochs-zero", dict(epochs=0), ValueError, r"fit: epochs must be an int >= 1; got 0"),
    ("epochs-float", dict(epochs=2.0), ValueError, r"fit: epochs must be an int >= 1; got 2.0"),
    ("batch-size", dict(batch_size=0), ValueError, r"fit: batch_size must be an int >= 1; got 0"),
    ("eval-batch-size", dict(eval_batch_size=-1), ValueError, r"fit: eval_batch_size must be an int >= 1; got -1"),
    ("lr-negative", dict(lr=-0.1), ValueError, r"fit: lr must be a finite number > 0; got -0.1"),
    ("lr-nan", dict(lr=float("nan")), ValueError, r"fit: lr must be a finite number > 0; got nan"),
    ("lr-with-optimizer", dict(lr=0.1, optimizer="opt"), ValueError,
     r"fit: pass lr only with the default optimizer; got optimizer=SGD and lr=0.1"),
    ("optimizer-type", dict(optimizer=object()), TypeError, r"fit: optimizer must be a torch.optim.Optimizer or None; got object"),
    ("seed-and-generator", dict(seed=1, generator=torch.Generator()), ValueError, r"fit: pass seed or generator, not both"),
    ("seed-negative", dict(seed=-1), ValueError, r"fit: seed must be an int >= 0 or None; got -1"),
    ("generator-type", dict(generator=3), TypeError, r"fit: generator must be a CPU torch.Generator; got 3"),
    ("unknown-metric", dict(metrics=("f1",)), ValueError, r"fit: unknown metric 'f1'; valid metrics are \['accuracy'\]"),
    ("metrics-str", dict(metrics="accuracy"), TypeError, r"fit: metrics must be a sequence of metric names"),
    ("train-type", dict(train=torch.zeros(3, 4)), TypeError,
     r"fit: train must be an \(X, y\) pair of tensors or a torch.utils.data.Dataset; got Tensor"),
    ("train-triple", dict(train=(X0, Y0, Y0)), TypeError, r"fit: train must be an \(X, y\) pair .*; got tuple of length 3"),
    ("train-lengths", dict(train=(X0, Y0[:5])), ValueError,
     r"fit: train X and y must have the same length; got shapes \(12, 4\) and \(5,\)"),
    ("train-empty", dict(train=(X0[:0], Y0[:0])), ValueError, r"fit: train must not be empty; got 0 samples"),
    ("test-lengths", dict(test=(X0, Y0[:3])), ValueError, r"fit: test X and y must have the same length"),
    ("dataset-items", dict(train=_NoPairs()), ValueError, r"fit: train dataset items must be \(input, target\) pairs; got Tensor"),
    ("model-type", dict(model=lambda x: x), TypeError, r"fit: model must be a torch.nn.Module; got function"),
    ("loss-type", dict(loss="mse"), TypeError, r"fit: loss must be callable"),
    ("loss-not-scalar", dict(loss=nn.CrossEntropyLoss(reduction="none")), ValueError,
     r"fit: loss must return a scalar tensor; got \(8,\)"),
    ("resume-type", dict(resume="yes"), TypeError, r"fit: resume must be a bool; got 'yes'"),
    ("progress-type", dict(progress=1), TypeError, r"fit: progress must be a bool; got 1"),
    ("callback-type", dict(on_epoch_end=5), TypeError, r"fit: on_epoch_end must be callable or None; got int"),
    ("checkpoint-type", dict(checkpoint=3), TypeError, r"fit: checkpoint must be a path \(str or os.PathLike\) or None; got 3"),
    ("device", dict(device="nodevice"), ValueError, r"fit: device must be a torch.device or a device string; got 'nodevice'"),
]


@pytest.mark.parametrize("kw, exc, match", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_arguments(kw, exc, match):
    kw = dict(kw)
    model = kw.pop("model", None) or _model()
    train = kw.pop("train", (X0, Y0))
    if kw.get("optimizer") == "opt":
        kw["optimizer"] = torch.optim.SGD(model.parameters(), lr=0.1)
    args = dict(epochs=1, batch_size=8, progress=False)
    args.update(kw)
    before = [p.detach().clone() for p in model.parameters()] if isinstance(model, nn.Module) else []
    with pytest.raises(exc, match=match):
        fit(model, train, **args)
    if "loss" not in kw:  # rejected before any training step
        assert all(torch.equal(a, b) for a, b in zip(before, getattr(model, "parameters", list)()))
