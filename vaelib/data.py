"""MNIST for the course: the bundled offline subset, full MNIST (verified, cached), binarization.

- :func:`load_mnist_subset` returns the first 10,000 training and first 2,000 test images of MNIST,
  bundled with vaelib (``vaelib/data/mnist_subset.npz``, built by
  ``scripts/make_mnist_subset.py``), so every chapter runs offline.
- :func:`load_mnist` returns full MNIST from a folder of the four IDX files (``.gz`` or raw),
  downloading them into that folder when missing. Every file is accepted only if the SHA-256 of its
  *decompressed* content is that of the original MNIST file, so any gzip of the real files passes
  and nothing else does. Downloads go to a temporary file that is renamed only once verified, so an
  interrupted or corrupt download never leaves a file that later passes as good. Downloaded files
  get the permissions the umask gives (0644 under umask 022), so a shared ``VAELIB_DATA`` folder is
  readable by every user; temporary files left by a killed download are removed once stale.
- A Bernoulli likelihood needs binary data: :func:`binarize` draws x ~ Bernoulli(pixel) afresh (for
  training, "dynamic binarization"), :func:`fixed_binarization` once with a fixed seed (for the
  test set, so test log-likelihoods are comparable across runs and with Burda et al., 2015).

MNIST: Yann LeCun, Corinna Cortes and Christopher J. C. Burges; licence CC BY-SA 3.0.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import time
import urllib.request
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from .atomic import atomic_file

__all__ = [
    "MNIST",
    "MNIST_FILES",
    "MNIST_MIRRORS",
    "IDXError",
    "read_idx",
    "parse_idx",
    "default_data_dir",
    "load_mnist",
    "load_mnist_subset",
    "to_unit_interval",
    "binarize",
    "fixed_binarization",
]

#: name -> (file stem, SHA-256 of the decompressed content).
MNIST_FILES = {
    "train_images": ("train-images-idx3-ubyte",
                     "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
    "train_labels": ("train-labels-idx1-ubyte",
                     "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
    "test_images": ("t10k-images-idx3-ubyte",
                    "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
    "test_labels": ("t10k-labels-idx1-ubyte",
                    "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
}

#: Public mirrors of the gzipped IDX files, tried in order.
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

_SUBSET_COUNTS = {"train": 10_000, "test": 2_000}

#: A partial download (``.<stem>.*.part``) untouched this long is left over from a killed process
#: (a live download writes to it every megabyte), and is removed.
_STALE_PART_SECONDS = 3600


class IDXError(ValueError):
    """An IDX file that is truncated, has the wrong magic number, or is not MNIST."""


@dataclass(frozen=True)
class MNIST:
    """MNIST images (N, 28, 28) uint8 and labels (N,) int64, as CPU tensors."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor

    def __repr__(self) -> str:
        return (f"MNIST(train={tuple(self.train_images.shape)}, "
                f"test={tuple(self.test_images.shape)}, dtype={self.train_images.dtype})")


# ---------------------------------------------------------------------------------------- IDX files
# IDX layout: 2 zero bytes, a type byte (0x08 = unsigned byte), the number of dimensions, then each
# dimension as a big-endian uint32, then the data in C order.

def parse_idx(data: bytes, name: str = "IDX data") -> np.ndarray:
    """Parse the bytes of an (uncompressed) unsigned-byte IDX file into a uint8 array."""
    if len(data) < 4:
        raise IDXError(f"{name} is truncated: {len(data)} bytes, fewer than the 4-byte header.")
    if data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise IDXError(
            f"{name} is not an unsigned-byte IDX file: its magic number is {data[:4].hex()} "
            "(expected 0000 08 followed by the number of dimensions). Is it an MNIST file, and was "
            "it decompressed correctly?")
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise IDXError(f"{name} is truncated or malformed: its header declares {ndim} dimensions.")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        kind = "truncated" if len(data) < expected else "longer than its header says"
        raise IDXError(f"{name} is {kind}: shape {shape} needs {expected} bytes, the file has "
                       f"{len(data)}. Delete it and download it again.")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _read_bytes(path: Path) -> bytes:
    """The content of ``path``, decompressed if it is gzip (by magic bytes, not by name)."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise IDXError(f"{path} is a damaged gzip file ({err}). Delete it and download it "
                           "again.") from err
    return raw


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an unsigned-byte IDX file, gzipped or raw, into a uint8 array."""
    path = Path(path)
    return parse_idx(_read_bytes(path), name=str(path))


# ------------------------------------------------------------------------------------ full MNIST

def default_data_dir() -> Path:
    """Where full MNIST lives when no ``root`` is given: ``$VAELIB_DATA`` if set, else the per-user
    cache folder (``$XDG_CACHE_HOME/vaelib/mnist``, by default ``~/.cache/vaelib/mnist``)."""
    env = os.environ.get("VAELIB_DATA")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "vaelib" / "mnist"


def _find(folder: Path, stem: str) -> Path | None:
    candidates = (folder / f"{stem}.gz", folder / stem)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    for candidate in candidates:
        if candidate.is_symlink() and not candidate.exists():  # a link to a file moved away
            raise FileNotFoundError(
                f"{candidate} is a broken symbolic link: it points to {os.readlink(candidate)}, "
                f"which does not exist. Point it at the MNIST file {candidate.name} again, or "
                "remove the link (load_mnist(download=True) then downloads the file).")
        if candidate.is_dir():  # nothing could be read or downloaded under that name
            raise IsADirectoryError(
                f"{candidate} is a folder, but it is where the MNIST file {candidate.name} should "
                f"be. Move it away (or rename it), then run again; or put the file {stem}.gz or "
                f"{stem} into {folder}.")
    return None


def _remove_stale_parts(folder: Path) -> None:
    """Delete partial downloads of MNIST files that no process has written to for an hour."""
    now = time.time()
    for stem, _ in MNIST_FILES.values():
        for part in folder.glob(f".{stem}.*.part"):
            try:
                if now - part.stat().st_mtime > _STALE_PART_SECONDS:
                    part.unlink()
            except OSError:  # gone already, or a read-only shared folder: leave it
                pass


def _verified_content(path: Path, sha256: str) -> bytes:
    content = _read_bytes(path)
    digest = hashlib.sha256(content).hexdigest()
    if digest != sha256:
        raise IDXError(
            f"{path} is not the original MNIST file: the SHA-256 of its decompressed content is "
            f"{digest}, expected {sha256}. Delete it (vaelib will download a fresh copy) or "
            "replace it with the real file.")
    return content


def _download(stem: str, sha256: str, folder: Path, mirrors: tuple[str, ...],
              timeout: float) -> Path:
    """Download ``stem``.gz into ``folder`` from the first mirror that serves the right content."""
    target = folder / f"{stem}.gz"
    errors = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + f"/{stem}.gz"
        try:  # atomic: the good file appears whole, or not at all
            with atomic_file(target, suffix=".part") as (out, tmp), \
                    urllib.request.urlopen(url, timeout=timeout) as response:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                out.flush()
                _verified_content(tmp, sha256)  # raises unless the content is the real file
            return target
        except (OSError, http.client.HTTPException, IDXError, ValueError) as err:
            errors.append(f"{url}: {type(err).__name__}: {err}")
    raise ConnectionError(
        f"Could not download {stem}.gz from any mirror:\n  " + "\n  ".join(errors) + "\n"
        "If you are offline, copy the four MNIST files "
        f"({', '.join(s for s, _ in MNIST_FILES.values())}; .gz or raw) into {folder} (or "
        "point the VAELIB_DATA environment variable or `root=` at a folder that has them), or "
        "use load_mnist_subset(), which is bundled with vaelib.")


def load_mnist(root: str | os.PathLike | None = None, download: bool = True,
               mirrors: tuple[str, ...] = MNIST_MIRRORS, timeout: float = 60.0) -> MNIST:
    """Full MNIST: 60,000 training and 10,000 test images with their labels.

    Args:
        root: a folder holding the four IDX files (``.gz`` or raw). Defaults to ``$VAELIB_DATA``,
            else the per-user cache folder (see :func:`default_data_dir`), which is created if
            needed.
        download: fetch missing files from ``mirrors`` into that folder.
        mirrors: base URLs tried in order.
        timeout: seconds to wait for a mirror to answer.

    Returns:
        :class:`MNIST` with images (N, 28, 28) uint8 and labels (N,) int64.
    """
    if root is not None:
        folder = Path(root).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(
                f"root={str(root)!r} is not an existing folder. Pass the folder that holds the "
                "MNIST IDX files, or root=None to use $VAELIB_DATA or the cache folder.")
    else:
        folder = default_data_dir()
        if "VAELIB_DATA" in os.environ and not folder.is_dir():
            raise FileNotFoundError(f"VAELIB_DATA={os.environ['VAELIB_DATA']!r} is not an existing "
                                    "folder. Create it, or unset VAELIB_DATA to use the cache "
                                    "folder.")
        folder.mkdir(parents=True, exist_ok=True)

    _remove_stale_parts(folder)
    arrays = {}
    for key, (stem, sha256) in MNIST_FILES.items():
        path = _find(folder, stem)
        if path is None:
            if not download:
                raise FileNotFoundError(
                    f"{stem}(.gz) is not in {folder}. Copy the MNIST files there, call "
                    "load_mnist(download=True), or use load_mnist_subset() offline.")
            path = _download(stem, sha256, folder, tuple(mirrors), timeout)
        arrays[key] = parse_idx(_verified_content(path, sha256), name=str(path))
    return _as_tensors(arrays)


def _as_tensors(arrays: dict[str, np.ndarray]) -> MNIST:
    return MNIST(**{key: torch.from_numpy(np.array(value, dtype=np.int64 if "labels" in key else
                                                    np.uint8)) for key, value in arrays.items()})


# ------------------------------------------------------------------------------------ the subset

def load_mnist_subset() -> MNIST:
    """The bundled subset: the first 10,000 training and 2,000 test images of MNIST (offline)."""
    resource = resources.files("vaelib") / "data" / "mnist_subset.npz"
    if not resource.is_file():
        raise FileNotFoundError(
            f"The bundled MNIST subset is missing ({resource}). Reinstall vaelib, or rebuild it "
            "with `python -m scripts.make_mnist_subset --source DIR` from the four MNIST IDX "
            "files.")
    with resources.as_file(resource) as path, np.load(path) as npz:
        return _as_tensors({key: npz[key] for key in MNIST_FILES})


# ---------------------------------------------------------------------------------------- pixels

def to_unit_interval(images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 images (N, 28, 28) -> grey levels in [0, 1], flattened to (N, D = 784)."""
    if images.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images (as loaded), got {images.dtype}.")
    return images.reshape(images.shape[0], -1).to(dtype) / 255.0


def _check_unit(x: torch.Tensor) -> None:
    if not torch.is_floating_point(x):
        raise TypeError(f"binarization needs floating-point grey levels in [0, 1], got {x.dtype}; "
                        "convert uint8 images with to_unit_interval first.")
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError("binarization needs grey levels in [0, 1] (they are Bernoulli "
                         f"probabilities), got values in [{x.min().item():.3g}, "
                         f"{x.max().item():.3g}].")


def binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Dynamic binarization: each pixel becomes 1 with probability equal to its grey level.

    Args:
        x: grey levels in [0, 1], any shape (e.g. (N, D)), on any device.
        generator: a ``torch.Generator`` on x's device, for reproducible draws.

    Returns:
        A tensor of 0s and 1s with x's shape, dtype and device.
    """
    _check_unit(x)
    return torch.bernoulli(x, generator=generator)


def fixed_binarization(x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """One reproducible binarization (for the test set): the same 0/1 image on every device."""
    _check_unit(x)
    generator = torch.Generator().manual_seed(seed)
    return torch.bernoulli(x.detach().cpu(), generator=generator).to(x.device)
