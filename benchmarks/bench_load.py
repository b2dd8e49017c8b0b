"""Chapter times on a quiet machine and with 1 and 2 competing busy processes (JSON on stdout).

    python benchmarks/bench_load.py                      # every chapter, loads 0 1 2
    python benchmarks/bench_load.py --chapters 01 08     # a subset
    python benchmarks/bench_load.py --loads 0 2

A course is run on shared machines (a JupyterHub node, a busy CI runner, a laptop with a browser
open). For each load N this starts N processes that keep a core busy (``while True: pass``, as
``../shared/tools/under-load N`` does), executes each chapter top to bottom in a fresh kernel, and
reports the chapter's wall time, the time of chapter 8's training cells (those that call
``train(...)``), and their ratios to the quiet run (N = 0). The targets of issue 11: no chapter
slower than 1.5x its quiet time with one competing process, 2.5x with two. It also reports each
chapter's peak memory (the kernel's maximum resident set size), which instructors need to size a
JupyterHub.

The figures mean something only when nothing else runs: the load average at the start is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vaelib.device import usable_cpus  # noqa: E402  (after the path, for runs from anywhere)

TARGETS = {1: 1.5, 2: 2.5}  # load -> the largest acceptable ratio to the quiet time
# Appended to each chapter before it runs: the kernel reports its threads and peak memory.
REPORT = ("import json as _j, resource as _r, torch as _t\n"
          "print('BENCH_LOAD ' + _j.dumps({'threads': _t.get_num_threads(), "
          "'peak_mb': _r.getrusage(_r.RUSAGE_SELF).ru_maxrss / 1024}))")


def start_load(n: int) -> list[subprocess.Popen]:
    """n processes that each keep one core busy until stopped."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def stop_load(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.kill()
        process.wait()


def cell_seconds(cell) -> float:
    timing = cell.metadata.get("execution", {})
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if not (start and end):
        return 0.0
    return (datetime.fromisoformat(end.replace("Z", "+00:00"))
            - datetime.fromisoformat(start.replace("Z", "+00:00"))).total_seconds()


def run_chapter(path: Path) -> dict:
    """Execute ``path`` in a fresh kernel: wall seconds, training-cell seconds, threads, peak MB."""
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(REPORT))
    start = time.perf_counter()
    NotebookClient(nb, timeout=1800, kernel_name="python3", record_timing=True,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    seconds = time.perf_counter() - start
    report = next(line for output in nb.cells[-1].outputs
                  for line in output.get("text", "").splitlines() if line.startswith("BENCH_LOAD "))
    training = [cell for cell in nb.cells[:-1]
                if cell.cell_type == "code" and "= train(" in cell.source]
    return {"seconds": seconds, "training_seconds": sum(cell_seconds(cell) for cell in training),
            **json.loads(report.removeprefix("BENCH_LOAD "))}


def ratios(times: dict[int, float]) -> dict[int, float]:
    quiet = times.get(0)
    return {load: round(t / quiet, 2) for load, t in times.items() if load and quiet}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chapters", nargs="*", default=None,
                        help="chapter numbers, e.g. 01 08 (default: every chapter)")
    parser.add_argument("--loads", nargs="*", type=int, default=[0, 1, 2],
                        help="numbers of competing busy processes (default: 0 1 2)")
    parser.add_argument("--dir", type=Path, default=ROOT / "chapters", help="the chapters' folder")
    args = parser.parse_args(argv)
    if any(load < 0 for load in args.loads):
        parser.error("--loads: the numbers of busy processes must be 0 or more")
    paths = sorted(args.dir.glob("[0-9][0-9]_*.ipynb"))
    if args.chapters is not None:
        unknown = set(args.chapters) - {p.name[:2] for p in paths}
        if unknown:
            parser.error(f"--chapters: no chapter {' '.join(sorted(unknown))} in {args.dir} "
                         f"(there are {' '.join(p.name[:2] for p in paths)})")
        paths = [p for p in paths if p.name[:2] in args.chapters]

    load_average = os.getloadavg()
    runs: dict[str, dict[int, dict]] = {p.stem: {} for p in paths}
    for load in args.loads:
        busy = start_load(load)
        try:
            for path in paths:
                runs[path.stem][load] = run_chapter(path)
                print(f"load {load}: {path.stem} {runs[path.stem][load]['seconds']:.1f} s",
                      file=sys.stderr, flush=True)
        finally:
            stop_load(busy)

    chapters = {}
    for name, by_load in runs.items():
        seconds = {load: round(r["seconds"], 1) for load, r in by_load.items()}
        chapters[name] = {"seconds": seconds, "ratio_to_quiet": ratios(seconds),
                          "peak_memory_mb": round(max(r["peak_mb"] for r in by_load.values())),
                          "torch_threads": sorted({r["threads"] for r in by_load.values()})}
        training = {load: round(r["training_seconds"], 1) for load, r in by_load.items()}
        if any(training.values()):
            chapters[name]["training_seconds"] = training
            chapters[name]["training_ratio_to_quiet"] = ratios(training)
    worst = {load: max((c["ratio_to_quiet"].get(load, 0) for c in chapters.values()), default=0)
             for load in args.loads if load}
    print(json.dumps({
        "benchmark": "chapter wall time alone and with N competing busy processes (fresh kernel)",
        "machine": {"cpus": os.cpu_count(), "usable_cpus": usable_cpus(),
                    "processor": platform.processor() or platform.machine(),
                    "load_average_at_start": [round(x, 2) for x in load_average]},
        "chapters": chapters,
        "worst_ratio": worst,
        "targets": {load: TARGETS[load] for load in worst if load in TARGETS},
        "within_targets": all(worst[load] <= TARGETS[load] for load in worst if load in TARGETS),
    }, indent=2))


if __name__ == "__main__":
    main()
