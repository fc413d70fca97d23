"""The "slow log1p/expm1/softplus/logsigmoid" effect: page faults from glibc malloc trimming.

    python benchmarks/bench_malloc.py [--processes 6] [--n 4096 --c 1000]

Each configuration runs in fresh processes (the effect depends on the heap layout a process
happens to have, so one process proves nothing): one thread, float32 ``[N, C]`` inputs, every
op out of place (a new ``[N, C]`` result per call, as in a loss's forward and backward), median
of 11 calls after 2 warm-up calls, with the minor page faults per call (``ru_minflt``).

Modes:
  glibc       ``LOSSCLI_MALLOC_TUNING=0``: glibc's default dynamic mmap/trim thresholds
  glibc+pow   the same, after ``torch.rand(64).pow(0.7)`` (the old benchmark warm-up)
  losscli     ``import losscli.losses`` applies ``losscli.losses.fused.heap`` (the default)

Prints one line per (mode, op): the median ms over the processes, min-max of the per-process
medians, and faults per call (median over processes).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

_CHILD = r"""
import json, os, resource, sys, time
import torch, torch.nn.functional as F
n, c, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
torch.set_num_threads(1)
import losscli.losses as L
if mode == "glibc+pow":
    torch.rand(64).pow(0.7)
g = torch.Generator().manual_seed(0)
x = torch.randn(n, c, generator=g) * 3
a = x.abs()
y = torch.randint(0, c, (n,), generator=g)
multi = (torch.rand(n, c, generator=g) < 0.1).float()
z = x.clone().requires_grad_(True)
ce, bce = L.build_loss("ce"), L.build_loss("bce")

def fb(loss, t):
    z.grad = None
    loss(z, t).backward()

ops = {
    "log1p": lambda: torch.log1p(a), "expm1": lambda: torch.expm1(x), "exp": lambda: torch.exp(x),
    "softplus": lambda: F.softplus(x), "logsigmoid": lambda: F.logsigmoid(x),
    "ce fwd+bwd": lambda: fb(ce, y), "bce fwd+bwd": lambda: fb(bce, multi),
}
out = {"applied": bool(L.fused.heap.keep_freed_buffers())}
for name, f in ops.items():
    for _ in range(2):
        f()
    ts = []
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(11):
        t0 = time.perf_counter(); f(); ts.append(time.perf_counter() - t0)
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / 11
    out[name] = (sorted(ts)[5] * 1e3, faults)
print(json.dumps(out))
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--processes", type=int, default=6)
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--c", type=int, default=1000)
    args = ap.parse_args(argv)
    results: dict[str, list[dict]] = {}
    for _ in range(args.processes):  # modes interleaved, so background load hits them alike
        for mode in ("glibc", "glibc+pow", "losscli"):
            env = dict(os.environ)
            env["LOSSCLI_MALLOC_TUNING"] = "1" if mode == "losscli" else "0"
            res = subprocess.run([sys.executable, "-c", _CHILD, str(args.n), str(args.c), mode],
                                 env=env, capture_output=True, text=True, check=True)
            results.setdefault(mode, []).append(json.loads(res.stdout))
    print(f"# bench_malloc: N={args.n} C={args.c} float32, 1 thread, {args.processes} fresh processes per mode")
    print("| mode | op | median ms | per-process medians (min-max) | faults per call |")
    print("|---|---|---|---|---|")
    for mode, runs in results.items():
        for op in [k for k in runs[0] if k != "applied"]:
            ms = [r[op][0] for r in runs]
            faults = statistics.median(r[op][1] for r in runs)
            print(f"| {mode} | {op} | {statistics.median(ms):.1f} | {min(ms):.1f}-{max(ms):.1f} | {faults:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
