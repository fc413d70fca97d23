"""Chunked vs materialised final linear layer + loss: time ratio and peak-memory ratio.

    python benchmarks/bench_linear.py                      # N=8192, D=512, C=65536, float32, CPU
    python benchmarks/bench_linear.py --n 2048 --c 8192    # quick
    python benchmarks/bench_linear.py --losses ce,focal,gce --device cuda --dtype bfloat16

Targets (issue 5, full shape on CPU): chunked peak memory <= 10% of materialised and
chunked time <= 1.5x materialised. Peak memory counts the inputs (hidden, W, target)
plus everything allocated during forward+backward (torch.profiler allocator events on
CPU, max_memory_allocated on CUDA); gradients of hidden and W included.
"""

from __future__ import annotations

import argparse
import sys

import torch
from losscli.cli.output import render_table
from losscli.device import resolve_device
from losscli.environment import environment
from losscli.profiling.harness import dtype_name, parse_dtype
from losscli.profiling.linear_bench import compare_linear


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=8192)
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--c", type=int, default=65536)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--losses", default="ce")
    ap.add_argument("--chunk-size", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--format", default="table", choices=["table", "md"])
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    dev = resolve_device(args.device)
    dt = parse_dtype(args.dtype)
    rows = []
    for loss in args.losses.split(","):
        print(f"{loss}: N={args.n} D={args.d} C={args.c} ...", file=sys.stderr, flush=True)
        r = compare_linear(loss, n=args.n, c=args.c, d=args.d, dtype=dt, device=dev, repeats=args.repeats,
                           warmup=args.warmup, chunk_size=args.chunk_size)
        r["meets_targets"] = bool(r["memory_ratio"] is not None and r["memory_ratio"] <= 0.10
                                  and r["time_ratio"] is not None and r["time_ratio"] <= 1.5)
        rows.append(r)
    env = environment(dev)
    print(f"# bench_linear: N={args.n} D={args.d} C={args.c} dtype={dtype_name(dt)} device={env['device_name']} "
          f"threads={env['threads']} torch={env['torch']} repeats={args.repeats} warmup={args.warmup}")
    cols = ["loss", "chunk_size", "materialised_ms", "chunked_ms", "time_ratio", "materialised_peak_mb",
            "chunked_peak_mb", "memory_ratio", "materialised_peak_delta_mb", "chunked_peak_delta_mb",
            "grad_max_rel_err", "meets_targets"]
    print(render_table(rows, args.format, headers=cols, floatfmt=".4g"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
