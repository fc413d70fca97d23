"""The loss's own cost at a training shape, for compare's "loss time vs baseline" column.

Each loss's forward + backward over random logits of the training batch shape is timed paired
with the compare's baseline loss (``paired.measure_paired``: both warmed up, then baseline, loss,
baseline, loss, ... passes), through the same harness as ``losscli profile``, so compare reports
the loss's kernel cost separately from the model's (which dominates the training time of small
models) and as a ratio that background load cannot tilt.
"""

from __future__ import annotations

import statistics
from typing import Any, Iterable

import torch


def loss_step_costs(specs: Iterable[str], baseline: str, batch_size: int, num_classes: int, device: torch.device,
                    repeats: int = 15, warmup: int = 3) -> dict[str, dict[str, Any] | None]:
    """Per loss spec: ``{ms, ratio, ratio_p20, ratio_p80, trusted}`` on ``[batch_size, num_classes]``
    float32 logits, the ratio paired against ``baseline`` (1.0 for the baseline itself); None for a
    loss that cannot be measured on logits of that shape (or when the baseline cannot)."""
    from losscli.profiling.cases import SkipLoss, make_case, split_profile_spec
    from losscli.profiling.harness import Prepared, measure_case

    device = torch.device(device)

    def case(spec: str):
        name, params = split_profile_spec(spec)
        return make_case(spec, name, params, batch_size, num_classes, torch.float32, device, check=False)

    specs = list(dict.fromkeys(specs))
    out: dict[str, dict[str, Any] | None] = {s: None for s in specs}
    try:
        base = Prepared(case(baseline), compiled=False)
    except SkipLoss:
        return out
    paired_base_ms = []
    for spec in specs:
        if spec == baseline:
            continue
        try:
            row = measure_case(case(spec), repeats=repeats, warmup=warmup, compiled=False, measure_memory=False,
                               baseline=base.timed())
        except SkipLoss:
            continue
        paired_base_ms.append(row["ce_ms"])
        out[spec] = {"ms": row["total_ms"], "ratio": row["overhead_vs_ce"], "ratio_p20": row["overhead_p20"],
                     "ratio_p80": row["overhead_p80"], "trusted": row["ratio_trusted"]}
    if baseline in out:
        # the baseline's time as measured beside the others (alone it runs with warmer caches: a different number)
        ms = statistics.median(paired_base_ms) if paired_base_ms else measure_case(
            base.case, repeats=repeats, warmup=warmup, compiled=False, measure_memory=False, prepared=base)["total_ms"]
        out[baseline] = {"ms": ms, "ratio": 1.0, "ratio_p20": 1.0, "ratio_p80": 1.0, "trusted": True}
    return out
