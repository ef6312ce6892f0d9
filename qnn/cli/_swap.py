"""``qnn swap``: replace classical layers of a model by quantum layers and print the SwapReport."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["swap", "BUILTIN_MODELS"]


def _digits_mlp():
    from torch import nn

    return nn.Sequential(nn.Linear(64, 8), nn.Tanh(), nn.Linear(8, 10)), (1, 64)


def _small_cnn():
    from torch import nn

    return nn.Sequential(nn.Conv2d(1, 4, 2, stride=2), nn.Flatten(), nn.Linear(4 * 4 * 4, 3)), (1, 1, 8, 8)


def _creep_classical():
    from qnn.models.creep import hybrid_net

    model, _ = hybrid_net("level0", seed=0)
    return model, (1, 1, 28, 28)


#: name -> builder returning (model, example input shape)
BUILTIN_MODELS = {"digits-mlp": _digits_mlp, "small-cnn": _small_cnn, "creep-classical": _creep_classical}


def _selector(text: str):
    from torch import nn

    obj = getattr(nn, text, None)
    if isinstance(obj, type) and issubclass(obj, nn.Module):
        return obj
    return text  # a qualified-name pattern


def _load(model: str, trust_file: bool):
    import torch

    if model in BUILTIN_MODELS:
        return BUILTIN_MODELS[model]()
    path = Path(model)
    if not path.exists():
        raise click.BadParameter(f"must be a built-in model {sorted(BUILTIN_MODELS)} or a model file; "
                                 f"got {model!r} (no such file)", param_hint="MODEL")
    if not trust_file:
        raise click.BadParameter(f"{path} is a file: loading a whole torch model runs code from it; pass "
                                 "--trust-file if you made it yourself", param_hint="MODEL")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001
        raise click.BadParameter(f"{path} could not be loaded with torch.load: {exc}", param_hint="MODEL") from None
    if not isinstance(obj, torch.nn.Module):
        raise click.BadParameter(f"{path} must hold a torch.nn.Module (torch.save(model, path)); got "
                                 f"{type(obj).__name__}", param_hint="MODEL")
    return obj, None


@click.command()
@click.argument("model")
@click.option("--select", "selectors", multiple=True, metavar="TYPE|PATTERN",
              help="What to replace: a torch.nn type name (Linear, Conv2d) or a qualified-name pattern "
                   "('classifier.*', '2'). Repeatable; default Linear and Conv2d.")
@click.option("--engine", default="torch", show_default=True, help="Engine of the new layers.")
@click.option("--qubit-budget", type=click.IntRange(1, 30), default=20, show_default=True,
              help="Most qubits per quantum layer.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Save the swapped model here (torch.save of the module).")
@click.option("--trust-file", is_flag=True, help="Allow loading MODEL from a file (runs its pickled code).")
def swap(model: str, selectors: tuple[str, ...], engine: str, qubit_budget: int, seed: int, out: Path | None,
         trust_file: bool) -> None:
    """Swap layers of MODEL by quantum layers and print what changed.

    MODEL is a built-in model (digits-mlp, small-cnn, creep-classical) or, with --trust-file, a
    file written by torch.save(model, path).  Example: qnn swap small-cnn --select Linear
    """
    import torch

    import qnn

    net, shape = _load(model, trust_file)
    rules = tuple(_selector(s) for s in selectors) if selectors else (torch.nn.Linear, torch.nn.Conv2d)
    if all(isinstance(r, type) for r in rules):
        rules = tuple(rules)
    else:
        rules = {r: None for r in rules}
    hybrid, report = qnn.swap(net, rules, engine=engine, qubit_budget=qubit_budget, seed=seed)
    click.echo(str(report))
    if shape is not None:
        with torch.no_grad():
            y = hybrid(torch.rand(*shape, generator=torch.Generator().manual_seed(seed)))
        click.echo(f"forward check: input {tuple(shape)} -> output {tuple(y.shape)}")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        torch.save(hybrid, out)
        click.echo(f"saved the swapped model to {out}")
