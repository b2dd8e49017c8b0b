"""vaelib.checkpoint: roundtrip, clear errors, atomic saves that never lose the last checkpoint."""

import hashlib
import json
import os

import pytest
import torch

from vaelib import checkpoint
from vaelib.checkpoint import (
    CheckpointError,
    checkpoint_files,
    load_checkpoint,
    load_model,
    save_checkpoint,
)
from vaelib.vae import VAE, VAEConfig

CONFIG = VAEConfig(data_dim=10, hidden_dims=(8,), latent_dim=2)


pytestmark = pytest.mark.usefixtures("one_thread")


def trained_pieces(seed=0):
    torch.manual_seed(seed)
    model = VAE(CONFIG)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = torch.bernoulli(torch.full((16, 10), 0.4))
    for _ in range(2):  # two steps, so Adam has state
        optimizer.zero_grad()
        (-model.elbo(x).mean()).backward()
        optimizer.step()
    return model, optimizer


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_roundtrip(tmp_path):
    model, optimizer = trained_pieces()
    history = {"epoch": [1, 2], "train_elbo": [-7.5, -7.0]}
    save_checkpoint(tmp_path / "run", model, optimizer=optimizer, epoch=2, history=history,
                    train_config={"lr": 0.01})
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt.config == CONFIG and ckpt.epoch == 2
    assert ckpt.history == history and ckpt.train_config == {"lr": 0.01}
    assert_same_weights(ckpt.model, model)
    fresh = torch.optim.Adam(ckpt.model.parameters(), lr=1e-2)
    fresh.load_state_dict(ckpt.optimizer_state)
    state, expected = fresh.state_dict()["state"], optimizer.state_dict()["state"]
    assert all(torch.equal(state[i]["exp_avg_sq"], expected[i]["exp_avg_sq"]) for i in expected)
    assert_same_weights(load_model(tmp_path / "run"), model)
    manifest = json.loads((tmp_path / "run" / "config.json").read_text())
    assert manifest["model_config"]["latent_dim"] == 2  # the config is readable JSON


def test_model_only_and_gaussian(tmp_path):
    model = VAE(CONFIG, likelihood="gaussian", gaussian_std_mode="shared")
    save_checkpoint(tmp_path, model)
    ckpt = load_checkpoint(tmp_path)
    assert ckpt.optimizer_state is None and ckpt.history is None
    assert_same_weights(ckpt.model, model)


def test_saving_again_replaces_the_old_files(tmp_path):
    model, optimizer = trained_pieces()
    save_checkpoint(tmp_path, model, optimizer=optimizer, epoch=1, history={})
    save_checkpoint(tmp_path, model, optimizer=optimizer, epoch=2, history={})
    save_checkpoint(tmp_path, model, optimizer=optimizer, epoch=2, history={})  # same epoch twice
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 4 and "config.json" in names, names
    assert load_checkpoint(tmp_path).epoch == 2


# ---------------------------------------------------------------------------------------- errors

def test_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_checkpoint(tmp_path)


def test_corrupt_weights(tmp_path):
    model, _ = trained_pieces()
    save_checkpoint(tmp_path, model)
    weights = next(tmp_path.glob("model-*.pt"))
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(tmp_path)
    weights.unlink()
    with pytest.raises(CheckpointError, match="incomplete"):
        load_checkpoint(tmp_path)


def test_corrupt_manifest(tmp_path):
    save_checkpoint(tmp_path, VAE(CONFIG))
    (tmp_path / "config.json").write_text('{"format": "vaelib-checkpoint-1", "epo')
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text('{"hello": 1}')
    with pytest.raises(CheckpointError, match="not a vaelib checkpoint"):
        load_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="refusing to overwrite"):
        save_checkpoint(tmp_path, VAE(CONFIG))


def test_config_that_does_not_match_the_weights(tmp_path):
    save_checkpoint(tmp_path, VAE(CONFIG))
    manifest = json.loads((tmp_path / "config.json").read_text())
    manifest["model_config"]["hidden_dims"] = [9]
    (tmp_path / "config.json").write_text(json.dumps(manifest))
    match = r"do not match.*\n.*encoder.0.weight: \(8, 10\) in the file, \(9, 10\)"
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(tmp_path)
    manifest["model_config"]["latent_dim"] = 0
    (tmp_path / "config.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="latent_dim"):
        load_checkpoint(tmp_path)


def test_weights_only_loading_refuses_arbitrary_objects(tmp_path):
    save_checkpoint(tmp_path, VAE(CONFIG))
    weights = next(tmp_path.glob("model-*.pt"))
    torch.save({"payload": os.getcwd}, weights)  # a pickled function: refused by weights_only
    manifest = json.loads((tmp_path / "config.json").read_text())
    manifest["files"]["model"]["sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    (tmp_path / "config.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="weights_only"):
        load_checkpoint(tmp_path)


# ---------------------------------------------------------------------------------------- atomicity

@pytest.mark.parametrize("fail_on", ["model", "config.json"])
def test_an_interrupted_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch, fail_on):
    old_model, optimizer = trained_pieces(seed=0)
    save_checkpoint(tmp_path, old_model, optimizer=optimizer, epoch=1, history={"epoch": [1]})
    new_model, _ = trained_pieces(seed=1)
    real_replace = os.replace

    def interrupted_replace(src, dst):
        if os.path.basename(dst).startswith(fail_on):
            raise KeyboardInterrupt  # Ctrl-C in the middle of saving
        real_replace(src, dst)

    monkeypatch.setattr(checkpoint.os, "replace", interrupted_replace)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, new_model, optimizer=optimizer, epoch=2,
                        history={"epoch": [1, 2]})
    monkeypatch.setattr(checkpoint.os, "replace", real_replace)
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind
    ckpt = load_checkpoint(tmp_path)
    assert ckpt.epoch == 1 and ckpt.history == {"epoch": [1]}
    assert_same_weights(ckpt.model, old_model)
    save_checkpoint(tmp_path, new_model, epoch=2)  # the next save works and cleans up
    assert_same_weights(load_model(tmp_path), new_model)
    assert len(list(tmp_path.iterdir())) == 2


def test_atomic_write_bytes(tmp_path):
    target = tmp_path / "a.json"
    checkpoint.atomic_write_bytes(target, b"one")
    checkpoint.atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two" and [p.name for p in tmp_path.iterdir()] == ["a.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # like a file written with open()


def test_checkpoint_files_lists_the_current_files(tmp_path):
    model, optimizer = trained_pieces()
    assert checkpoint_files(tmp_path / "none", missing_ok=True) == {}
    with pytest.raises(FileNotFoundError):
        checkpoint_files(tmp_path / "none")
    save_checkpoint(tmp_path / "run", model, optimizer=optimizer, epoch=3, history={"epoch": [3]})
    files = checkpoint_files(tmp_path / "run")
    assert set(files) == {"model", "optimizer", "history"}
    assert all(path.exists() and path.parent == tmp_path / "run" for path in files.values())
    assert files["history"].name == "history-epoch0003.json"
