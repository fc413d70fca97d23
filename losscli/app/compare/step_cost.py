"""What each loss's whole training step costs against the baseline's, measured paired.

The runs' own training times are the honest totals, but as a ratio between two losses they are
noisy: the runs of two losses train at different moments, and on a CPU they share the cores with
the other runs (two workers on a 2-core machine), so one loss's step-time ratio read 0.94x in one
compare and 1.47x in the next, and the "costly" flag came and went. Here each loss's training
step (model forward, loss, backward, optimizer step: ``engine.trainer.step_probe``) is timed
against the baseline's in alternation, a few milliseconds apart, under the same load, after
both have warmed up: the paired design of ``losscli profile`` (``profiling/paired.py``), with
the p20-p80 spread of the per-round ratios so that a ratio measured on a busy machine says so.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import torch

from losscli.engine.runspec import RunSpec
from losscli.profiling.paired import interleaved, ratio_summary
from losscli.profiling.timing import sync

#: a timed round makes this many milliseconds of steps at least (several steps of a small model: a
#: single 2 ms step is at the mercy of the timer and the scheduler)
ROUND_MS = 10.0


def _steps(step, device: torch.device):
    def run(k: int) -> dict[str, float]:
        sync(device)
        t0 = time.perf_counter()
        for _ in range(k):
            step()
        sync(device)
        return {"total_ms": (time.perf_counter() - t0) * 1e3 / k}

    return run


def measure_step_pair(base, cand, device: torch.device, repeats: int, warmup: int) -> dict[str, Any]:
    """Paired ratio of ``cand()``'s step time to ``base()``'s (``paired.interleaved``: warmed, rounds of
    ``k`` steps in the order base, cand, cand, base, ...): ``ratio_summary`` of the per-round ratios,
    with ``steps_per_round`` and ``rounds``."""
    a, b, k = interleaved(_steps(base, device), _steps(cand, device), repeats, warmup, ROUND_MS)
    ratios = [y["total_ms"] / x["total_ms"] if x["total_ms"] > 0 else float("inf") for x, y in zip(a, b)]
    return {**ratio_summary(ratios), "steps_per_round": k, "rounds": repeats}


def paired_step_costs(specs: dict[str, RunSpec], baseline: str, data_cache: dict | None = None,
                      repeats: int = 15, warmup: int = 3) -> dict[str, dict[str, Any] | None]:
    """Per loss label of ``specs`` (one run spec each: its data, model, loss and optimizer), the paired
    step-time ratio to ``baseline``'s (``measure_step_pair``; 1.0 for the baseline itself); None for a
    loss whose step could not be built or run (the report then falls back to the runs' times)."""
    from losscli.device import resolve_device
    from losscli.engine.trainer import step_probe

    out: dict[str, dict[str, Any] | None] = {label: None for label in specs}
    if baseline not in specs:
        return out
    device = resolve_device(specs[baseline].device)
    with contextlib.ExitStack() as stack:
        try:
            base = stack.enter_context(step_probe(specs[baseline], data_cache))
        except Exception:  # noqa: BLE001 - timing is informative only; never fail the report for it
            return out
        for label, spec in specs.items():
            if label == baseline:
                out[label] = {"ratio": 1.0, "ratio_p20": 1.0, "ratio_p80": 1.0, "ratio_spread": 0.0, "trusted": True}
                continue
            try:
                with step_probe(spec, data_cache) as cand:
                    out[label] = measure_step_pair(base, cand, device, repeats, warmup)
            except Exception:  # noqa: BLE001 - as above: this loss's row keeps the runs' time ratio
                out[label] = None
    return out
