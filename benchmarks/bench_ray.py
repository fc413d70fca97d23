"""The Ray executor's cost and a simulated cluster's throughput, as a user runs them.

1. Overhead: ``losscli compare --preset default`` through ``--executor ray`` (a local Ray instance,
   started and stopped by the command, so its start-up is counted) and ``--executor pool`` on the
   same machine, paired in the same run (their order alternates between repeats, so drift in the
   machine's load hits both). Prints each wall time and the ratio ray / pool (target: <= 1.2).
2. Throughput: a 48-run grid (4 losses x 2 noise levels x 6 seeds, the default preset's data and
   model) on a simulated two-node cluster (``ray.cluster_utils.Cluster``, one CPU per node, both on
   this machine), driven by ``losscli compare --executor ray --address HEAD``; runs per minute,
   next to the process pool with two workers on the same grid. The nodes share this machine's
   cores, so this measures what the cluster machinery costs, not a speed-up from more hardware.

    python benchmarks/bench_ray.py                # full: the default preset as shipped, 48 runs x 10 epochs
    python benchmarks/bench_ray.py --quick        # a few minutes: 2 seeds x 10 epochs, 48 runs x 2 epochs

Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

# the simulated cluster's nodes bind 127.0.0.1 only: Ray reads this when imported (and its node processes inherit it)
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

GRID48 = ["--losses", "ce,label_smoothing,focal,gce", "--seeds", "6", "--noise", "none,sym:0.4"]


def compare(args: list[str], out: Path) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "losscli", "compare", *args, "--out", str(out), "--quiet",
                           "--format", "json"], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"losscli compare {' '.join(args)}: exit {proc.returncode}: {proc.stderr.strip()[-800:]}")
    report = yaml.safe_load((out / "report.yaml").read_text())
    return {"wall_s": wall, "runs": report["n_runs"], "failed": report["n_failed"]}


def overhead(preset_args: list[str], repeats: int) -> list[tuple[float, float]]:
    pairs = []
    for i in range(repeats):
        order = ("pool", "ray") if i % 2 == 0 else ("ray", "pool")
        walls = {}
        for executor in order:
            with tempfile.TemporaryDirectory() as tmp:
                r = compare([*preset_args, "--executor", executor], Path(tmp) / "c")
            walls[executor] = r["wall_s"]
            print(f"  repeat {i + 1}: {executor:4s} {r['wall_s']:7.1f} s  ({r['runs']} runs, {r['failed']} failed)",
                  flush=True)
        pairs.append((walls["pool"], walls["ray"]))
    return pairs


def cluster_throughput(grid_args: list[str]) -> tuple[float, float, int]:
    import ray
    from ray.cluster_utils import Cluster

    node = {"num_cpus": 1, "node_ip_address": "127.0.0.1"}
    cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    try:
        cluster.add_node(**node)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False, logging_level=logging.ERROR)
        alive = sum(n["Alive"] for n in ray.nodes())
        ray.shutdown()  # the driver is the losscli process below; this one only keeps the nodes up
        with tempfile.TemporaryDirectory() as tmp:
            on_cluster = compare([*grid_args, "--executor", "ray", "--address", cluster.address], Path(tmp) / "c")
    finally:
        cluster.shutdown()
    with tempfile.TemporaryDirectory() as tmp:
        pool = compare([*grid_args, "--executor", "pool", "--jobs", "2"], Path(tmp) / "c")
    return on_cluster["runs"] / on_cluster["wall_s"] * 60, pool["runs"] / pool["wall_s"] * 60, alive


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller grids, fewer epochs (a few minutes on 2 CPUs)")
    ap.add_argument("--repeats", type=int, default=1, help="paired ray/pool repeats of the overhead measurement")
    ap.add_argument("--skip-cluster", action="store_true")
    args = ap.parse_args()
    subprocess.run([sys.executable, "-c", "from losscli.data import load_dataset; load_dataset('mnist1d')"], check=True)
    import ray
    import torch

    preset = ["--preset", "default"] + (["--seeds", "2", "--epochs", "10"] if args.quick else [])
    grid = ["--preset", "default", *GRID48, "--epochs", "2" if args.quick else "10"]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# bench_ray: {os.cpu_count()} CPUs, load average {load:.2f} at start, ray {ray.__version__}, "
          f"torch {torch.__version__}, Python {sys.version.split()[0]}{', quick' if args.quick else ''}")
    print(f"## overhead: losscli compare {' '.join(preset)} --executor pool|ray")
    pairs = overhead(preset, args.repeats)
    ratios = sorted(r / p for p, r in pairs)
    print(f"ray / pool wall time: {', '.join(f'{x:.2f}x' for x in ratios)} "
          f"(median {ratios[len(ratios) // 2]:.2f}x; target <= 1.2x)")
    if not args.skip_cluster:
        print(f"## throughput: losscli compare {' '.join(grid)} on a simulated 2-node cluster (1 CPU per node)")
        ray_rate, pool_rate, alive = cluster_throughput(grid)
        print(f"2-node cluster ({alive} nodes alive): {ray_rate:.1f} runs/min; pool --jobs 2 on the same machine: "
              f"{pool_rate:.1f} runs/min")


if __name__ == "__main__":
    main()
