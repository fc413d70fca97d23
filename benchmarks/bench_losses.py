"""Each registered loss's forward+backward time as a ratio to F.cross_entropy, same shape.

    python benchmarks/bench_losses.py                  # N=4096, C=1000, float32, CPU
    python benchmarks/bench_losses.py --n 1024 --c 32000 --device cuda --dtype bfloat16

Method: losscli.profiling (fresh inputs per loss, warm-up, median of --repeats timed
forward+backward passes, grads cleared between passes; perf_counter on CPU, CUDA events
on GPU). The baseline is torch's fused ``F.cross_entropy`` called directly, timed in the
same run, interleaved pass by pass with each loss (ce, loss, ce, loss, ...): the ratio
reported is the median of the per-pass ratios, with p20/p80, so background load on a
shared machine cancels instead of biasing whichever loss ran during it.
"""

from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F

from losscli.cli.output import render_table
from losscli.device import resolve_device
from losscli.losses import LOSSES
from losscli.profiling.cases import SkipLoss, make_case
from losscli.environment import environment
from losscli.profiling.harness import dtype_name, parse_dtype, summarise, time_fwd_bwd
from losscli.profiling.memory import measure_peak, tensor_bytes


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
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    dev = resolve_device(args.device)
    dt = parse_dtype(args.dtype)
    # Put the CPU math library in its steady state before timing anything: on some builds
    # log1p/expm1/softplus run 10-20x slower until a vectorised pow has run (see
    # losscli.profiling.harness._process_warmup), which made ratios depend on loss order.
    torch.rand(64).pow(0.7)
    names = args.losses.split(",") if args.losses else LOSSES.names()
    g = torch.Generator(device=dev).manual_seed(0)
    base_logits = (torch.randn(args.n, args.c, generator=g, device=dev) * 3).to(dt).requires_grad_(True)
    base_target = torch.randint(0, args.c, (args.n,), generator=g, device=dev)

    def ce_fn(z, y):
        return F.cross_entropy(z.float() if z.dtype in (torch.float16, torch.bfloat16) else z, y)

    base_mem = None
    if not args.no_memory:
        def once():
            base_logits.grad = None
            ce_fn(base_logits, base_target).backward()
        base_mem = measure_peak(once, dev, tensor_bytes(base_logits, base_target))["peak_mb"]
        base_logits.grad = None

    rows, skipped, baselines = [], [], []
    for name in names:
        try:
            case = make_case(name, LOSSES.canonical(name), {}, args.n, args.c, dt, dev)
        except SkipLoss as exc:
            skipped.append((name, str(exc)))
            continue
        logits, target, ctx = case.make_inputs()
        # Paired, interleaved passes (baseline, loss, baseline, loss, ...): both see the
        # same machine state, so background load cancels in the per-pass ratio.
        ce_t, loss_t, ratios = [], [], []
        for _ in range(args.warmup):
            for z, f in ((base_logits, lambda: ce_fn(base_logits, base_target)),
                         (logits, lambda: case.loss(logits, target, **ctx))):
                z.grad = None
                f().backward()
        for _ in range(args.repeats):
            a = time_fwd_bwd(ce_fn, base_logits, base_target, {}, dev, 1, 0)
            b = time_fwd_bwd(case.loss, logits, target, ctx, dev, 1, 0)
            ce_t.append(a["total_ms"])
            loss_t.append(b)
            ratios.append(b["total_ms"] / a["total_ms"])
        tot = summarise([t["total_ms"] for t in loss_t])
        row = {"loss": case.spec, "forward_ms": summarise([t["forward_ms"] for t in loss_t])["median"],
               "backward_ms": summarise([t["backward_ms"] for t in loss_t])["median"],
               "total_ms": tot["median"], "p20": tot["p20"], "p80": tot["p80"],
               "ce_ms": summarise(ce_t)["median"]}
        r = summarise(ratios)
        row.update({"ratio_vs_ce": r["median"], "ratio_p20": r["p20"], "ratio_p80": r["p80"]})
        baselines.append(row["ce_ms"])
        if base_mem:
            def once():
                logits.grad = None
                case.loss(logits, target, **ctx).backward()
            row["peak_mb"] = measure_peak(once, dev, tensor_bytes(logits, target, ctx))["peak_mb"]
            row["mem_ratio_vs_ce"] = row["peak_mb"] / base_mem
        rows.append(row)
        print(f"  {name:22s} {row['total_ms']:9.3f} ms  x{row['ratio_vs_ce']:.2f}", file=sys.stderr, flush=True)
        del case, logits, target, ctx

    env = environment(dev)
    print(f"# bench_losses: N={args.n} C={args.c} dtype={dtype_name(dt)} device={env['device_name']} "
          f"threads={env['threads']} torch={env['torch']} repeats={args.repeats} warmup={args.warmup}")
    if baselines:
        print(f"# F.cross_entropy baseline (paired with each loss): median {summarise(baselines)['median']:.3f} ms "
              f"(min {min(baselines):.3f}, max {max(baselines):.3f})" + (f"; peak {base_mem:.3g} MB" if base_mem else ""))
    cols = ["loss", "forward_ms", "backward_ms", "total_ms", "p20", "p80", "ratio_vs_ce", "ratio_p20", "ratio_p80"] + (
        ["peak_mb", "mem_ratio_vs_ce"] if base_mem else [])
    print(render_table(sorted(rows, key=lambda r: r["ratio_vs_ce"]), args.format, headers=cols, floatfmt=".3g"))
    for name, reason in skipped:
        print(f"# skipped {name}: {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
