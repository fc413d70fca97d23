"""torch's CPU log1p / expm1 against NumPy's SIMD ones (losscli.losses.fused.npmath), same run.

    python benchmarks/bench_npmath.py            # [4096, 1000] float32 and float64, one thread

Each op runs in place on a preallocated tensor (no allocation or page faults in the timing),
interleaved torch / NumPy for ``--repeats`` rounds after a warm-up; prints medians and the ratio,
and the largest difference between the two results in units of the float's epsilon.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from tabulate import tabulate

from losscli.losses.fused import npmath


def _median_ms(times: list[float]) -> float:
    return 1e3 * sorted(times)[len(times) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--c", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    rows = []
    for dtype in (torch.float32, torch.float64):
        # arguments as the kernels see them: log1p of -min(q, 1 - q) in [-1/2, 0], expm1 of log p <= 0
        inputs = {"log1p": -0.5 * torch.rand(args.n, args.c, generator=gen, dtype=dtype),
                  "expm1": -8.0 * torch.rand(args.n, args.c, generator=gen, dtype=dtype)}
        for op, x in inputs.items():
            torch_op, numpy_op = getattr(torch.Tensor, op + "_"), getattr(npmath, op + "_")
            buf_t, buf_n = x.clone(), x.clone()
            times: dict[str, list[float]] = {"torch": [], "numpy": []}
            for i in range(3 + args.repeats):
                for name, fn, buf in (("torch", torch_op, buf_t), ("numpy", numpy_op, buf_n)):
                    buf.copy_(x)
                    t0 = time.perf_counter()
                    fn(buf)
                    if i >= 3:
                        times[name].append(time.perf_counter() - t0)
            ulps = float(((buf_t - buf_n).abs() / buf_t.abs().clamp_min(torch.finfo(dtype).tiny)).max())
            ulps /= torch.finfo(dtype).eps
            t_ms, n_ms = _median_ms(times["torch"]), _median_ms(times["numpy"])
            rows.append([op, str(dtype).removeprefix("torch."), round(t_ms, 2), round(n_ms, 2), round(t_ms / n_ms, 2),
                         round(ulps, 2)])
    print(f"# bench_npmath: [{args.n}, {args.c}] threads={args.threads} torch={torch.__version__} numpy={np.__version__}")
    print(tabulate(rows, headers=["op", "dtype", "torch_ms", "numpy_ms", "torch/numpy", "max_rel_diff_eps"]))


if __name__ == "__main__":
    main()
