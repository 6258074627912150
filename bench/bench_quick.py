"""Benchmark of issue 25: the README's first command, on a fresh copy of the repository, N times.

Each run copies the working tree (tracked and untracked, not ignored, files: what a fresh clone of
this commit holds) into a new temporary directory, links this checkout's ``.venv`` into it (setup
is not timed), and runs

    .venv/bin/snakemake --cores all --configfile config/quick.yaml [targets]

timing the wall clock and the CPU-seconds of every process it started (user + system of the
waited-for children). It prints one line per run, then the minimum and median, and per rule the
jobs and the summed job wall-seconds read from Snakemake's log (where the time goes; jobs overlap
on several cores, so these add up to more than the wall time), and the main grid's censored
minima per arch (``aggregate.censored_optimum``; issue 25's second target: at most 10% of the
cells). ``--imports`` first prints the start-up cost of each entry point a job runs (a fresh
interpreter importing it, CPU-seconds).
Target (issue 25): ≤ 300 s wall on 2 cores for the first command on a quiet machine.

    .venv/bin/python bench/bench_quick.py                       # 3 runs of the first command
    .venv/bin/python bench/bench_quick.py --runs 1 --imports
    .venv/bin/python bench/bench_quick.py --runs 1 --then quick_ablations   # the deferred ablations
"""
from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMAND = [".venv/bin/snakemake", "--cores", "all", "--configfile", "config/quick.yaml"]
ENTRY_POINTS = ("train", "aggregate", "fit", "sensitivity", "figures", "table", "numbers",
                "perceptron")


def fresh_copy(dest: Path) -> None:
    """The working tree's files (tracked + untracked, not ignored) under dest, .venv linked."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                           check=True, capture_output=True).stdout.decode().split("\0")
    for f in filter(None, files):
        src = REPO / f
        if f == ".venv" or not (src.is_file() or src.is_symlink()):
            continue
        (dest / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / f, follow_symlinks=False)
    os.symlink((REPO / ".venv").resolve(), dest / ".venv")


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(cmd, cwd: Path, log: Path) -> tuple[float, float, int]:
    """(wall s, CPU s of the command and its descendants, exit status)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(cwd), os.environ.get("PYTHONPATH")]))}
    c0, t0 = children_cpu(), time.perf_counter()
    with open(log, "w") as fh:
        rc = subprocess.run(cmd, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, env=env).returncode
    return time.perf_counter() - t0, children_cpu() - c0, rc


STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ [\d:]+ \d{4})\]$")
START = re.compile(r"^(?:local)?(?:rule|checkpoint) (\w+):$")
JOBID = re.compile(r"^\s+jobid: (\d+)$")
DONE = re.compile(r"^Finished jobid: (\d+) \(Rule: (\w+)\)")


def per_rule(log: Path) -> dict[str, list[float]]:
    """Per rule: [jobs, summed job wall-seconds] from the timestamps of Snakemake's log."""
    now, rule, started, out = None, None, {}, defaultdict(lambda: [0, 0.0])
    for line in log.read_text(errors="replace").splitlines():
        if m := STAMP.match(line):
            now = datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y")
        elif m := START.match(line):
            rule = m.group(1)
        elif (m := JOBID.match(line)) and rule:
            started[m.group(1)], rule = now, None
        elif (m := DONE.match(line)) and m.group(1) in started:
            out[m.group(2)][0] += 1
            out[m.group(2)][1] += (now - started.pop(m.group(1))).total_seconds()
    return dict(out)


def censored_cells(root: Path, experiment: str = "main") -> None:
    """Print the experiment's censored minima (aggregate.censored_optimum), per arch: the 10% target."""
    import pandas as pd

    files = sorted((root / "results" / "aggregate" / experiment).glob("*/*/*/optima.parquet"))
    total, n, lines = 0, 0, []
    for f in files:
        o = pd.read_parquet(f)
        o = o[o["used"].astype(bool)]
        cens = o[o["censored"].astype(bool)]
        total, n = total + len(cens), n + len(o)
        lines.append(f"    {'/'.join(f.parts[-4:-1]):40s} {len(cens):2d} of {len(o):2d}: "
                     + (", ".join(f"P{int(r.P)} s{int(r.seed)}" for r in cens.itertuples()) or "-"))
    print(f"  censored minima of {experiment}: {total} of {n} cells"
          f" ({100 * total / max(n, 1):.0f}%; target <= 10%)")
    print("\n".join(lines))


def import_costs() -> None:
    print("start-up per job (fresh interpreter importing the entry point; CPU s, wall s):")
    for name in ENTRY_POINTS:
        code = (f"import resource, workflow_scripts.{name}, sys; r = resource.getrusage(resource.RUSAGE_SELF); "
                "print(r.ru_utime + r.ru_stime, 'torch' in sys.modules)")
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                 filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))},
                             check=True).stdout.split()
        print(f"  {name:12s} {float(out[0]):5.2f} CPU s  {time.perf_counter() - t0:5.2f} wall s"
              f"  imports torch: {out[1]}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cores", default="all", help="snakemake --cores (default: all)")
    ap.add_argument("--then", nargs="*", default=[],
                    help="targets timed after the first command, in the same copy (e.g. quick_ablations)")
    ap.add_argument("--imports", action="store_true", help="print each entry point's start-up cost first")
    ap.add_argument("--keep", action="store_true", help="keep the copies (their results/ and logs)")
    args = ap.parse_args(argv)
    if args.imports:
        import_costs()
    command = [*COMMAND[:2], args.cores, *COMMAND[3:]]
    walls, cpus = [], []
    for run in range(1, args.runs + 1):
        root = Path(tempfile.mkdtemp(prefix="bench_quick_"))
        fresh_copy(root)
        wall, cpu, rc = timed(command, root, root / "snakemake.log")
        walls.append(wall), cpus.append(cpu)
        print(f"run {run}: {' '.join(command)}: {wall:7.1f} s wall, {cpu:7.1f} CPU s, exit {rc}"
              f"  ({root})", flush=True)
        if rc:
            print((root / "snakemake.log").read_text()[-3000:], file=sys.stderr)
            return rc
        censored_cells(root)
        for target in args.then:
            tw, tc, trc = timed([*command[:3], target, *command[3:]], root, root / f"{target}.log")
            print(f"  then {target}: {tw:7.1f} s wall, {tc:7.1f} CPU s, exit {trc}", flush=True)
        for name, log in [("first command", root / "snakemake.log"),
                          *[(t, root / f"{t}.log") for t in args.then]]:
            rules = per_rule(log)
            print(f"  {name}: {sum(n for n, _ in rules.values())} jobs; per rule: jobs, job wall s")
            for rule, (n, s) in sorted(rules.items(), key=lambda kv: -kv[1][1]):
                print(f"    {rule:28s} {n:4d} {s:8.0f}")
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    if len(walls) > 1:
        print(f"wall s: min {min(walls):.1f}, median {statistics.median(walls):.1f}; "
              f"CPU s: min {min(cpus):.1f}, median {statistics.median(cpus):.1f} "
              f"({args.runs} runs, --cores {args.cores}, {os.cpu_count()} CPUs here)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
