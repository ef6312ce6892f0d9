"""``qnn hardware``: estimate the cost of a circuit workload and submit it to a backend.

:func:`estimate_cost` is the one place the command computes a cost: it builds the workload as a
``QuantumLayer`` on qnn's ``ibm`` engine for the chosen backend and asks
:func:`qnn.planner.estimate`, which dry-runs the planner's own transpilation and packing (so the
figures are what would be sent: circuits, PUBs, jobs, shots, estimated QPU seconds).
Submission runs the circuit through the same engine (qiskit-ibm-runtime): a ``fake_provider``
backend (``fake_manila``, the default) runs locally with that device's noise model and needs no
account; a real backend name needs a saved IBM Quantum account and ``--yes``.
"""

from __future__ import annotations

import warnings

import click

__all__ = ["estimate_cost", "hardware", "workload_circuit", "WORKLOADS"]

WORKLOADS = ("forward", "step", "train")


def workload_circuit(n_qubits: int, n_layers: int):
    """Angle embedding (RY) + ``n_layers`` strongly entangling layers + ``<Z>`` on every wire."""
    import qnn

    c = qnn.Circuit(n_qubits)
    qnn.angle_embedding(c, rotation="Y")
    qnn.strongly_entangling_layers(c, n_layers=n_layers)
    c.measure_z()
    return c


def _ibm_engine(backend: str, shots: int, seed: int):
    from qnn.engines import get_engine

    with warnings.catch_warnings():  # looking a fake backend up instantiates them all, some warn
        warnings.simplefilter("ignore", UserWarning)
        return get_engine("ibm", backend=backend, shots=shots, seed=seed)


def estimate_cost(circuit, *, batch: int, workload: str = "step", steps: int = 1, shots: int = 4096,
                  backend: str = "fake_manila", seed: int = 0):
    """The planner's :class:`qnn.planner.Estimate` of ``workload`` on ``circuit`` as a layer on
    ``backend``: ``"forward"`` (one batch, no gradients), ``"step"`` (one training step: forward and
    parameter-shift rows) or ``"train"`` (``steps`` training steps of ``batch`` samples)."""
    import torch

    from qnn.layers import QuantumLayer
    from qnn.planner import estimate

    if batch < 1 or steps < 1 or shots < 1:
        raise ValueError(f"estimate_cost: batch, steps and shots must be >= 1; got {batch}, {steps}, {shots}")
    if workload not in WORKLOADS:
        raise ValueError(f"estimate_cost: workload must be one of {list(WORKLOADS)}; got {workload!r}")
    layer = QuantumLayer(circuit, engine=_ibm_engine(backend, shots, seed), seed=seed)
    x = torch.rand(batch, circuit.n_inputs, generator=torch.Generator().manual_seed(seed))
    return estimate(layer, workload, example=x, n_samples=batch * steps, epochs=1)


def _lines(circuit, est, backend: str, batch: int) -> list[str]:
    return [f"circuit: {circuit.n_qubits} qubits, logical depth {circuit.depth}, {circuit.n_params} parametrised "
            f"angles; backend {backend}; batch {batch}", str(est),
            "QPU seconds: qnn.planner's per-job model (see qnn/planner/_cost.py); queueing not included"]


_WORKLOAD = [
    click.option("--qubits", type=click.IntRange(1, 127), default=4, show_default=True, help="Circuit width."),
    click.option("--layers", type=click.IntRange(1, 50), default=2, show_default=True,
                 help="Strongly entangling layers."),
    click.option("--batch", type=click.IntRange(1), default=32, show_default=True, help="Samples per step."),
    click.option("--shots", type=click.IntRange(1), default=4096, show_default=True),
]


def _workload(f):
    for opt in reversed(_WORKLOAD):
        f = opt(f)
    return f


@click.group()
def hardware() -> None:
    """Estimate the cost of a quantum workload and submit it to a backend."""


@hardware.command("estimate")
@_workload
@click.option("--workload", type=click.Choice(WORKLOADS), default="step", show_default=True,
              help="forward: one batch, no gradients; step: one training step; train: --steps steps.")
@click.option("--steps", type=click.IntRange(1), default=1, show_default=True, help="Training steps (train).")
@click.option("--backend", default="fake_manila", show_default=True, help="Backend to plan for (its limits).")
@click.option("--json", "as_json", is_flag=True, help="Print the estimate as JSON.")
def estimate(qubits: int, layers: int, batch: int, shots: int, workload: str, steps: int, backend: str,
             as_json: bool) -> None:
    """Circuits, PUBs, jobs, shots and QPU time of a workload, planned before anything is sent.

    Example: qnn hardware estimate --qubits 4 --layers 2 --batch 32 --workload train --steps 10
    """
    circuit = workload_circuit(qubits, layers)
    est = estimate_cost(circuit, batch=batch, workload=workload, steps=steps, shots=shots, backend=backend)
    if as_json:
        import json

        click.echo(json.dumps(est.as_dict()))
    else:
        click.echo("\n".join(_lines(circuit, est, backend, batch)))


@hardware.command("submit")
@_workload
@click.option("--backend", default="fake_manila", show_default=True,
              help="A fake backend (fake_manila, fake_brisbane, ...: local, noisy) or a real IBM backend name.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--yes", is_flag=True, help="Confirm a submission to a real device (uses your IBM account).")
def submit(qubits: int, layers: int, batch: int, shots: int, backend: str, seed: int, yes: bool) -> None:
    """Run one forward batch of the workload circuit on BACKEND and compare with the exact result.

    Example: qnn hardware submit --backend fake_manila --qubits 2 --layers 1 --batch 4 --shots 2000
    """
    import torch

    from qnn.layers import QuantumLayer

    circuit = workload_circuit(qubits, layers)
    if not backend.startswith("fake_") and not yes:
        raise click.UsageError(f"--backend {backend} is a real device: this submits {batch} circuit(s) x {shots} "
                               "shots to IBM Quantum with your account (run `qnn hardware estimate` first); "
                               "add --yes to confirm")
    est = estimate_cost(circuit, batch=batch, workload="forward", shots=shots, backend=backend, seed=seed)
    click.echo("\n".join(_lines(circuit, est, backend, batch)))
    if backend.startswith("fake_"):
        click.echo(f"backend {backend}: a local simulator with that device's noise model (no account, no queue)")
    engine = _ibm_engine(backend, shots, seed)
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, qubits, generator=gen, dtype=torch.float64) * torch.pi
    exact = QuantumLayer(circuit, seed=seed)
    device = QuantumLayer(circuit, engine=engine, seed=seed)
    device.load_state_dict(exact.state_dict())
    with torch.no_grad():
        want, got = exact(x), device(x)
    click.echo(f"ran {batch} circuit(s) x {shots} shots on {backend}")
    click.echo(f"max |device - exact| over {batch} x {qubits} <Z> values: {float((got - want).abs().max()):.4f}")
