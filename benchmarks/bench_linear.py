"""Materialised vs row-chunked vs vocabulary-streamed final linear layer + loss: time and memory ratios,
with torch's own chunked ``F.linear_cross_entropy`` (torch >= 2.13) as a peer for ce.

    python benchmarks/bench_linear.py                      # N=8192, D=512, C=65536, float32, CPU, 1 thread
    python benchmarks/bench_linear.py --n 2048 --c 8192    # quick
    python benchmarks/bench_linear.py --losses ce,focal,gce --device cuda --dtype bfloat16

Every method runs forward + backward with gradients for hidden and W, timed interleaved pass by
pass in one run (medians); ratios are against the materialised path of the same run. Memory:
``extra`` is the peak allocated during forward+backward beyond the inputs and their gradients
(hidden, W, grad_hidden, grad_W, which every method must hold): torch.profiler allocator events
on CPU, max_memory_allocated on CUDA.

Targets (issue 14, full shape on CPU) for the streamed path: extra memory <= 1% of the
materialised path's, time <= 1.3x, gradients equal to float rounding (max relative error of
grad_hidden and grad_W <= 1e-4 in float32).
"""

from __future__ import annotations

import argparse
import sys

import torch

from losscli.cli.output import render_table
from losscli.device import resolve_device
from losscli.environment import environment
from losscli.profiling.harness import dtype_name, parse_dtype
from losscli.profiling.linear_bench import RATIO_TAGS, compare_linear

MEMORY_TARGET, TIME_TARGET, GRAD_TARGET = 0.01, 1.3, 1e-4


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=8192)
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--c", type=int, default=65536)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--losses", default="ce")
    ap.add_argument("--chunk-size", type=int, default=None, help="rows per chunk/block (default: each method's own)")
    ap.add_argument("--vocab-block", type=int, default=None, help="classes per block when streaming")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--format", default="table", choices=["table", "md"])
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    dev = resolve_device(args.device)
    dt = parse_dtype(args.dtype)
    rows = []
    for loss in args.losses.split(","):
        print(f"{loss}: N={args.n} D={args.d} C={args.c} ...", file=sys.stderr, flush=True)
        r = compare_linear(loss, n=args.n, c=args.c, d=args.d, dtype=dt, device=dev, repeats=args.repeats,
                           warmup=args.warmup, chunk_size=args.chunk_size, vocab_block=args.vocab_block)
        r["meets_targets"] = bool(r["stream_extra_ratio"] is not None and r["stream_extra_ratio"] <= MEMORY_TARGET
                                  and r["stream_time_ratio"] is not None and r["stream_time_ratio"] <= TIME_TARGET
                                  and r["stream_grad_max_rel_err"] is not None
                                  and r["stream_grad_max_rel_err"] <= GRAD_TARGET)
        rows.append(r)
    env = environment(dev)
    print(f"# bench_linear: N={args.n} D={args.d} C={args.c} dtype={dtype_name(dt)} device={env['device_name']} "
          f"threads={env['threads']} torch={env['torch']} repeats={args.repeats} warmup={args.warmup}")
    print(f"# targets for streamed: extra memory <= {MEMORY_TARGET:.0%} of materialised, time <= {TIME_TARGET}x, "
          f"gradient max rel err <= {GRAD_TARGET:g}")
    table = []
    for r in rows:
        for method, tag in (("materialised", None), *RATIO_TAGS.items()):
            if r.get(f"{method}_ms") is None and f"{method}_error" not in r:
                continue
            table.append({
                "loss": r["loss"], "method": method, "ms": r.get(f"{method}_ms"),
                "ms_p20": r.get(f"{method}_ms_p20"), "ms_p80": r.get(f"{method}_ms_p80"),
                "time_ratio": 1.0 if tag is None else r.get(f"{tag}time_ratio"),
                "extra_mb": r.get(f"{method}_extra_mb"), "peak_mb": r.get(f"{method}_peak_mb"),
                "extra_ratio": 1.0 if tag is None else r.get(f"{tag}extra_ratio"),
                "grad_max_rel_err": None if tag is None else r.get(f"{tag}grad_max_rel_err"),
                "meets_targets": r["meets_targets"] if method == "streamed" else "",
            })
    cols = ["loss", "method", "ms", "ms_p20", "ms_p80", "time_ratio", "extra_mb", "peak_mb", "extra_ratio",
            "grad_max_rel_err", "meets_targets"]
    print(render_table(table, args.format, headers=cols, floatfmt=".4g"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
