"""A class on one machine: N students run a chapter at the same moment through a JupyterHub (JSON).

    python benchmarks/bench_class.py                          # N = 1 2 4 8, chapter 08
    python benchmarks/bench_class.py --students 1 2 --chapter 01

For each N a fresh local hub is started (scripts/class_hub.py: JupyterHub with its real proxy, one
local server per student with its own home folder). N students log in, start their servers and open
the nbgitpuller link to the student edition (a local git repository made here); then, all at the
same moment (as a class pressing Run All in the same minute), each runs the chapter top to bottom
in their own kernel through the hub's proxy. Reported per N:

- ``seconds``: each student's wall time for the whole chapter, its median and maximum, and the
  median's ratio to N = 1 (the slow-down a student sees when N share the machine);
- ``memory_mb``: each student's kernel peak resident memory (the kernel's own maximum RSS, from
  ``getrusage``, and the sampled peak of its process tree), the sampled peak of each student's
  server, and the sampled peak total of everything the hub started (hub, proxy, servers, kernels);
- ``hub_page_seconds``: while the chapters run, another logged-in user asks the hub for its home
  page every second: the median and maximum answer time (how the hub feels to a student);
- ``failures``: any student whose session failed or whose chapter printed an error.

The figures mean something only when nothing else runs: the load average at the start is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.class_hub import (ClassHub, Student, processes_with_tag,  # noqa: E402
                               make_student_repository, nbgitpuller_link)
from vaelib.device import usable_cpus  # noqa: E402

FOLDER = "vae-course-student"
# Run after the chapter in each kernel: its threads and its own peak memory.
REPORT = ("import json as _j, resource as _r, torch as _t\n"
          "print('BENCH_CLASS ' + _j.dumps({'threads': _t.get_num_threads(), "
          "'peak_mb': _r.getrusage(_r.RUSAGE_SELF).ru_maxrss / 1024}))")


def rss_mb(pid: int) -> float:
    """The resident memory of process ``pid`` now, in MB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def process_table(pids: list[int]) -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) for the processes ``pids``."""
    table = {}
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        table[pid] = (int(stat.rsplit(")", 1)[1].split()[1]), cmdline)
    return table


class MemorySampler(threading.Thread):
    """Samples, every ``interval`` s, the RSS of every process of the hub: per student the kernel's
    process tree and the server, and the total; keeps the peaks."""

    def __init__(self, hub: ClassHub, interval: float = 0.5):
        super().__init__(daemon=True)
        self.hub, self.interval = hub, interval
        self.kernel_peak: dict[str, float] = {}
        self.server_peak: dict[str, float] = {}
        self.total_peak = 0.0
        self.done = threading.Event()

    def owner(self, pid: int, table: dict) -> str | None:
        """The student whose home the process runs in (its working folder), if any."""
        try:
            cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
        except OSError:
            return None
        homes = self.hub.homes()
        return cwd.relative_to(homes).parts[0] if cwd.is_relative_to(homes) else None

    def sample(self) -> None:
        table = process_table(processes_with_tag(self.hub.tag))
        rss = {pid: rss_mb(pid) for pid in table}
        self.total_peak = max(self.total_peak, sum(rss.values()))
        kernels: dict[str, float] = {}
        for pid, (_, cmdline) in table.items():
            student = self.owner(pid, table)
            if student is None:
                continue
            if "jupyterhub-singleuser" in cmdline:
                self.server_peak[student] = max(self.server_peak.get(student, 0), rss[pid])
            else:  # a kernel, or a process it started: counted in the kernel's tree
                kernels[student] = kernels.get(student, 0) + rss[pid]
        for student, mb in kernels.items():
            self.kernel_peak[student] = max(self.kernel_peak.get(student, 0), mb)

    def run(self) -> None:
        while not self.done.is_set():
            self.sample()
            self.done.wait(self.interval)


class HubProbe(threading.Thread):
    """A logged-in user who asks the hub for its home page every ``interval`` s; keeps the times."""

    def __init__(self, hub: ClassHub, interval: float = 1.0):
        super().__init__(daemon=True)
        self.user = Student(hub, "observer", timeout=120)
        self.user.login()
        self.interval, self.times, self.errors = interval, [], []  # times: (when, seconds)
        self.done = threading.Event()

    def seconds(self, start: float, end: float) -> list[float]:
        """The answer times of the requests made between ``start`` and ``end``."""
        return [seconds for when, seconds in self.times if start <= when <= end]

    def run(self) -> None:
        while not self.done.is_set():
            try:
                when = time.perf_counter()
                self.times.append((when, self.user.page_seconds("/hub/home")))
            except Exception as error:  # noqa: BLE001 (a failed page is a figure, not a crash)
                self.errors.append(repr(error))
            self.done.wait(self.interval)


def run_class(n: int, origin: Path, chapter: str, work: Path) -> dict:
    """n students at once on a fresh hub: their times, memory, the hub's answer time, failures."""
    path = f"{FOLDER}/student/{chapter}"
    with ClassHub(work / f"hub-{n}") as hub:
        students = [Student(hub, f"student{i}", timeout=1800) for i in range(1, n + 1)]
        link = nbgitpuller_link(hub.url, origin.as_uri(), "main", FOLDER)
        ready = threading.Barrier(n)
        failures: list[dict] = []

        def session(student: Student) -> dict:
            result = {}
            try:
                student.login()
                result["server_start_seconds"] = round(student.start_server(), 1)
                student.open_nbgitpuller_link(link)
            except Exception as error:  # noqa: BLE001
                ready.abort()
                failures.append({"student": student.name, "stage": "start", "error": repr(error)})
                return result
            ready.wait()  # everyone presses Run All now
            start = result["start"] = time.perf_counter()
            try:
                cells = student.run_notebook(path, cell_timeout=1800, extra_cells=(REPORT,))
            except Exception as error:  # noqa: BLE001
                failures.append({"student": student.name, "stage": "run",
                                 "error": "".join(traceback.format_exception_only(error))})
                return result
            result["end"] = time.perf_counter()
            result["seconds"] = result["end"] - start
            errors = [e for cell in cells for e in cell.errors()]
            if errors:
                failures.append({"student": student.name, "stage": "chapter", "error": errors})
            report = next((line for line in cells[-1].text().splitlines()
                           if line.startswith("BENCH_CLASS ")), None)
            if report:
                result.update(json.loads(report.removeprefix("BENCH_CLASS ")))
            return result

        sampler, probe = MemorySampler(hub), HubProbe(hub)
        sampler.start()
        probe.start()
        try:
            with ThreadPoolExecutor(n) as pool:
                results = dict(zip([s.name for s in students], pool.map(session, students)))
        finally:
            sampler.done.set()
            probe.done.set()
            sampler.join()
            probe.join()
            for student in [*students, probe.user]:
                student.close()

    times = [r["seconds"] for r in results.values() if "seconds" in r]
    window = (min((r["start"] for r in results.values() if "start" in r), default=0),
              max((r["end"] for r in results.values() if "end" in r), default=0))
    page = probe.seconds(*window)  # while the chapters ran
    kernel_own = [r["peak_mb"] for r in results.values() if "peak_mb" in r]
    kernel_tree = list(sampler.kernel_peak.values())
    return {
        "students": n,
        "seconds": {"each": sorted(round(t, 1) for t in times),
                    "median": round(statistics.median(times), 1) if times else None,
                    "max": round(max(times), 1) if times else None},
        "server_start_seconds_max": max((r.get("server_start_seconds", 0)
                                         for r in results.values()), default=None),
        "torch_threads": sorted({r["threads"] for r in results.values() if "threads" in r}),
        "memory_mb": {
            "kernel_peak_each": sorted(round(m) for m in kernel_own),
            "kernel_tree_peak_sampled_each": sorted(round(m) for m in kernel_tree),
            "server_peak_sampled_each": sorted(round(m) for m in sampler.server_peak.values()),
            "total_peak_sampled": round(sampler.total_peak),
        },
        "hub_page_seconds": {
            "requests": len(page),
            "median": round(statistics.median(page), 3) if page else None,
            "max": round(max(page), 3) if page else None,
            "errors": probe.errors},
        "failures": failures,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", nargs="*", type=int, default=[1, 2, 4, 8],
                        help="the class sizes N to run, e.g. 1 2 (default: 1 2 4 8)")
    parser.add_argument("--chapter", default="08",
                        help="the chapter each student runs, by number (default: 08)")
    parser.add_argument("--work", type=Path, default=None,
                        help="a folder for the hubs and the repository (default: a temporary one)")
    args = parser.parse_args(argv)
    if not args.students or any(n < 1 for n in args.students):
        parser.error("--students: give class sizes of 1 or more, e.g. --students 1 2 4")
    chapters = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))
    chapter = next((p.name for p in chapters if p.name[:2] == args.chapter.zfill(2)), None)
    if chapter is None:
        parser.error(f"--chapter: no chapter {args.chapter} "
                     f"(there are {' '.join(p.name[:2] for p in chapters)})")

    load_average = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-class-", dir=args.work) as tmp:
        work = Path(tmp)
        origin, _ = make_student_repository(work / "instructor", name=FOLDER)
        runs = []
        for n in args.students:
            print(f"{n} student(s) running {chapter} at once ...", file=sys.stderr, flush=True)
            runs.append(run_class(n, origin, chapter, work))
            print(f"  median {runs[-1]['seconds']['median']} s, max {runs[-1]['seconds']['max']} s"
                  f", failures {len(runs[-1]['failures'])}", file=sys.stderr, flush=True)
    alone = next((r["seconds"]["median"] for r in runs if r["students"] == 1), None)
    for run in runs:
        median = run["seconds"]["median"]
        run["seconds"]["ratio_to_one_student"] = (round(median / alone, 2)
                                                  if alone and median else None)
    print(json.dumps({
        "benchmark": "N students run a chapter at the same moment through a local JupyterHub",
        "chapter": chapter,
        "machine": {"cpus": os.cpu_count(), "usable_cpus": usable_cpus(),
                    "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
                                       / 2**30, 1),
                    "processor": platform.processor() or platform.machine(),
                    "load_average_at_start": [round(x, 2) for x in load_average]},
        "runs": runs,
    }, indent=2))


if __name__ == "__main__":
    main()
