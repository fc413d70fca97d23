"""Optimizers and per-step learning-rate schedules (warm-up + cosine / one-cycle / step).

Ranges of the training keys are checked once, in :func:`losscli.config.validate_train`.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch

from losscli.config.schema import TrainConfig


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    params = list(params)
    # a stacked [R, ...] parameter (batched runs) must get exactly the update R separate ones get. The
    # per-tensor loop (foreach=False) does the same elementwise arithmetic either way; on a CPU the
    # multi-tensor one does too, and gives the per-tensor loop's results bit for bit (tests check both)
    # in fewer Python steps: AdamW's step for the default 1-D CNN 229 us instead of 275. On GPUs the
    # per-tensor loop stays (its kernels were the ones checked equal there).
    foreach = bool(params) and all(p.device.type == "cpu" for p in params)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=foreach)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                           nesterov=cfg.momentum > 0, foreach=foreach)


def lr_factor(step: int, total_steps: int, steps_per_epoch: int, cfg: TrainConfig) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based)."""
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    if cfg.schedule == "onecycle":
        # linear ramp to the peak over the first 30% (or the warm-up if longer), then cosine to 0
        peak = max(warmup, int(0.3 * total_steps), 1)
        if step < peak:
            return 0.04 + 0.96 * step / peak
        return 0.5 * (1 + math.cos(math.pi * (step - peak) / max(1, total_steps - peak)))
    if step < warmup:
        return (step + 1) / warmup
    if cfg.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total_steps - warmup)))
    if cfg.schedule == "step":
        frac = step / max(1, total_steps)
        return cfg.step_gamma ** sum(frac >= m for m in cfg.step_milestones)
    return 1.0  # constant


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    # Drop the last partial batch (fixed shapes: no recompiles, exact batched equivalence).
    return max(1, n_train // batch_size) if n_train >= batch_size else 1


def epoch_batches(n_train: int, batch_size: int, gen: torch.Generator) -> list[torch.Tensor]:
    """Index slices of one epoch's permutation (on CPU; moved to the device by the caller)."""
    perm = torch.randperm(n_train, generator=gen)
    bs = min(batch_size, n_train)
    return [perm[i * bs:(i + 1) * bs] for i in range(steps_per_epoch(n_train, batch_size))]


def build_schedule(optimizer: torch.optim.Optimizer, n_train: int, cfg: TrainConfig, batch_size: int | None = None):
    """(scheduler stepping once per optimizer step, steps per epoch). ``n_train`` units per epoch,
    ``batch_size`` (default ``cfg.batch_size``) per step: rows, or OKO's sets (engine/steps.py)."""
    spe = steps_per_epoch(n_train, cfg.batch_size if batch_size is None else batch_size)
    total = spe * cfg.epochs
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, spe, cfg)), spe
