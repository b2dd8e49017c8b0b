"""vaelib.checkpoint: roundtrip, clear errors, atomic saves that never lose the last checkpoint."""

import hashlib
import json
import os
import re

import pytest
import torch

from vaelib import atomic, checkpoint
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
        (-model.elbo_analytic_kl(x).mean()).backward()
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
    rewrite_manifest(tmp_path, manifest)  # consistent with itself, not with the weights
    match = r"do not match.*\n.*encoder.0.weight: \(8, 10\) in the file, \(9, 10\)"
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(tmp_path)
    manifest["model_config"]["latent_dim"] = 0
    rewrite_manifest(tmp_path, manifest)
    with pytest.raises(CheckpointError, match="latent_dim"):
        load_checkpoint(tmp_path)


def test_weights_only_loading_refuses_arbitrary_objects(tmp_path):
    save_checkpoint(tmp_path, VAE(CONFIG))
    weights = next(tmp_path.glob("model-*.pt"))
    torch.save({"payload": os.getcwd}, weights)  # a pickled function: refused by weights_only
    manifest = json.loads((tmp_path / "config.json").read_text())
    manifest["files"]["model"]["sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    rewrite_manifest(tmp_path, manifest)
    with pytest.raises(CheckpointError, match=r"could not be read by torch.load\(weights_only"):
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
    atomic.atomic_write_bytes(target, b"one")
    atomic.atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two" and [p.name for p in tmp_path.iterdir()] == ["a.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # like a file written with open()


def test_atomic_file_leaves_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "a.json"
    atomic.atomic_write_bytes(target, b"old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic.atomic_file(target) as (f, tmp):
            f.write(b"half of the ne")
            assert tmp.parent == tmp_path and tmp.exists()
            raise RuntimeError("disk full")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["a.json"]


# ------------------------------------------------------------------------ what a load trusts

def rewrite_manifest(directory, manifest):
    """Write config.json as a consistent manifest would be (its own SHA-256 updated): the checks
    after the manifest's must catch what it cannot."""
    manifest = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    manifest["manifest_sha256"] = checkpoint._manifest_sha256(manifest)
    (directory / "config.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("edit", [
    lambda m: m["model_config"].update(activation="tanh"),  # another model, same weight shapes
    lambda m: m["train_config"].update(lr=0.1),
    lambda m: m.update(epoch=7),
    lambda m: m["files"]["history"].update(bytes=1),
])
def test_an_edited_config_json_is_refused(tmp_path, edit):
    model, optimizer = trained_pieces()
    save_checkpoint(tmp_path, model, optimizer=optimizer, epoch=2, history={"epoch": [1, 2]},
                    train_config={"lr": 0.01})
    manifest = json.loads((tmp_path / "config.json").read_text())
    edit(manifest)
    (tmp_path / "config.json").write_text(json.dumps(manifest, indent=1))
    with pytest.raises(CheckpointError, match="edited or damaged") as info:
        load_checkpoint(tmp_path)
    assert "config.json" in str(info.value)


def test_an_edited_history_is_refused(tmp_path):
    model, optimizer = trained_pieces()
    save_checkpoint(tmp_path, model, optimizer=optimizer, epoch=2, history={"epoch": [1, 2]})
    history = next(tmp_path.glob("history-*.json"))
    history.write_text(history.read_text().replace("2", "3"))
    with pytest.raises(CheckpointError, match=rf"{history.name} is corrupt"):
        load_checkpoint(tmp_path)


def test_a_current_checkpoint_whose_own_hash_was_deleted_is_refused(tmp_path):
    # The case: delete "manifest_sha256", edit the activation, and it loaded.
    model, optimizer = trained_pieces()
    save_checkpoint(tmp_path, model, optimizer=optimizer, epoch=2)
    manifest = json.loads((tmp_path / "config.json").read_text())
    assert manifest["format"] == checkpoint.FORMAT
    del manifest["manifest_sha256"]
    manifest["model_config"]["activation"] = "tanh"
    (tmp_path / "config.json").write_text(json.dumps(manifest))
    for load in (load_checkpoint, load_model):
        with pytest.raises(CheckpointError, match=r'config.json has no "manifest_sha256" field.*'
                           "it was removed.*Restore the original file"):
            load(tmp_path)


def test_a_checkpoint_of_the_earlier_format_without_the_manifest_hash_loads_and_says_so(
        tmp_path, recwarn):
    model, optimizer = trained_pieces()
    save_checkpoint(tmp_path, model, optimizer=optimizer, epoch=2)
    manifest = json.loads((tmp_path / "config.json").read_text())
    del manifest["manifest_sha256"]
    manifest["format"] = checkpoint.LEGACY_FORMAT  # written by vaelib before the hash was required
    (tmp_path / "config.json").write_text(json.dumps(manifest))
    with pytest.warns(checkpoint.LegacyCheckpointWarning, match="earlier format.*other checks"):
        assert_same_weights(load_model(tmp_path), model)
    assert_same_weights(load_checkpoint(tmp_path).model, model)  # said once, not again
    assert not [w for w in recwarn if issubclass(w.category, checkpoint.LegacyCheckpointWarning)]
    # The other checks still apply to it, and training on writes the current format.
    save_checkpoint(tmp_path, model, optimizer=optimizer, epoch=3)
    assert json.loads((tmp_path / "config.json").read_text())["format"] == checkpoint.FORMAT


def test_an_earlier_format_checkpoint_with_its_hash_is_checked(tmp_path):
    save_checkpoint(tmp_path, VAE(CONFIG), epoch=1)
    manifest = json.loads((tmp_path / "config.json").read_text())
    manifest["format"] = checkpoint.LEGACY_FORMAT  # the hash was over the old format's name
    manifest["manifest_sha256"] = checkpoint._manifest_sha256(manifest)
    (tmp_path / "config.json").write_text(json.dumps(manifest))
    load_model(tmp_path)  # no warning: its hash is there and right
    manifest["epoch"] = 5
    (tmp_path / "config.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="edited or damaged"):
        load_model(tmp_path)


def test_a_file_is_not_a_checkpoint_folder(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"weights?")
    for load in (load_checkpoint, load_model):
        with pytest.raises(FileNotFoundError, match="it is a file, not a folder"):
            load(path)
    with pytest.raises(NotADirectoryError, match="it is an existing file, not a folder"):
        save_checkpoint(path, VAE(CONFIG))
    assert path.read_bytes() == b"weights?"


def test_load_model_needs_only_the_weights(tmp_path):
    model, optimizer = trained_pieces()
    save_checkpoint(tmp_path, model, optimizer=optimizer, epoch=2, history={"epoch": [1, 2]})
    next(tmp_path.glob("optimizer-*.pt")).unlink()
    next(tmp_path.glob("history-*.json")).write_text("damaged")
    assert_same_weights(load_model(tmp_path), model)
    with pytest.raises(CheckpointError, match="incomplete"):  # resuming needs them: refused
        load_checkpoint(tmp_path)


def test_a_broken_symbolic_link_is_named(tmp_path):
    model, optimizer = trained_pieces()
    run = tmp_path / "run"
    save_checkpoint(run, model, optimizer=optimizer, epoch=2)
    link = tmp_path / "latest"
    link.symlink_to(tmp_path / "moved-away")
    with pytest.raises(FileNotFoundError, match=r"latest is a broken symbolic link: it points to "
                       r".*moved-away, which does not exist"):
        load_model(link)
    weights = next(run.glob("model-*.pt"))
    weights.rename(tmp_path / "elsewhere.pt")
    weights.symlink_to(tmp_path / "gone.pt")
    with pytest.raises(CheckpointError, match=rf"{weights.name} is a broken symbolic link"):
        load_model(run)
    config = run / "config.json"
    config.rename(tmp_path / "config.json")
    config.symlink_to(tmp_path / "nothing.json")
    with pytest.raises(FileNotFoundError, match="config.json is a broken symbolic link"):
        load_checkpoint(run)
    with pytest.raises(FileNotFoundError, match="cannot save a checkpoint to .*latest: .*latest is "
                       "a broken symbolic link"):
        save_checkpoint(link, model)


@pytest.mark.parametrize("field, value", [
    ("files", "oops"), ("epoch", "three"), ("epoch", -1), ("model_config", [1, 2]),
    ("train_config", "fast"), ("files", {"model": "model.pt"}),
    ("files", {"model": {"name": "../model.pt", "sha256": "0"}}),
])
def test_a_bad_field_in_config_json_is_named(tmp_path, field, value):
    save_checkpoint(tmp_path, VAE(CONFIG), epoch=1)
    manifest = json.loads((tmp_path / "config.json").read_text())
    manifest[field] = value
    rewrite_manifest(tmp_path, manifest)
    with pytest.raises(CheckpointError, match=rf'config.json: the field "{field}[".]'):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("other, expected", [
    # smaller: fused CPU Adam read past its buffers (a segmentation fault)
    ((4,), r"encoder.0.weight: exp_avg is \(4, 10\) torch.float32 on cpu; the parameter is "
           r"\(8, 10\)"),
    ((16,), r"encoder.0.weight: exp_avg is \(16, 10\)"),
    ((8, 8), "it is for 12 parameter tensors, the model has 8"),
])
def test_a_foreign_optimizer_state_is_refused(tmp_path, other, expected):
    model, optimizer = trained_pieces()
    save_checkpoint(tmp_path, model, optimizer=optimizer, epoch=2)
    stranger = VAE(data_dim=10, hidden_dims=other, latent_dim=2)
    foreign = torch.optim.Adam(stranger.parameters(), lr=1e-2)
    (-stranger.elbo_analytic_kl(torch.ones(4, 10)).mean()).backward()
    foreign.step()
    # Its file put in place of the run's, with the manifest made consistent with it.
    manifest = json.loads((tmp_path / "config.json").read_text())
    path = tmp_path / manifest["files"]["optimizer"]["name"]
    torch.save(foreign.state_dict(), path)
    data = path.read_bytes()
    manifest["files"]["optimizer"].update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    rewrite_manifest(tmp_path, manifest)
    with pytest.raises(CheckpointError, match="optimizer state .* does not fit the model") as info:
        load_checkpoint(tmp_path)
    assert re.search(expected, str(info.value)), str(info.value)


def test_an_optimizer_state_of_another_dtype_is_refused(tmp_path):
    model, optimizer = trained_pieces()
    state = optimizer.state_dict()
    state["state"][0]["exp_avg"] = state["state"][0]["exp_avg"].double()
    save_checkpoint(tmp_path, model, epoch=2)
    manifest = json.loads((tmp_path / "config.json").read_text())
    data = checkpoint._torch_bytes(state)
    (tmp_path / "optimizer-x.pt").write_bytes(data)
    manifest["files"]["optimizer"] = {"name": "optimizer-x.pt", "bytes": len(data),
                                      "sha256": hashlib.sha256(data).hexdigest()}
    rewrite_manifest(tmp_path, manifest)
    with pytest.raises(CheckpointError, match=r"encoder.0.weight: exp_avg is \(8, 10\) "
                                              r"torch.float64"):
        load_checkpoint(tmp_path)


def test_nan_weights_are_refused(tmp_path):
    model, _ = trained_pieces()
    with torch.no_grad():
        model.decoder[0].weight[0, 0] = float("nan")
        model.encoder[0].bias[1] = float("inf")
    save_checkpoint(tmp_path, model, epoch=3)
    with pytest.raises(CheckpointError, match=r"NaN or infinite.*encoder.0.bias \(1 of 8"):
        load_model(tmp_path)


def test_loading_onto_a_device_that_is_not_there_says_so(tmp_path, monkeypatch):
    save_checkpoint(tmp_path, VAE(CONFIG))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"'cuda' was asked for.*available here: cpu"):
        load_model(tmp_path, device="cuda")
    with pytest.raises(ValueError, match="not a device"):
        load_model(tmp_path, device="nonsense")


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


def test_an_absurd_size_in_config_json_is_refused_before_allocating(tmp_path):
    save_checkpoint(tmp_path, VAE(CONFIG))
    manifest = json.loads((tmp_path / "config.json").read_text())
    manifest["model_config"]["hidden_dims"] = [10**9]  # would ask for terabytes
    rewrite_manifest(tmp_path, manifest)
    with pytest.raises(CheckpointError, match=r"no valid model_config: .*parameters"):
        load_checkpoint(tmp_path)
