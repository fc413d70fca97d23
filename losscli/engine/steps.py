"""What one optimizer step trains on, by the loss's input kind (``LossInfo.input``).

* :class:`RowSteps` — rows of the training set, the usual case: a batch of examples, the model's
  logits (and, for a composite loss with embedding parts, its penultimate features too, passed
  as ``embeddings=``), the loss against their labels (or regression targets).
* :class:`SetSteps` — OKO's sets: each epoch draws ``N_train`` sets of ``k+2`` examples with the
  loss's own sampler from a seeded stream (``STREAM_SETS``), runs the model on every member as a
  single example (the sets flattened) and gives the loss the member logits ``[B, k+2, C]`` with
  the member labels ``[B, k+2]`` (the loss sums the logits of each set).

Both expose the same small interface to the trainer: how many units (rows or sets) an epoch has
and how many a step takes (for the learning-rate schedule), the module to run (compiled or not),
the epoch's index batches and the loss of one batch. Prediction is the same for both: single
examples through the model (``engine/evaluate.py``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from losscli.device import autocast, seeded_generator
from losscli.engine.build import STREAM_SETS, loss_context
from losscli.engine.optim import epoch_batches, steps_per_epoch


class FeaturesAndLogits(nn.Module):
    """``x -> (features, head(features))``: one pass gives what an embedding part and a logits
    part of a composite loss need (``model.features`` / ``model.head`` of every losscli model)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.model.features(x)
        return feats, self.model.head(feats)


class RowSteps:
    """Batches of training rows (the per-epoch permutation's slices, last partial batch dropped)."""

    def __init__(self, model: nn.Module, loss_fn, data, teacher: torch.Tensor | None, batch_size: int,
                 amp: torch.dtype | None, device: torch.device):
        self.model, self.loss_fn, self.data, self.teacher = model, loss_fn, data, teacher
        self.amp, self.device = amp, device
        self.units = int(data.x_train.shape[0])
        self.units_per_step = int(batch_size)
        self.examples_per_step = min(self.units_per_step, self.units)
        # a composite loss with embedding parts takes the features as well as the logits
        self.features = "embeddings" in loss_fn.info.needs

    def module(self) -> nn.Module:
        return FeaturesAndLogits(self.model) if self.features else self.model

    def batches(self, order: torch.Generator) -> list[torch.Tensor]:
        return epoch_batches(self.units, self.units_per_step, order)

    def loss(self, forward, idx: torch.Tensor, epoch: int) -> torch.Tensor:
        idx = idx.to(self.device, non_blocking=True)
        with autocast(self.amp, self.device):
            out = forward(self.data.x_train[idx])
        feats, logits = out if self.features else (None, out)
        ctx = loss_context(self.loss_fn, idx, epoch, self.teacher, embeddings=feats)
        return self.loss_fn(logits, self.data.y_train[idx], **ctx)


class SetSteps:
    """OKO's sets: ``N_train`` sets per epoch (the paper's epoch), ``batch_size // (k+2)`` sets per
    step (at least 1), so a step sees about as many examples as an ordinary one; an epoch thus
    has about ``k+2`` times the steps (and forward passes) of an ordinary epoch."""

    def __init__(self, model: nn.Module, loss_fn, data, seed: int, batch_size: int,
                 amp: torch.dtype | None, device: torch.device):
        self.model, self.loss_fn, self.data = model, loss_fn, data
        self.amp, self.device = amp, device
        self.set_size = int(loss_fn.k) + 2
        self.units = int(data.x_train.shape[0])  # sets per epoch: num_sets = N_train, as in the paper
        self.units_per_step = max(1, int(batch_size) // self.set_size)
        self.examples_per_step = min(self.units_per_step, self.units) * self.set_size
        self.labels = data.y_train.cpu()  # the sampler works on CPU
        self.sets = seeded_generator(seed, STREAM_SETS)

    def module(self) -> nn.Module:
        return self.model

    def batches(self, order: torch.Generator) -> list[torch.Tensor]:
        """This epoch's sets ``[S, k+2]`` (training-set indices) cut into steps. The sets are
        i.i.d. draws, so their order needs no shuffling (``order`` is not used)."""
        sets = self.loss_fn.sample_sets(self.labels, self.sets, num_sets=self.units)
        n = min(self.units_per_step, self.units)
        return [sets[i * n:(i + 1) * n] for i in range(steps_per_epoch(self.units, self.units_per_step))]

    def loss(self, forward, idx: torch.Tensor, epoch: int) -> torch.Tensor:
        idx = idx.to(self.device, non_blocking=True)
        b, m = idx.shape
        with autocast(self.amp, self.device):
            member_logits = forward(self.data.x_train[idx.reshape(-1)])
        return self.loss_fn(member_logits.reshape(b, m, -1), self.data.y_train[idx])


def make_steps(ctx: Any) -> RowSteps | SetSteps:
    """The step plan of a run (``trainer.RunContext``) by its loss's input kind."""
    cfg = ctx.spec.train
    if ctx.loss_fn.info.input == "sets":
        return SetSteps(ctx.model, ctx.loss_fn, ctx.data, ctx.spec.seed, cfg.batch_size, ctx.amp, ctx.device)
    return RowSteps(ctx.model, ctx.loss_fn, ctx.data, ctx.teacher, cfg.batch_size, ctx.amp, ctx.device)
