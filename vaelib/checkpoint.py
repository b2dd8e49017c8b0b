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
files of the previous one are deleted only after the new ``config.json`` is in place.

Loading trusts nothing it has not checked: ``config.json`` records the SHA-256 of its own content
(``manifest_sha256``: the model's configuration, the epoch, the training options and the list of
files) and of every file, so an edited or truncated file is reported, never half-loaded (a
``config.json`` of the current format without its ``manifest_sha256`` is refused too); each
field of ``config.json`` must have its type; the weights must have the shapes the configuration
gives and be finite; and every tensor of the optimizer state must have the shape, dtype and
device of its parameter (a foreign one can crash fused Adam). Checkpoints of the earlier format
(``vaelib-checkpoint-1``), whose ``config.json`` may lack ``manifest_sha256``, load with the other
checks and a :class:`LegacyCheckpointWarning`, once per folder.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

from .atomic import atomic_write_bytes
from .device import check_device
from .vae import VAE, VAEConfig

__all__ = ["Checkpoint", "CheckpointError", "LegacyCheckpointWarning", "save_checkpoint",
           "load_checkpoint", "load_model", "checkpoint_files", "saved_epoch"]

FORMAT = "vaelib-checkpoint-2"  # config.json always records its own SHA-256 (manifest_sha256)
LEGACY_FORMAT = "vaelib-checkpoint-1"  # manifest_sha256 optional (vaelib before it was required)
FORMATS = (FORMAT, LEGACY_FORMAT)
MANIFEST = "config.json"
_KINDS = {"model": ".pt", "optimizer": ".pt", "history": ".json"}  # kind -> file suffix
_SELF_HASH = "manifest_sha256"  # the field of config.json that holds the hash of the others


class CheckpointError(ValueError):
    """A checkpoint that is corrupt, incomplete, or does not match its own config."""


class LegacyCheckpointWarning(UserWarning):
    """A checkpoint of the earlier format, whose config.json need not record its own SHA-256."""


_warned_legacy: set[str] = set()  # the folders already warned about (once each)


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns."""

    directory: Path
    epoch: int  # completed training epochs
    model: VAE  # built from config.json, weights loaded
    optimizer_state: dict | None  # for optimizer.load_state_dict, or None if none was saved
    history: dict | None  # the training curves (train.History.to_dict()), or None
    train_config: dict | None  # the training options, or None
    run_config: dict | None = None  # how the run was started (the command line's settings)

    @property
    def config(self) -> VAEConfig:
        return self.model.config


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


def _manifest_sha256(manifest: dict) -> str:
    """SHA-256 of every field of a manifest but its own hash, as canonical JSON (sorted keys)."""
    fields = {k: v for k, v in manifest.items() if k != _SELF_HASH}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
                          ).hexdigest()


def _check_manifest(manifest: dict, path: Path) -> None:
    """Each field of config.json has its type, and its content the SHA-256 it records."""
    def bad(field: str, want: str, value) -> CheckpointError:
        return CheckpointError(
            f"{path}: the field \"{field}\" must be {want}, got {value!r}. Was the file edited? "
            "Restore it from a copy of the run, or use another checkpoint.")

    epoch = manifest.get("epoch", 0)
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise bad("epoch", "an integer >= 0 (the completed epochs)", epoch)
    if not isinstance(manifest.get("model_config"), dict):
        raise bad("model_config", "an object of VAEConfig fields", manifest.get("model_config"))
    for field in ("train_config", "run_config"):
        if not isinstance(manifest.get(field), (dict, type(None))):
            raise bad(field, "an object, or null", manifest.get(field))
    files = manifest.get("files", {})
    if not isinstance(files, dict):
        raise bad("files", 'an object like {"model": {"name": ..., "sha256": ...}}', files)
    for kind, entry in files.items():
        name = entry.get("name") if isinstance(entry, dict) else None
        if (not isinstance(name, str) or Path(name).name != name or name in ("", ".", "..")
                or not isinstance(entry.get("sha256"), str)):
            raise bad(f"files.{kind}", 'an object {"name": a file in this folder, "sha256": its '
                      "SHA-256}", entry)
    recorded = manifest.get(_SELF_HASH)
    if recorded is None and manifest.get("format") == FORMAT:
        raise CheckpointError(
            f"{path} has no \"{_SELF_HASH}\" field, which every checkpoint of this format "
            f"({FORMAT}) records: it was removed, so the file may have been edited (e.g. another "
            "activation or learning rate) and cannot be trusted. Restore the original file from "
            "a copy of the run, or use another checkpoint.")
    if recorded is None:
        key = str(path.resolve())
        if key not in _warned_legacy:
            _warned_legacy.add(key)
            warnings.warn(
                f"{path} is a checkpoint of the earlier format ({LEGACY_FORMAT}) without its own "
                f"SHA-256 (\"{_SELF_HASH}\"): an edit of it cannot be detected; it is loaded with "
                "the other checks (every file's SHA-256, the weights' shapes and values). Saving "
                f"the run again (e.g. training on) writes the current format.",
                LegacyCheckpointWarning, stacklevel=4)
    elif recorded != _manifest_sha256(manifest):
        raise CheckpointError(
            f"{path} was edited or damaged after it was saved: its content no longer matches the "
            f"SHA-256 it records (\"{_SELF_HASH}\"), so it may describe another model or run than "
            "the one trained (e.g. a changed activation or learning rate). Restore the original "
            "file from a copy of the run, or use another checkpoint.")


def _broken_link(path: Path) -> str | None:
    """A message if ``path`` is a symbolic link to nothing, else None."""
    if path.is_symlink() and not path.exists():
        return (f"{path} is a broken symbolic link: it points to {os.readlink(path)}, which does "
                "not exist (was the run moved or deleted?). Point the link at the run again, or "
                "use the run's own folder.")
    return None


def _read_manifest(directory: Path) -> dict:
    """``config.json`` of a checkpoint folder, or a clear error."""
    for path in (directory, directory / MANIFEST):
        broken = _broken_link(path)
        if broken:
            raise FileNotFoundError(f"no checkpoint at {directory}: {broken}")
    if directory.exists() and not directory.is_dir():
        raise FileNotFoundError(
            f"no checkpoint at {directory}: it is a file, not a folder. A checkpoint is the "
            f"folder that holds {MANIFEST} and the weights (what train(checkpoint_dir=...) or "
            "python -m vaelib.train --out wrote): pass that folder.")
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
    if not isinstance(manifest, dict) or manifest.get("format") not in FORMATS:
        raise CheckpointError(
            f"{path} is not a vaelib checkpoint (expected \"format\": \"{FORMAT}\").")
    _check_manifest(manifest, path)
    return manifest


def save_checkpoint(directory: str | os.PathLike, model: VAE, *, optimizer=None, epoch: int = 0,
                    history: dict | None = None, train_config: dict | None = None,
                    run_config: dict | None = None, model_state: dict | None = None,
                    optimizer_state: dict | None = None) -> Path:
    """Save ``model`` (and optimizer state, history, training options) into ``directory``.

    Args:
        directory: the checkpoint folder (created if needed). An existing checkpoint there is
            replaced atomically; a folder whose ``config.json`` is not a checkpoint is refused.
        model: a :class:`vaelib.vae.VAE`.
        optimizer: a torch optimizer whose ``state_dict()`` to keep, for resuming.
        epoch: completed training epochs.
        history: a JSON-ready dict (``History.to_dict()``).
        train_config: a JSON-ready dict of training options.
        run_config: a JSON-ready dict of how the run was started (e.g. the command line's flags).
        model_state, optimizer_state: state dicts to save instead of ``model.state_dict()`` and
            ``optimizer.state_dict()`` (e.g. copies taken at the end of an earlier epoch).

    Returns:
        ``directory`` as a Path.
    """
    directory = Path(directory)
    broken = _broken_link(directory)
    if broken:
        raise FileNotFoundError(f"cannot save a checkpoint to {directory}: {broken}")
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"cannot save a checkpoint to {directory}: it is an existing "
                                 "file, not a folder. Choose a folder (it is created if missing).")
    directory.mkdir(parents=True, exist_ok=True)
    old = {}  # the checkpoint being replaced
    if (directory / MANIFEST).exists():
        try:
            old = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            old = {"format": FORMAT}  # a corrupt checkpoint of ours: replace it
        if not isinstance(old, dict) or old.get("format") not in FORMATS:
            raise CheckpointError(f"{directory} holds a {MANIFEST} that is not a vaelib "
                                  "checkpoint; refusing to overwrite it. Choose another folder.")
    payloads = {"model": _torch_bytes(model_state if model_state is not None
                                      else model.state_dict())}
    if optimizer_state is None and optimizer is not None:
        optimizer_state = optimizer.state_dict()
    if optimizer_state is not None:
        payloads["optimizer"] = _torch_bytes(optimizer_state)
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
        "run_config": run_config,
        "files": files,
        "saved": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "torch_version": torch.__version__,
    }
    manifest[_SELF_HASH] = _manifest_sha256(manifest)
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
    broken = _broken_link(path)
    if broken:
        raise CheckpointError(f"checkpoint {directory} is incomplete: {broken}")
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


def _check_finite_weights(state: dict, directory: Path) -> None:
    """Weights with NaN or ±inf compute nothing but NaN: refuse them, naming the tensors."""
    bad = [f"{k} ({int((~torch.isfinite(v)).sum())} of {v.numel()} values)"
           for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(
            f"the weights in {directory} contain NaN or infinite values: {', '.join(bad[:6])}. A "
            "model with them computes only NaN (did the run diverge before this save?): use an "
            "earlier checkpoint, or train again with a smaller learning rate.")


def _check_optimizer_state(state: object, model: VAE, directory: Path) -> None:
    """Every tensor of the optimizer state has the shape, dtype and device of its parameter.

    ``optimizer.load_state_dict`` does not check shapes, and fused Adam then reads or writes past
    the end of a too-small buffer (a segmentation fault), so a state from another model is refused.
    """
    where = f"the optimizer state in {directory}"
    groups = state.get("param_groups") if isinstance(state, dict) else None
    if (not isinstance(state.get("state") if isinstance(state, dict) else None, dict)
            or not isinstance(groups, list)
            or not all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in groups)):
        raise CheckpointError(f"{where} is not an optimizer state_dict (state, param_groups). Use "
                              "the run's own optimizer file; the weights alone load with "
                              "load_model.")
    named = list(model.named_parameters())  # the order the optimizer was given them in
    ids = [i for g in groups for i in g["params"]]
    advice = ("was the optimizer file copied from another run? Use the run's own optimizer file; "
              "the weights alone load with load_model")
    if sorted(ids, key=str) != sorted(range(len(named)), key=str):
        raise CheckpointError(f"{where} does not fit the model in its {MANIFEST}: it is for "
                              f"{len(ids)} parameter tensors, the model has {len(named)} "
                              f"({advice}).")
    problems = []
    for i, values in state["state"].items():
        if i not in range(len(named)) or not isinstance(values, dict):
            problems.append(f"an entry {i!r} that is no parameter of the model")
            continue
        name, p = named[i]
        for key, value in values.items():
            if not isinstance(value, torch.Tensor):
                continue
            if key == "step":  # a count, one number
                if value.numel() != 1:
                    problems.append(f"{name}: step has shape {tuple(value.shape)}, not one number")
            elif (value.shape, value.dtype, value.device) != (p.shape, p.dtype, p.device):
                problems.append(f"{name}: {key} is {tuple(value.shape)} {value.dtype} on "
                                f"{value.device}; the parameter is {tuple(p.shape)} {p.dtype} "
                                f"on {p.device}")
    if problems:
        raise CheckpointError(f"{where} does not fit the model in its {MANIFEST} ({advice}):\n  "
                              + "\n  ".join(problems[:10]))


def load_checkpoint(directory: str | os.PathLike,
                    device: str | torch.device | None = None) -> Checkpoint:
    """Load a checkpoint folder written by :func:`save_checkpoint`.

    Args:
        directory: the checkpoint folder.
        device: where to put the model and optimizer state (default: the CPU).

    Raises:
        FileNotFoundError: no folder, or no ``config.json`` in it.
        CheckpointError: a file is missing, corrupt, edited or unreadable; the weights do not match
            the config or are not finite; the optimizer state does not fit the model.
        ValueError: ``device`` is not present on this machine (the message lists those that are).
    """
    directory = Path(directory)
    device = check_device(device) if device is not None else torch.device("cpu")
    manifest = _read_manifest(directory)
    model = _load_weights(directory, manifest, device)
    opt_bytes = _read_file(directory, manifest, "optimizer")
    optimizer_state = _torch_load(opt_bytes, "the optimizer state", device) if opt_bytes else None
    if optimizer_state is not None:
        _check_optimizer_state(optimizer_state, model, directory)
    hist_bytes = _read_file(directory, manifest, "history")
    try:
        history = json.loads(hist_bytes) if hist_bytes else None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"the history in {directory} is not valid JSON: {err}") from err
    return Checkpoint(directory=directory, epoch=manifest.get("epoch", 0), model=model,
                      optimizer_state=optimizer_state, history=history,
                      train_config=manifest.get("train_config"),
                      run_config=manifest.get("run_config"))


def _load_weights(directory: Path, manifest: dict, device: torch.device) -> VAE:
    """The model that ``config.json`` describes, with its weights checked and loaded."""
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
    _check_finite_weights(state, directory)
    model.load_state_dict(state)
    model.output_bias_from_data = True  # the saved bias came from data (or training): keep it
    return model.to(device)


def load_model(directory: str | os.PathLike, device: str | torch.device | None = None) -> VAE:
    """Just the trained model of a checkpoint folder: ``config.json`` and the weights, checked
    as :func:`load_checkpoint` checks them. The optimizer state and history are not read (a run
    whose optimizer file is missing or damaged still gives its model)."""
    directory = Path(directory)
    device = check_device(device) if device is not None else torch.device("cpu")
    return _load_weights(directory, _read_manifest(directory), device)


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


def saved_epoch(directory: str | os.PathLike) -> int | None:
    """The epoch of the checkpoint in ``directory`` (reading only its ``config.json``, checked), or
    None where there is no checkpoint yet."""
    directory = Path(directory)
    if not (directory / MANIFEST).exists():
        return None
    return _read_manifest(directory).get("epoch", 0)
