"""The fit loop: one training loop for qnn (metrics per epoch, checkpoints, exact resume)."""

from __future__ import annotations

import math
import sys
import time
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, default_collate

from qnn.training._checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    config_mismatch,
    load_checkpoint,
    plain,
    resolve_path,
    save_atomic,
)
from qnn.training._history import History
from qnn.training._records import run_record

__all__ = ["fit", "METRICS"]

DEFAULT_LR = 1e-3


def _correct(out: Tensor, y: Tensor) -> float:
    """Number of correct predictions: argmax over the last dim for class scores ``(B, C)``
    (targets class indices, or one-hot/probabilities of the same shape); ``logit > 0`` for a
    single output ``(B,)`` or ``(B, 1)`` against 0/1 targets."""
    if out.dim() >= 2 and out.shape[-1] > 1:
        pred = out.argmax(-1)
        if y.shape == out.shape and y.is_floating_point():
            y = y.argmax(-1)
    else:
        pred = (out.reshape(y.shape) > 0).to(y.dtype)
    return float((pred == y).sum().item())


# name -> fn(outputs, targets) returning the batch *sum* (divided by the sample count later)
METRICS: dict[str, Callable[[Tensor, Tensor], float]] = {"accuracy": _correct}


# ------------------------------------------------------------------ argument checks
def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int_at_least(value, name: str, lo: int) -> int:
    if not _is_int(value) or value < lo:
        raise ValueError(f"fit: {name} must be an int >= {lo}; got {value!r}")
    return value


def _metrics(metrics) -> dict[str, Callable[[Tensor, Tensor], float]]:
    if metrics is None:
        return {}
    if isinstance(metrics, Mapping):
        out = {}
        for k, fn in metrics.items():
            if not isinstance(k, str) or not k or not callable(fn):
                raise TypeError(f"fit: metrics mapping must map names to fn(outputs, targets) -> batch mean; "
                                f"got {k!r}: {fn!r}")
            out[k] = (lambda f: lambda o, y: float(f(o, y)) * len(y))(fn)
        return out
    if isinstance(metrics, str) or not isinstance(metrics, Sequence):
        raise TypeError(f"fit: metrics must be a sequence of metric names or a mapping name -> callable; "
                        f"got {metrics!r}")
    for m in metrics:
        if m not in METRICS:
            raise ValueError(f"fit: unknown metric {m!r}; valid metrics are {sorted(METRICS)}")
    return {m: METRICS[m] for m in metrics}


class _Data:
    """``(X, y)`` tensors (or arrays) or a map-style Dataset of ``(input, target)`` items."""

    def __init__(self, data, name: str):
        self.name = name
        if isinstance(data, Dataset):
            try:
                self.n = len(data)
            except TypeError:
                raise TypeError(f"fit: {name} dataset must have a length (a map-style Dataset); "
                                f"got {type(data).__name__}") from None
            if self.n == 0:
                raise ValueError(f"fit: {name} must not be empty; got a dataset of length 0")
            first = data[0]
            if not isinstance(first, (tuple, list)) or len(first) != 2:
                raise ValueError(f"fit: {name} dataset items must be (input, target) pairs; "
                                 f"got {type(first).__name__}")
            self.ds, self.X, self.y = data, None, None
            return
        if not isinstance(data, (tuple, list)) or len(data) != 2:
            raise TypeError(f"fit: {name} must be an (X, y) pair of tensors or a torch.utils.data.Dataset; "
                            f"got {type(data).__name__}" + (f" of length {len(data)}" if isinstance(data, (tuple, list)) else ""))
        try:
            X, y = (v if isinstance(v, Tensor) else torch.as_tensor(v) for v in data)
        except (TypeError, ValueError, RuntimeError) as e:
            raise TypeError(f"fit: {name} X and y must be tensors or arrays; got "
                            f"{type(data[0]).__name__} and {type(data[1]).__name__}") from e
        if X.dim() == 0 or y.dim() == 0 or len(X) != len(y):
            raise ValueError(f"fit: {name} X and y must have the same length; got shapes "
                             f"{tuple(X.shape)} and {tuple(y.shape)}")
        if len(X) == 0:
            raise ValueError(f"fit: {name} must not be empty; got 0 samples")
        self.ds, self.X, self.y, self.n = None, X, y, len(X)

    def __len__(self) -> int:
        return self.n

    def batch(self, idx) -> tuple[Any, Tensor]:
        if self.ds is None:
            return self.X[idx], self.y[idx]
        items = range(self.n)[idx] if isinstance(idx, slice) else idx.tolist()
        getitems = getattr(self.ds, "__getitems__", None)
        rows = getitems(list(items)) if getitems is not None else [self.ds[i] for i in items]
        x, y = default_collate(rows)
        return x, y


def _to(x, device: torch.device):
    if isinstance(x, Tensor):
        return x.to(device)
    if isinstance(x, (list, tuple)):
        return type(x)(_to(v, device) for v in x)
    if isinstance(x, dict):
        return {k: _to(v, device) for k, v in x.items()}
    return x


def _model_device(model: nn.Module, device) -> torch.device:
    if device is not None:
        try:
            return torch.device(device)
        except (RuntimeError, TypeError) as e:
            raise ValueError(f"fit: device must be a torch.device or a device string; got {device!r}") from e
    for t in model.parameters():
        return t.device
    return torch.device("cpu")


def _mix(seed: int) -> int:
    """A second, independent-looking seed derived from ``seed`` (for dropout & co.)."""
    return (seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) % (1 << 63)


def _fingerprint(model, opt, loss_fn, *, epochs, batch_size, seed, metrics, n_train, n_test) -> dict:
    lrs = [float(g["lr"]) for g in opt.param_groups]
    return plain({
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lrs[0] if len(lrs) == 1 else lrs,
        "seed": seed,
        "model": f"{type(model).__module__}.{type(model).__qualname__}",
        "parameters": [[n, list(p.shape), str(p.dtype).removeprefix("torch.")] for n, p in model.named_parameters()],
        "optimizer": type(opt).__name__,
        "loss": getattr(type(loss_fn), "__qualname__", None) if isinstance(loss_fn, nn.Module)
        else getattr(loss_fn, "__qualname__", type(loss_fn).__name__),
        "metrics": list(metrics),
        "n_train": n_train,
        "n_test": n_test,
    }, "config")


# ------------------------------------------------------------------ epochs
def _train_epoch(model, opt, loss_fn, data: _Data, gen, metrics, *, batch_size, device, desc, progress):
    from tqdm.auto import tqdm

    model.train()
    perm = torch.randperm(len(data), generator=gen)
    total, n, sums = 0.0, 0, dict.fromkeys(metrics, 0.0)
    bar = tqdm(range(0, len(data), batch_size), desc=desc, disable=not progress, leave=False)
    for i in bar:
        x, y = data.batch(perm[i : i + batch_size])
        x, y = _to(x, device), _to(y, device)
        opt.zero_grad()
        out = model(x)
        loss = loss_fn(out, y)
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            raise ValueError(f"fit: loss must return a scalar tensor; got "
                             f"{tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__}")
        loss.backward()
        opt.step()
        nb = len(y)
        total += loss.item() * nb
        n += nb
        with torch.no_grad():
            for k, fn in metrics.items():
                sums[k] += fn(out.detach(), y)
        bar.set_postfix(loss=f"{total / n:.4f}")
    bar.close()
    return {"train_loss": total / n, **{f"train_{k}": s / n for k, s in sums.items()}}


def _evaluate(model, loss_fn, data: _Data, metrics, *, batch_size, device):
    model.eval()
    total, n, sums = 0.0, 0, dict.fromkeys(metrics, 0.0)
    with torch.no_grad():
        for i in range(0, len(data), batch_size):
            x, y = data.batch(slice(i, i + batch_size))
            x, y = _to(x, device), _to(y, device)
            out = model(x)
            nb = len(y)
            total += float(loss_fn(out, y).item()) * nb
            n += nb
            for k, fn in metrics.items():
                sums[k] += fn(out, y)
    return {"test_loss": total / n, **{f"test_{k}": s / n for k, s in sums.items()}}


# ------------------------------------------------------------------ fit
def fit(
    model: nn.Module,
    train,
    *,
    epochs: int,
    optimizer: torch.optim.Optimizer | None = None,
    lr: float | None = None,
    loss: Callable[[Any, Any], Tensor] | None = None,
    batch_size: int = 32,
    eval_batch_size: int | None = None,
    test=None,
    metrics: Sequence[str] | Mapping[str, Callable] | None = ("accuracy",),
    seed: int | None = None,
    generator: torch.Generator | None = None,
    checkpoint=None,
    resume: bool = True,
    progress: bool = True,
    device=None,
    on_epoch_end: Callable[[dict], Any] | None = None,
) -> History:
    """Train ``model`` for ``epochs`` epochs; record metrics per epoch; checkpoint; resume exactly.

    Each epoch shuffles ``train`` with a ``torch.Generator`` (never the global RNG), takes one
    optimiser step per batch, and records::

        {"epoch": e, "train_loss": ..., "train_<metric>": ..., "test_loss": ..., "test_<metric>": ...,
         "seconds": ...}

    ``train_*`` are running means over the epoch's batches, taken *during* training (the
    "Quantum Creep" protocol: each batch's value on the outputs that produced its gradient step,
    in train mode, weighted by the batch's size), not a separate pass after the epoch.
    ``test_*`` are over the whole ``test`` set after the epoch (eval mode, no grad, batched).
    ``seconds`` is the epoch's training + evaluation time.

    The whole loop runs inside ``torch.random.fork_rng``: the caller's global RNG state is the
    same after ``fit`` as before, and the model's own randomness (dropout, ...) draws from a
    stream seeded from ``seed`` and saved in the checkpoint, so results do not depend on what
    the caller did to the global RNG.

    Args:
        model: the ``nn.Module`` to train (in place). It is left in the train/eval mode it had.
        train: ``(X, y)`` tensors (or arrays) or a map-style ``Dataset`` of ``(input, target)``.
        epochs: total number of epochs of the run (an int >= 1).
        optimizer: default ``torch.optim.Adam(model.parameters(), lr=lr)``.
        lr: learning rate of the default optimiser (default 1e-3); not with ``optimizer``.
        loss: ``fn(outputs, targets) -> scalar``; default ``nn.CrossEntropyLoss()``.
        batch_size: training batch size (the last batch may be smaller).
        eval_batch_size: batch size of the test pass (default ``batch_size``).
        test: like ``train``, evaluated after every epoch; ``None`` for none.
        metrics: names from :data:`METRICS` (``"accuracy"``: argmax of class scores, or
            ``logit > 0`` for one output; in [0, 1]) or a mapping ``name -> fn(outputs, targets)``
            returning the batch mean.
        seed: seeds the shuffling generator and the model's RNG stream (default 0).
        generator: a CPU ``torch.Generator`` to shuffle with instead of ``seed`` (its state
            advances; on resume it is set to the checkpoint's state).
        checkpoint: a file path, or a directory (``<dir>/checkpoint.pt``); written atomically
            after every epoch with the model, optimiser and RNG states, the history, the run
            record and a configuration fingerprint.
        resume: with an existing checkpoint, continue after its last epoch (a finished run
            trains no more and returns the stored history); a checkpoint written with a different
            configuration (epochs, batch size, lr, seed, model class, parameter shapes, ...) is
            refused. ``resume=False`` starts over and overwrites the checkpoint.
        progress: a tqdm bar per epoch showing the running loss.
        device: where to train (default: the model's device); the model and batches move there.
        on_epoch_end: called with a copy of each new epoch's record, after its checkpoint is
            written.

    Returns:
        :class:`History` with ``epochs`` (the records), ``config`` and ``runs`` (run records).

    Raises:
        ValueError / TypeError: bad arguments (before any training), a checkpoint that is
            unreadable, foreign, or from a different configuration.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> g = torch.Generator().manual_seed(0)
        >>> X = torch.randn(64, 2, generator=g); y = (X[:, 0] > 0).long()
        >>> h = fit(nn.Linear(2, 2), (X, y), epochs=3, lr=0.1, batch_size=16, test=(X, y),
        ...         progress=False)
        >>> [e["epoch"] for e in h.epochs], sorted(h.last())
        ([1, 2, 3], ['epoch', 'seconds', 'test_accuracy', 'test_loss', 'train_accuracy', 'train_loss'])
        >>> h.last()["test_accuracy"] > 0.9
        True
    """
    # ---- check everything before touching anything
    if not isinstance(model, nn.Module):
        raise TypeError(f"fit: model must be a torch.nn.Module; got {type(model).__name__}")
    _int_at_least(epochs, "epochs", 1)
    _int_at_least(batch_size, "batch_size", 1)
    eval_batch_size = batch_size if eval_batch_size is None else _int_at_least(eval_batch_size, "eval_batch_size", 1)
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"fit: optimizer must be a torch.optim.Optimizer or None; got {type(optimizer).__name__}")
    if optimizer is not None and lr is not None:
        raise ValueError(f"fit: pass lr only with the default optimizer; got optimizer={type(optimizer).__name__} and lr={lr!r}")
    if lr is not None and (not isinstance(lr, (int, float)) or isinstance(lr, bool) or not math.isfinite(lr) or lr <= 0):
        raise ValueError(f"fit: lr must be a finite number > 0; got {lr!r}")
    if loss is not None and not callable(loss):
        raise TypeError(f"fit: loss must be callable (outputs, targets) -> scalar tensor; got {type(loss).__name__}")
    if seed is not None and generator is not None:
        raise ValueError("fit: pass seed or generator, not both; got both")
    if seed is not None and (not _is_int(seed) or seed < 0):
        raise ValueError(f"fit: seed must be an int >= 0 or None; got {seed!r}")
    if generator is not None and (not isinstance(generator, torch.Generator) or generator.device.type != "cpu"):
        raise TypeError(f"fit: generator must be a CPU torch.Generator; got {generator!r}")
    for flag, val in (("resume", resume), ("progress", progress)):
        if not isinstance(val, bool):
            raise TypeError(f"fit: {flag} must be a bool; got {val!r}")
    if on_epoch_end is not None and not callable(on_epoch_end):
        raise TypeError(f"fit: on_epoch_end must be callable or None; got {type(on_epoch_end).__name__}")
    metric_fns = _metrics(metrics)
    train_data = _Data(train, "train")
    test_data = None if test is None else _Data(test, "test")
    ckpt_path = resolve_path(checkpoint)
    dev = _model_device(model, device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"fit: device {str(dev)!r} requested but CUDA is not available")

    loss_fn = nn.CrossEntropyLoss() if loss is None else loss
    model.to(dev)
    opt = optimizer if optimizer is not None else torch.optim.Adam(
        model.parameters(), lr=DEFAULT_LR if lr is None else float(lr))
    if generator is None:
        seed = 0 if seed is None else seed
        gen = torch.Generator().manual_seed(seed)
    else:
        gen, seed = generator, generator.initial_seed()
    config = _fingerprint(model, opt, loss_fn, epochs=epochs, batch_size=batch_size, seed=seed,
                          metrics=metric_fns, n_train=len(train_data),
                          n_test=None if test_data is None else len(test_data))

    cuda_devices = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
    rng_seed = _mix(seed)
    torch_rng = torch.Generator().manual_seed(rng_seed).get_state()
    cuda_rng = None
    history = History(config=config)
    start = 0

    # ---- resume
    if ckpt_path is not None and resume and ckpt_path.exists():
        state = load_checkpoint(ckpt_path, who="fit")
        diffs = config_mismatch(state["config"], config)
        if diffs:
            raise ValueError(f"fit: checkpoint {ckpt_path} was written by a run with a different configuration: "
                             + "; ".join(diffs) + ". Pass resume=False to start over, or use another checkpoint path")
        history = History.from_dict(state["history"])
        start = state["epoch"]
        if len(history) != start or start > epochs:
            raise ValueError(f"fit: checkpoint {ckpt_path} is inconsistent: epoch {start} with "
                             f"{len(history)} history records for a run of {epochs} epochs")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["shuffle_rng"])
        torch_rng, cuda_rng = state["torch_rng"], state.get("cuda_rng")
        if start >= epochs:
            return history
        if progress:
            print(f"fit: resuming {ckpt_path} after epoch {start}/{epochs}", file=sys.stderr, flush=True)
    history.runs.append(plain({**run_record(), "start_epoch": start, "device": str(dev)}, "run record"))

    was_training = model.training
    try:
        with torch.random.fork_rng(devices=cuda_devices):
            if cuda_devices and cuda_rng is None:
                with torch.cuda.device(cuda_devices[0]):
                    torch.cuda.manual_seed(rng_seed)
                cuda_rng = torch.cuda.get_rng_state(cuda_devices[0])
            for epoch in range(start + 1, epochs + 1):
                torch.random.set_rng_state(torch_rng)
                if cuda_devices:
                    torch.cuda.set_rng_state(cuda_rng, cuda_devices[0])
                t0 = time.perf_counter()
                rec = {"epoch": epoch}
                rec.update(_train_epoch(model, opt, loss_fn, train_data, gen, metric_fns, batch_size=batch_size,
                                        device=dev, desc=f"epoch {epoch}/{epochs}", progress=progress))
                if test_data is not None:
                    rec.update(_evaluate(model, loss_fn, test_data, metric_fns, batch_size=eval_batch_size, device=dev))
                rec["seconds"] = time.perf_counter() - t0
                history.epochs.append(rec)
                torch_rng = torch.random.get_rng_state()
                if cuda_devices:
                    cuda_rng = torch.cuda.get_rng_state(cuda_devices[0])
                if ckpt_path is not None:
                    save_atomic({
                        "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "epoch": epoch,
                        "model": model.state_dict(),
                        "optimizer": plain(opt.state_dict(), "optimizer state"),
                        "shuffle_rng": gen.get_state(), "torch_rng": torch_rng, "cuda_rng": cuda_rng,
                        "config": config, "history": history.to_dict(),
                    }, ckpt_path)
                if on_epoch_end is not None:
                    on_epoch_end(dict(rec))
    finally:
        model.train(was_training)
    return history
