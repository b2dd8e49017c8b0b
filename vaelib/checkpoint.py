"""Save and load a VAE (and what resuming its training needs) without ever losing a good checkpoint.

A checkpoint is a folder::

    run/
      config.json              what to read first: the model's VAEConfig as JSON, the epoch, the
                               training options, and the name and SHA-256 of each file below
      model-epoch0005.pt       the weights (a state_dict), read with torch.load(weights_only=True)
      optimizer-epoch0005.pt   the optimizer's state, to resume training exactly
      history-epoch0005.json   the training curves up to that epoch

Saving is atomic: every file is written to a temporary file in the same folder and renamed into
place (``os.replace``), new weights get new names, and ``config.json`` is replaced last. A crash
or Ctrl-C at any moment leaves either the previous checkpoint or the new one, both complete; the
files of the previous one are deleted only after the new ``config.json`` is in place. Loading
checks every file's SHA-256, so a truncated or altered file is reported, never half-loaded.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

from .vae import VAE, VAEConfig

__all__ = ["Checkpoint", "CheckpointError", "save_checkpoint", "load_checkpoint", "load_model",
           "checkpoint_files", "atomic_write_bytes"]

FORMAT = "vaelib-checkpoint-1"
MANIFEST = "config.json"
_KINDS = {"model": ".pt", "optimizer": ".pt", "history": ".json"}  # kind -> file suffix


class CheckpointError(ValueError):
    """A checkpoint that is corrupt, incomplete, or does not match its own config."""


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns."""

    directory: Path
    epoch: int  # completed training epochs
    model: VAE  # built from config.json, weights loaded
    optimizer_state: dict | None  # for optimizer.load_state_dict, or None if none was saved
    history: dict | None  # the training curves (train.History.to_dict()), or None
    train_config: dict | None  # the training options, or None

    @property
    def config(self) -> VAEConfig:
        return self.model.config


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file in the same folder, then a rename.

    Readers see the old file or the new one, never a partial one (``os.replace`` is atomic).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the rename makes them visible
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; give it normal permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _fsync_dir(directory: Path) -> None:
    """Make renames in ``directory`` durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _torch_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _read_manifest(directory: Path) -> dict:
    """``config.json`` of a checkpoint folder, or a clear error."""
    if not directory.is_dir():
        raise FileNotFoundError(
            f"no checkpoint at {directory}: the folder does not exist. Check the path, or train "
            "first (train(..., checkpoint_dir=...) or python -m vaelib.train --out).")
    path = directory / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(
            f"no checkpoint in {directory}: it has no {MANIFEST}. Is this the folder that "
            "train(checkpoint_dir=...) or python -m vaelib.train --out wrote?")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} is corrupt (not valid JSON: {err}).") from err
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a vaelib checkpoint (expected \"format\": \"{FORMAT}\").")
    return manifest


def save_checkpoint(directory: str | os.PathLike, model: VAE, *, optimizer=None, epoch: int = 0,
                    history: dict | None = None, train_config: dict | None = None) -> Path:
    """Save ``model`` (and optimizer state, history, training options) into ``directory``.

    Args:
        directory: the checkpoint folder (created if needed). An existing checkpoint there is
            replaced atomically; a folder whose ``config.json`` is not a checkpoint is refused.
        model: a :class:`vaelib.vae.VAE`.
        optimizer: a torch optimizer whose ``state_dict()`` to keep, for resuming.
        epoch: completed training epochs.
        history: a JSON-ready dict (``History.to_dict()``).
        train_config: a JSON-ready dict of training options.

    Returns:
        ``directory`` as a Path.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    old = {}  # the checkpoint being replaced
    if (directory / MANIFEST).exists():
        try:
            old = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            old = {"format": FORMAT}  # a corrupt checkpoint of ours: replace it
        if not isinstance(old, dict) or old.get("format") != FORMAT:
            raise CheckpointError(f"{directory} holds a {MANIFEST} that is not a vaelib "
                                  "checkpoint; refusing to overwrite it. Choose another folder.")
    payloads = {"model": _torch_bytes(model.state_dict())}
    if optimizer is not None:
        payloads["optimizer"] = _torch_bytes(optimizer.state_dict())
    if history is not None:
        payloads["history"] = json.dumps(history, indent=1).encode()

    # Fresh names, so the files the current config.json points to are never overwritten.
    tag, n = f"epoch{epoch:04d}", 1
    while any((directory / f"{kind}-{tag}{_KINDS[kind]}").exists() for kind in payloads):
        n += 1
        tag = f"epoch{epoch:04d}-{n}"
    files = {}
    for kind, data in payloads.items():
        name = f"{kind}-{tag}{_KINDS[kind]}"
        atomic_write_bytes(directory / name, data)
        files[kind] = {"name": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    manifest = {
        "format": FORMAT,
        "epoch": epoch,
        "model_config": model.config.to_dict(),
        "train_config": train_config,
        "files": files,
        "saved": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "torch_version": torch.__version__,
    }
    atomic_write_bytes(directory / MANIFEST, json.dumps(manifest, indent=1).encode())  # the commit
    _fsync_dir(directory)
    # Only now remove the previous checkpoint's files, and temporary files of interrupted saves.
    keep = {entry["name"] for entry in files.values()}
    old_files = old.get("files") if isinstance(old.get("files"), dict) else {}
    stale = [entry.get("name") for entry in old_files.values() if isinstance(entry, dict)]
    stale += [p.name for p in directory.glob(".*.tmp")]  # interrupted writes
    for kind, suffix in _KINDS.items():  # files of interrupted saves
        stale += [p.name for p in directory.glob(f"{kind}-epoch*{suffix}")]
    for name in stale:
        if name and name not in keep and Path(name).name == name:
            (directory / name).unlink(missing_ok=True)
    return directory


def _read_file(directory: Path, manifest: dict, kind: str) -> bytes | None:
    entry = manifest.get("files", {}).get(kind)
    if entry is None:
        return None
    path = directory / str(entry.get("name"))
    if not path.is_file():
        raise CheckpointError(f"checkpoint {directory} is incomplete: {MANIFEST} lists "
                              f"{path.name}, which is missing. Was the folder copied partly?")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
        raise CheckpointError(
            f"{path} is corrupt: its SHA-256 differs from the one recorded in {MANIFEST} "
            f"({len(data)} bytes, {entry.get('bytes')} expected). Use another checkpoint.")
    return data


def _torch_load(data: bytes, name: str, map_location):
    try:
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as err:  # unpickling errors come in many types
        raise CheckpointError(
            f"{name} could not be read by torch.load(weights_only=True): {err}") from err


def _check_state_dict(model: VAE, state: object, directory: Path) -> None:
    """Every tensor the config's model expects is in the file with the same shape, and no other."""
    if not isinstance(state, dict):
        raise CheckpointError(f"the weights in {directory} are not a state_dict.")
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}
    problems = [f"{k}: {found[k]} in the file, {shape} for the config"
                for k, shape in expected.items() if k in found and found[k] != shape]
    problems += [f"{k}: missing from the file" for k in expected if k not in found]
    problems += [f"{k}: in the file, not in the config's model" for k in found if k not in expected]
    if problems:
        raise CheckpointError(
            f"the weights in {directory} do not match its {MANIFEST} (was one of them edited or "
            "copied from another run?):\n  " + "\n  ".join(problems[:10]))


def load_checkpoint(directory: str | os.PathLike,
                    device: str | torch.device | None = None) -> Checkpoint:
    """Load a checkpoint folder written by :func:`save_checkpoint`.

    Args:
        directory: the checkpoint folder.
        device: where to put the model and optimizer state (default: the CPU).

    Raises:
        FileNotFoundError: no folder, or no ``config.json`` in it.
        CheckpointError: a file is missing, corrupt or unreadable, or the weights do not match
            the config.
    """
    directory = Path(directory)
    manifest = _read_manifest(directory)
    device = torch.device(device) if device is not None else torch.device("cpu")
    try:
        config = VAEConfig.from_dict(manifest["model_config"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{directory / MANIFEST} has no valid model_config: {err}") from err
    model = VAE(config)
    weights = _read_file(directory, manifest, "model")
    if weights is None:
        raise CheckpointError(
            f"{directory / MANIFEST} lists no model weights; the checkpoint is incomplete.")
    state = _torch_load(weights, "the model weights", device)
    _check_state_dict(model, state, directory)
    model.load_state_dict(state)
    model.output_bias_from_data = True  # the saved bias came from data (or training): keep it
    model.to(device)
    opt_bytes = _read_file(directory, manifest, "optimizer")
    optimizer_state = _torch_load(opt_bytes, "the optimizer state", device) if opt_bytes else None
    hist_bytes = _read_file(directory, manifest, "history")
    try:
        history = json.loads(hist_bytes) if hist_bytes else None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"the history in {directory} is not valid JSON: {err}") from err
    return Checkpoint(directory=directory, epoch=int(manifest.get("epoch", 0)), model=model,
                      optimizer_state=optimizer_state, history=history,
                      train_config=manifest.get("train_config"))


def load_model(directory: str | os.PathLike, device: str | torch.device | None = None) -> VAE:
    """Just the trained model of a checkpoint folder (see :func:`load_checkpoint`)."""
    return load_checkpoint(directory, device).model


def checkpoint_files(directory: str | os.PathLike, missing_ok: bool = False) -> dict[str, Path]:
    """The files the checkpoint in ``directory`` consists of, by kind: ``{"model": path, ...}``.

    Reads only ``config.json``. With ``missing_ok``, a folder with no checkpoint yet (a run
    stopped before its first save) gives ``{}`` instead of an error.
    """
    directory = Path(directory)
    if missing_ok and not (directory / MANIFEST).exists():
        return {}
    files = _read_manifest(directory).get("files", {})
    return {kind: directory / entry["name"] for kind, entry in files.items()}
