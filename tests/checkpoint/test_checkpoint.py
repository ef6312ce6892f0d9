"""Engine contract (config, pickling, capabilities) and portable checkpoints."""

import copy
import io
import pickle

import pytest
import torch

import qnn
from qnn.checkpoint import CheckpointError, parity_report
from qnn.engines import Engine, get_engine


def _circuit():
    c = qnn.Circuit(2)
    qnn.angle_embedding(c)
    qnn.basic_entangler_layers(c, 1)
    c.measure_z()
    return c


ENGINES = [("torch", {}), ("pennylane", {}), ("qiskit", {}), ("qiskit", {"shots": 64, "seed": 1}),
           ("ibm", {"backend": "fake_manila", "shots": 64, "seed": 1})]


@pytest.mark.parametrize("name,opts", ENGINES)
def test_engines_are_plain_config_and_layers_copy_pickle_and_save(name, opts, tmp_path):
    eng = get_engine(name, **opts)
    cfg = eng.config()
    assert cfg["engine"] == name and Engine.from_config(cfg).config() == cfg
    assert not any(type(v).__name__ == "module" for v in vars(eng).values())
    caps = eng.capabilities
    assert caps.hardware == (name == "ibm") and caps.exact_gradients
    assert caps.shots == opts.get("shots") and (caps.cost_per_evaluation > 0) == (name == "ibm")
    layer = qnn.QuantumLayer(_circuit(), engine=eng, seed=0)
    x = torch.rand(3, 2, generator=torch.Generator().manual_seed(0))
    for other in (copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))):
        assert other.engine.config() == cfg and torch.equal(other.weight, layer.weight)
        assert other(x).shape == (3, 2)
    torch.save(layer, tmp_path / "full.pt")
    assert torch.load(tmp_path / "full.pt", weights_only=False).engine.config() == cfg
    torch.save(layer.state_dict(), tmp_path / "sd.pt")
    layer.load_state_dict(torch.load(tmp_path / "sd.pt", weights_only=True))
    qnn.save(layer, tmp_path / "m.qnn")
    back = qnn.load(tmp_path / "m.qnn")
    assert back.engine.config() == cfg and torch.equal(back.weight, layer.weight)
    if caps.shots is None:
        assert torch.allclose(back(x), layer(x), atol=1e-6)


def test_checkpoint_contents_are_weights_only_and_portable(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), qnn.QuantumLayer(_circuit(), seed=4), torch.nn.Tanh())
    qnn.save(model, tmp_path / "m.qnn")
    outer = torch.load(tmp_path / "m.qnn", weights_only=True)
    assert outer["format"] == "qnn-checkpoint" and outer["qnn_version"] == qnn.__version__
    payload = torch.load(io.BytesIO(outer["payload"].numpy().tobytes()), weights_only=True)
    assert payload["engines"][0]["engine"] == "torch" and payload["seeds"] == {"1": 4}
    assert payload["circuits"][0]["qasm3"].startswith("OPENQASM 3")
    back = qnn.load(tmp_path / "m.qnn")
    x = torch.rand(5, 3)
    assert torch.allclose(back(x), model(x), atol=1e-6)
    moved = qnn.load(tmp_path / "m.qnn", engine="qiskit")
    assert moved[1].engine.name == "qiskit" and torch.allclose(moved(x), model(x), atol=1e-6)


def test_tampered_and_foreign_files_are_refused(tmp_path):
    qnn.save(qnn.QuantumLayer(_circuit(), seed=0), tmp_path / "m.qnn")
    outer = torch.load(tmp_path / "m.qnn", weights_only=True)
    outer["payload"][-100] ^= 1
    torch.save(outer, tmp_path / "bad.qnn")
    with pytest.raises(CheckpointError, match="digest does not match its contents"):
        qnn.load(tmp_path / "bad.qnn")
    torch.save({"weight": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="must be a qnn checkpoint"):
        qnn.load(tmp_path / "foreign.pt")
    (tmp_path / "junk").write_bytes(b"not a file torch can read")
    with pytest.raises(CheckpointError, match="could not be read with torch.load"):
        qnn.load(tmp_path / "junk")


def test_torch_trained_model_runs_on_noisy_qiskit_and_ibm_with_parity_report(tmp_path):
    g = torch.Generator().manual_seed(0)
    X = torch.rand(24, 2, generator=g) * 3
    y = (X[:, 0] > 1.5).long()
    model = qnn.QuantumLayer(_circuit(), seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    for _ in range(30):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(X) * 3, y).backward()
        opt.step()
    qnn.save(model, tmp_path / "m.qnn")
    rep = parity_report(tmp_path / "m.qnn", {
        "qiskit-noisy": get_engine("qiskit", shots=256, seed=1, noise_backend="fake_manila"),
        "ibm-fake": get_engine("ibm", backend="fake_manila", shots=256, seed=1)}, X, y)
    assert rep["reference"]["accuracy"] > 0.7
    for name in ("qiskit-noisy", "ibm-fake"):
        assert 0 < rep[name]["max_abs_diff"] < 0.5
        assert rep[name]["accuracy"] >= rep["reference"]["accuracy"] - 0.25
