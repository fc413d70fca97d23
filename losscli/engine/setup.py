"""Build what one run needs: its data (with noise/imbalance), loss, model and context.

Shared by the single-run trainer and the batched trainer so both build runs identically
(same seeds, same streams): that is what makes batched results equal separate ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from losscli.engine.device import seeded
from losscli.engine.spec import RunSpec
from losscli.errors import UsageError

# RNG streams derived from the run seed (see device.seeded_generator)
STREAM_INIT = 1
STREAM_ORDER = 2


def load_base_data(spec: RunSpec, cache: dict | None = None):
    """The dataset before noise (imbalance included: it is fixed by split_seed, not the run seed)."""
    from losscli.data import apply_imbalance, load_dataset

    key = (spec.dataset.name, spec.dataset.data_dir, spec.dataset.val_fraction, spec.dataset.split_seed,
           repr(sorted(spec.dataset.options.items())), spec.imbalance)
    if cache is not None and key in cache:
        return cache[key]
    base = load_dataset(
        spec.dataset.name, data_dir=spec.dataset.data_dir, download=spec.dataset.download,
        val_fraction=spec.dataset.val_fraction, split_seed=spec.dataset.split_seed, options=dict(spec.dataset.options),
    )
    bundle = apply_imbalance(base, spec.imbalance, seed=spec.dataset.split_seed)
    if cache is not None:
        cache[key] = bundle
    return bundle


def load_run_data(spec: RunSpec, cache: dict | None = None):
    from losscli.data import apply_noise

    return apply_noise(load_base_data(spec, cache), spec.noise, seed=spec.seed)


def build_run_loss(spec: RunSpec, bundle) -> torch.nn.Module:
    from losscli.losses import LOSSES, build_loss

    info = LOSSES.get(spec.loss).info
    kwargs: dict[str, Any] = dict(spec.loss_params)
    kwargs["class_counts"] = [float(c) for c in bundle.class_counts]
    loss = build_loss(spec.loss, **kwargs)
    if info.multilabel and bundle.kind == "multilabel":  # pragma: no cover - no multi-label sources yet
        raise UsageError("multi-label datasets are not supported by the engine yet")
    return loss


def build_run_model(spec: RunSpec, bundle, loss_fn) -> torch.nn.Module:
    """Model with the run's seeded init; a loss that brings its own head gets it installed."""
    from losscli.models import auto_model, build_model

    name = spec.model.name if spec.model.name != "auto" else auto_model(bundle.kind)
    with seeded(spec.seed, STREAM_INIT):
        model = build_model(name, bundle.input_shape, bundle.num_classes, kind=bundle.kind, **dict(spec.model.options))
        head = loss_fn.make_head(model.head.in_features, bundle.num_classes)
        if head is not None:
            model.head = head
    return model


def resolved_model_name(spec: RunSpec, bundle) -> str:
    from losscli.models import auto_model

    return spec.model.name if spec.model.name != "auto" else auto_model(bundle.kind)


@dataclass
class Teacher:
    """Teacher logits for the training set (knowledge distillation)."""

    train_logits: torch.Tensor


def load_teacher(spec: RunSpec, bundle, device: torch.device) -> Teacher | None:
    from losscli.losses import LOSSES

    if "teacher_logits" not in LOSSES.get(spec.loss).info.needs:
        return None
    if not spec.teacher:
        raise UsageError(f"{spec.loss} distils from a teacher: pass --teacher RUN_DIR (a finished `losscli train` run)")
    from losscli.engine.evaluate import load_run_model, predict_logits

    model, loss_fn, _ = load_run_model(Path(spec.teacher), device)
    logits = predict_logits(model, loss_fn, bundle.x_train.to(device))
    return Teacher(train_logits=logits.to(device))


def loss_context(loss_fn, idx: torch.Tensor, epoch: int, teacher: Teacher | None) -> dict:
    """Forward keyword arguments a loss asked for (``needs``/``uses``), by the shared names."""
    info = loss_fn.info
    wanted = set(info.needs) | set(getattr(info, "uses", ()))
    ctx: dict[str, Any] = {}
    if "index" in wanted:
        ctx["index"] = idx
    if "epoch" in wanted:
        ctx["epoch"] = epoch - 1  # losses see the 0-based epoch index (LDAM-DRW's `epoch // 160` convention)
    if "teacher_logits" in wanted and teacher is not None:
        ctx["teacher_logits"] = teacher.train_logits[idx]
    return ctx


@dataclass
class DeviceData:
    x_train: torch.Tensor
    y_train: torch.Tensor
    y_train_clean: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @classmethod
    def from_bundle(cls, bundle, device: torch.device) -> "DeviceData":
        return cls(*(getattr(bundle, k).to(device) for k in
                     ("x_train", "y_train", "y_train_clean", "x_val", "y_val", "x_test", "y_test")))
