"""``qnn hardware``: estimate the cost of a circuit workload and submit it to a backend.

:func:`estimate_cost` is the one place the command computes a cost; it is a stand-in to be
rewired to ``qnn.planner`` (in progress on another branch) once that package is on main.
Submission runs the circuit through qnn's ``ibm`` engine (qiskit-ibm-runtime): a
``fake_provider`` backend (``fake_manila``, the default) runs locally with that device's noise
model and needs no account; a real backend name needs a saved IBM Quantum account and ``--yes``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import click

__all__ = ["CostEstimate", "estimate_cost", "hardware", "workload_circuit"]

SECONDS_PER_SHOT = 2.5e-4  # a rough figure for current IBM devices (repetition delay dominated)


@dataclass(frozen=True)
class CostEstimate:
    """Circuit executions and shots of a workload, and a rough QPU-time figure."""

    n_qubits: int
    depth: int
    n_params: int
    batch: int
    steps: int
    gradients: bool
    executions: int
    shots: int
    total_shots: int
    qpu_seconds: float

    def lines(self) -> list[str]:
        grad = f"forward + parameter-shift backward (1 + 2 x {self.n_params} circuits per sample)" if self.gradients \
            else "forward only (1 circuit per sample)"
        return [
            f"circuit: {self.n_qubits} qubits, logical depth {self.depth}, {self.n_params} parametrised gates",
            f"workload: {self.steps} step(s) of {self.batch} samples, {grad}",
            f"executions: {self.executions:,} circuits x {self.shots:,} shots = {self.total_shots:,} shots",
            f"estimated QPU time: {self.qpu_seconds:,.1f} s (at {SECONDS_PER_SHOT * 1e6:.0f} us per shot; "
            "queueing and transpilation not included)",
        ]


def workload_circuit(n_qubits: int, n_layers: int):
    """Angle embedding (RY) + ``n_layers`` strongly entangling layers + ``<Z>`` on every wire."""
    import qnn

    c = qnn.Circuit(n_qubits)
    qnn.angle_embedding(c, rotation="Y")
    qnn.strongly_entangling_layers(c, n_layers=n_layers)
    c.measure_z()
    return c


def estimate_cost(circuit, *, batch: int, steps: int = 1, shots: int = 4096, gradients: bool = True) -> CostEstimate:
    """Executions, shots and a rough QPU time for ``steps`` batches of ``batch`` samples."""
    if batch < 1 or steps < 1 or shots < 1:
        raise ValueError(f"estimate_cost: batch, steps and shots must be >= 1; got {batch}, {steps}, {shots}")
    per_sample = 1 + (2 * circuit.n_params if gradients else 0)
    executions = per_sample * batch * steps
    return CostEstimate(circuit.n_qubits, circuit.depth, circuit.n_params, batch, steps, gradients, executions,
                        shots, executions * shots, executions * shots * SECONDS_PER_SHOT)


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
@click.option("--steps", type=click.IntRange(1), default=1, show_default=True, help="Training steps.")
@click.option("--forward-only", is_flag=True, help="No gradients (inference).")
@click.option("--json", "as_json", is_flag=True, help="Print the estimate as JSON.")
def estimate(qubits: int, layers: int, batch: int, shots: int, steps: int, forward_only: bool, as_json: bool) -> None:
    """Circuit executions, shots and QPU time of a training or inference workload.

    Example: qnn hardware estimate --qubits 4 --layers 2 --batch 32 --steps 10
    """
    est = estimate_cost(workload_circuit(qubits, layers), batch=batch, steps=steps, shots=shots,
                        gradients=not forward_only)
    if as_json:
        import json

        click.echo(json.dumps(asdict(est)))
    else:
        click.echo("\n".join(est.lines()))


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

    from qnn.engines.ibm_engine import IBMEngine
    from qnn.layers import QuantumLayer

    circuit = workload_circuit(qubits, layers)
    est = estimate_cost(circuit, batch=batch, shots=shots, gradients=False)
    click.echo("\n".join(est.lines()))
    if not backend.startswith("fake_") and not yes:
        raise click.UsageError(f"--backend {backend} is a real device: this submits {est.executions} circuit(s) "
                               "to IBM Quantum with your account; add --yes to confirm")
    if backend.startswith("fake_"):
        click.echo(f"backend {backend}: a local simulator with that device's noise model (no account, no queue)")
    import warnings

    with warnings.catch_warnings():  # looking a fake backend up instantiates them all, some warn
        warnings.simplefilter("ignore", UserWarning)
        engine = IBMEngine(backend, shots=shots, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, qubits, generator=gen, dtype=torch.float64) * torch.pi
    exact = QuantumLayer(circuit, seed=seed)
    device = QuantumLayer(circuit, engine=engine, seed=seed)
    device.load_state_dict(exact.state_dict())
    with torch.no_grad():
        want, got = exact(x), device(x)
    click.echo(f"ran {batch} circuit(s) x {shots} shots on {backend}")
    click.echo(f"max |device - exact| over {batch} x {qubits} <Z> values: {float((got - want).abs().max()):.4f}")
