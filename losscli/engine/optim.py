"""Optimizers and per-step learning-rate schedules (warm-up + cosine / one-cycle / step)."""

from __future__ import annotations

import math
from typing import Iterable

import torch

from losscli.config import TrainConfig
from losscli.errors import UsageError


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    params = list(params)
    if cfg.optimizer == "adamw":
        # foreach=False keeps per-tensor math identical between stacked and separate runs
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.momentum > 0)
    raise UsageError(f"unknown optimizer {cfg.optimizer!r}; use adamw or sgd")


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
    if cfg.schedule == "constant":
        return 1.0
    raise UsageError(f"unknown schedule {cfg.schedule!r}; use cosine, onecycle, step or constant")


def validate_train_config(cfg: TrainConfig) -> None:
    checks = [
        (cfg.epochs >= 1, "train.epochs must be >= 1"),
        (cfg.batch_size >= 1, "train.batch_size must be >= 1"),
        (cfg.lr > 0, "train.lr must be > 0"),
        (cfg.weight_decay >= 0, "train.weight_decay must be >= 0"),
        (cfg.optimizer in ("adamw", "sgd"), f"unknown optimizer {cfg.optimizer!r}; use adamw or sgd"),
        (cfg.schedule in ("cosine", "onecycle", "step", "constant"),
         f"unknown schedule {cfg.schedule!r}; use cosine, onecycle, step or constant"),
        (cfg.grad_clip is None or cfg.grad_clip > 0, "train.grad_clip must be > 0 (or null)"),
        (cfg.warmup_epochs >= 0, "train.warmup_epochs must be >= 0"),
    ]
    for ok, message in checks:
        if not ok:
            raise UsageError(message)
