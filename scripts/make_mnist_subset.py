"""Build vaelib/data/mnist_subset.npz: the first 10,000 training and first 2,000 test images of
MNIST.

Reproducible: it reads the four MNIST IDX files (verified by SHA-256 of their decompressed content),
keeps the first rows of each split, and writes uint8 images and labels with np.savez_compressed.

    python -m scripts.make_mnist_subset --source ../shared/data/mnist
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np

from scripts.atomic import write_atomic
from vaelib.data import _SUBSET_COUNTS, load_mnist

OUT = Path(__file__).resolve().parents[1] / "vaelib" / "data" / "mnist_subset.npz"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="folder with the four MNIST IDX files")
    parser.add_argument("--out", type=Path, default=OUT, help=f"output file (default {OUT})")
    args = parser.parse_args(argv)

    mnist = load_mnist(args.source, download=False)
    n_train, n_test = _SUBSET_COUNTS["train"], _SUBSET_COUNTS["test"]
    arrays = {
        "train_images": mnist.train_images[:n_train].numpy(),
        "train_labels": mnist.train_labels[:n_train].numpy().astype(np.uint8),
        "test_images": mnist.test_images[:n_test].numpy(),
        "test_labels": mnist.test_labels[:n_test].numpy().astype(np.uint8),
    }
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_atomic(args.out, buffer.getvalue())
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB): "
          + ", ".join(f"{k} {v.shape}" for k, v in arrays.items()))


if __name__ == "__main__":
    main()
