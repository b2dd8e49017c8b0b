"""Wall time of executing every chapter top to bottom in a fresh kernel (JSON on stdout).

    python benchmarks/bench_chapters.py [--chapters chapters] [--only 03 05]

The budget (DESIGN.md): about a minute per chapter on 2 CPU cores (chapters 8-9: 90 s).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import nbformat
import torch
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


def run_chapter(path: Path) -> float:
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chapters", type=Path, default=ROOT / "chapters")
    parser.add_argument("--only", nargs="*", default=None, help="chapter numbers, e.g. 03 05")
    args = parser.parse_args(argv)
    paths = sorted(args.chapters.glob("[0-9][0-9]_*.ipynb"))
    if args.only:
        paths = [p for p in paths if p.name[:2] in args.only]
    seconds = {p.stem: round(run_chapter(p), 1) for p in paths}
    print(json.dumps({
        "benchmark": "chapter execution wall time (fresh kernel, top to bottom)",
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "processor": platform.processor() or platform.machine()},
        "seconds": seconds,
        "total_seconds": round(sum(seconds.values()), 1),
    }, indent=2))


if __name__ == "__main__":
    main()
