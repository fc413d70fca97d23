"""Wall time of whole presets, as a user runs them: ``losscli compare --preset NAME`` in a fresh
directory (the MNIST-1D cache warmed first, so generation is not timed), printed as a markdown row
with the machine, the number of runs, the trials (tuned presets) and the verdicts reached.

    python benchmarks/bench_compare.py                       # default and fair
    python benchmarks/bench_compare.py --presets default --repeats 2
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml


def run_preset(preset: str, workdir: Path) -> dict:
    out = workdir / preset
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "losscli", "compare", "--preset", preset, "--out", str(out),
                           "--quiet", "--format", "json"], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{preset}: exit {proc.returncode}: {proc.stderr.strip()[-500:]}")
    report = yaml.safe_load((out / "report.yaml").read_text())
    outcomes = [e["verdict"]["outcome"] for e in report["results"] if e.get("verdict")]
    trials = sum(sum(v.get("n_complete", {}).values()) + sum(v.get("n_pruned", {}).values())
                 + sum(v.get("n_failed", {}).values()) for v in (report.get("tuning") or {}).values())
    return {"preset": preset, "wall_s": wall, "runs": report["n_runs"], "failed": report["n_failed"],
            "trials": trials, "adopt": outcomes.count("better"), "avoid": outcomes.count("worse"),
            "no_verdict": outcomes.count("inconclusive"), "negligible": outcomes.count("negligible"),
            "threads": report["env"].get("threads"), "device": report["env"].get("device_name")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", default="default,fair")
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    subprocess.run([sys.executable, "-c", "from losscli.data import load_dataset; load_dataset('mnist1d')"], check=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# bench_compare: {os.cpu_count()} CPUs, load average {load:.2f} at start")
    print("| preset | wall (s) | runs | trials | adopt | avoid | no practical difference | no verdict yet | device |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for preset in args.presets.split(","):
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as tmp:
                r = run_preset(preset, Path(tmp))
            print(f"| {r['preset']} | {r['wall_s']:.0f} | {r['runs']} | {r['trials']} | {r['adopt']} | {r['avoid']} "
                  f"| {r['negligible']} | {r['no_verdict']} | {r['device']} |", flush=True)


if __name__ == "__main__":
    main()
