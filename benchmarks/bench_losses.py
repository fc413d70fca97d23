"""Each registered loss's forward+backward time as a ratio to cross-entropy, same shape, same run.

    python benchmarks/bench_losses.py                  # N=4096, C=1000, float32, CPU, 1 thread
    python benchmarks/bench_losses.py --n 1024 --c 32000 --device cuda --dtype bfloat16

Method: exactly ``losscli profile``'s (``losscli.profiling.harness.profile_losses``, which times
every loss paired with the ``ce`` baseline through ``losscli.profiling.paired.measure_paired``):
fresh inputs per loss, ``--warmup`` untimed passes of both, then ``--repeats`` interleaved passes
(ce, loss, ce, loss, ...), grads cleared between passes, perf_counter on CPU, CUDA events on GPU.
The ratio is the median of the per-pass ratios, with p20/p80, so background load on a shared
machine cancels instead of biasing whichever loss ran during it; rows whose p20-p80 spread is
wider than ``SPREAD_LIMIT`` of the median are marked untrusted and a warning is printed. The
baseline is the registry's ``ce`` (``F.cross_entropy`` behind the loss base class's input checks).
"""

from __future__ import annotations

import argparse
import math
import sys

import torch

from losscli.cli.output import render_table
from losscli.losses import LOSSES
from losscli.profiling.harness import dtype_name, parse_dtype, profile_losses


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--c", type=int, default=1000)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--losses", default=None, help="comma list (default: all registered)")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--format", default="table", choices=["table", "md"])
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1, as losscli profile)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    names = args.losses.split(",") if args.losses else LOSSES.names()
    rep = profile_losses(names, batches=[args.n], classes=[args.c], dtypes=[args.dtype], device=args.device,
                         repeats=args.repeats, warmup=args.warmup, memory=not args.no_memory,
                         progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    rows = [r for r in rep["rows"] if r["loss"] != "ce" or "ce" in names]
    ce = next(r for r in rep["rows"] if r["loss"] == "ce")
    env = rep["env"]
    print(f"# bench_losses: N={args.n} C={args.c} dtype={dtype_name(parse_dtype(args.dtype))} "
          f"device={env['device_name']} threads={env['threads']} torch={env['torch']} repeats={args.repeats} "
          f"warmup={args.warmup}")
    paired = [r for r in rows if r["loss"] != "ce"]
    if paired:
        ratios = [r["overhead_vs_ce"] for r in paired]
        gmean = math.exp(sum(math.log(x) for x in ratios) / len(ratios))
        worst = max(paired, key=lambda r: r["overhead_vs_ce"])
        print(f"# ce alone: {ce['total_ms']:.3f} ms; paired ce medians {min(r['ce_ms'] for r in paired):.3f}-"
              f"{max(r['ce_ms'] for r in paired):.3f} ms; geometric mean ratio {gmean:.3f}, worst {worst['loss']} "
              f"{worst['overhead_vs_ce']:.2f}x, above 2x: {sum(x > 2 for x in ratios)}, above 1.5x: "
              f"{sum(x > 1.5 for x in ratios)}; untrusted: {sum(not r['ratio_trusted'] for r in paired)}")
    table = [{"loss": r["loss"], "forward_ms": r["forward_ms"], "backward_ms": r["backward_ms"],
              "total_ms": r["total_ms"], "p20": r["total_ms_p20"], "p80": r["total_ms_p80"],
              "ratio_vs_ce": r["overhead_vs_ce"], "ratio_p20": r.get("overhead_p20", 1.0),
              "ratio_p80": r.get("overhead_p80", 1.0), "trusted": r["ratio_trusted"],
              "peak_mb": r["peak_mb"], "mem_ratio_vs_ce": r["memory_vs_ce"]} for r in rows]
    cols = ["loss", "forward_ms", "backward_ms", "total_ms", "p20", "p80", "ratio_vs_ce", "ratio_p20", "ratio_p80",
            "trusted"] + ([] if args.no_memory else ["peak_mb", "mem_ratio_vs_ce"])
    print(render_table(sorted(table, key=lambda r: r["ratio_vs_ce"]), args.format, headers=cols, floatfmt=".3g"))
    for s in rep["skipped"]:
        print(f"# skipped {s['loss']}: {s['reason']}")
    for w in rep["warnings"]:
        print(f"# {w}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
