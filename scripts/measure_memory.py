"""Peak memory of scoring toy sample files of several sizes (issue 17 item 5: bounded memory).

For each size it writes (once) a sample file of the random baseline on the toy dataset with the
real command line (``python -m benchmark sample --model random --dataset toy --preset smoke``),
then scores it in a fresh process and reports that process's peak resident set size (the
``Maximum resident set size`` of ``/usr/bin/time -v``, read here with ``os.wait4``):

* ``streamed``: ``python -m benchmark evaluate --task generation --dataset toy --jobs 1`` as a user
  runs it (the file is read and featurised in chunks);
* ``whole`` (``--whole``): the same evaluation with ``chunk_size=None``, the whole-file path.

    .venv/bin/python scripts/measure_memory.py --sizes 10000 40000 --dir /tmp/mem [--whole] [--metric validity --metric coverage]

Featurisation takes about 15 ms a crystal on one core, so 40,000 samples take about 10 minutes
(uniqueness and novelty, quadratic within a formula, come on top unless ``--metric`` leaves them out).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

WHOLE = """
import sys
from benchmark.tasks.evaluation import EvaluateOptions, evaluate
metrics = sys.argv[3:] or None
evaluate(EvaluateOptions(task="generation", dataset="toy", samples=sys.argv[1], runs_dir=sys.argv[2], n_jobs=1, progress=False,
                         metrics=metrics, chunk_size=None))
"""


def peak_rss_mb(cmd: list[str]) -> tuple[float, float]:
    """(peak RSS in MB of the process running ``cmd``, wall seconds); raises if it fails."""
    t = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed with exit code {proc.returncode}")
    return usage.ru_maxrss / 1024, time.time() - t  # ru_maxrss is in KB on Linux


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10000, 40000])
    ap.add_argument("--dir", default="/tmp/mem", help="where sample files and runs go")
    ap.add_argument("--whole", action="store_true", help="also measure the whole-file path (chunk_size=None)")
    ap.add_argument("--metric", action="append", default=[], help="compute only these metrics (repeatable; default: the task's)")
    args = ap.parse_args()
    work = Path(args.dir)
    work.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    print("| samples | path | peak RSS (MB) | wall (s) |\n| ---: | --- | ---: | ---: |", flush=True)
    for n in args.sizes:
        samples = work / f"toy-random-{n}.extxyz"
        if not samples.exists():
            subprocess.run([py, "-m", "benchmark", "sample", "--model", "random", "--dataset", "toy", "--preset", "smoke", "--n", str(n),
                            "--out", str(samples), "--runs-dir", str(work / "runs")], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        metric_args = [a for m in args.metric for a in ("--metric", m)]
        cmd = [py, "-m", "benchmark", "evaluate", "--task", "generation", "--dataset", "toy", "--samples", str(samples), "--jobs", "1",
               "--no-progress", "--runs-dir", str(work / "runs"), *metric_args]
        rss, wall = peak_rss_mb(cmd)
        print(f"| {n:,} | streamed | {rss:.0f} | {wall:.0f} |", flush=True)
        if args.whole:
            rss, wall = peak_rss_mb([py, "-c", WHOLE, str(samples), str(work / "runs"), *args.metric])
            print(f"| {n:,} | whole file | {rss:.0f} | {wall:.0f} |", flush=True)


if __name__ == "__main__":
    main()
