"""Timing primitives shared by the profiler and the benchmarks: one forward+backward pass timed with
``time.perf_counter`` around synchronous CPU work, or CUDA events on GPU; medians and percentiles."""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np
import torch


def percentile(values: Sequence[float], q: float) -> float:
    """Linearly interpolated percentile (q in [0, 100]); NaN for an empty sequence."""
    return float(np.percentile(values, q)) if len(values) else float("nan")


def summarise(values: Sequence[float]) -> dict[str, float]:
    return {"median": percentile(values, 50), "p20": percentile(values, 20), "p80": percentile(values, 80)}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_callable(forward: Callable[[], torch.Tensor], clear: Callable[[], None], device: torch.device,
                  repeats: int, warmup: int) -> dict[str, Any]:
    """Median/p20/p80 of forward, backward and total ms of ``forward().backward()``.

    ``clear()`` runs before every pass (set the inputs' ``.grad`` to None), outside the timed region.
    """
    for _ in range(warmup):
        clear()
        forward().backward()
    sync(device)
    fwd, bwd, tot = [], [], []
    if device.type == "cuda":
        events = []
        for _ in range(repeats):
            e0, e1, e2 = (torch.cuda.Event(enable_timing=True) for _ in range(3))
            clear()
            e0.record()
            out = forward()
            e1.record()
            out.backward()
            e2.record()
            events.append((e0, e1, e2))
            del out
        torch.cuda.synchronize(device)
        for e0, e1, e2 in events:
            fwd.append(e0.elapsed_time(e1))
            bwd.append(e1.elapsed_time(e2))
            tot.append(e0.elapsed_time(e2))
    else:
        clock = time.perf_counter
        for _ in range(repeats):
            clear()
            t0 = clock()
            out = forward()
            t1 = clock()
            out.backward()
            t2 = clock()
            del out
            fwd.append((t1 - t0) * 1e3)
            bwd.append((t2 - t1) * 1e3)
            tot.append((t2 - t0) * 1e3)
    clear()
    f, b, t = summarise(fwd), summarise(bwd), summarise(tot)
    return {
        "forward_ms": f["median"], "backward_ms": b["median"], "total_ms": t["median"],
        "forward_ms_p20": f["p20"], "forward_ms_p80": f["p80"],
        "backward_ms_p20": b["p20"], "backward_ms_p80": b["p80"],
        "total_ms_p20": t["p20"], "total_ms_p80": t["p80"],
    }
