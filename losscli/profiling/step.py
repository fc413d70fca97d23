"""The loss's own cost at a training shape, for compare's "loss time vs baseline" column.

One small measurement per loss (forward + backward over random logits of the training
batch shape, median of a few repeats after warm-up) through the same harness as
``losscli profile``, so compare reports the loss's kernel cost separately from the
model's, which dominates the training time of small models.
"""

from __future__ import annotations

import torch


def loss_step_ms(spec: str, batch_size: int, num_classes: int, device: torch.device,
                 repeats: int = 15, warmup: int = 3) -> float | None:
    """Median forward+backward milliseconds of ``spec`` on ``[batch_size, num_classes]`` float32 logits."""
    from losscli.profiling.cases import SkipLoss, make_case, split_profile_spec
    from losscli.profiling.harness import measure_case

    name, params = split_profile_spec(spec)
    try:
        case = make_case(spec, name, params, batch_size, num_classes, torch.float32, torch.device(device), check=False)
        row = measure_case(case, repeats=repeats, warmup=warmup, compiled=False, measure_memory=False)
    except SkipLoss:
        return None
    return row["total_ms"]
