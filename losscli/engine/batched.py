"""Train many runs at once: stacked parameters + ``torch.func`` (vmap over models).

Runs that share data inputs, model architecture, optimizer and budget (``RunSpec.batch_group``)
train in one process as one vmapped model. Each run keeps its own seed (init, data order,
label noise), its own loss applied to its own slice of the logits, and its own optimizer
state slice. The total loss is the sum of per-run mean losses, so each run's gradient is
exactly that of a separate run; AdamW/SGD are elementwise, so the updates match too
(tests check this against separate runs). Where batching cannot be exact — BatchNorm in
train mode, dropout, a loss with its own head, learnable parameters or per-sample state —
``batchable`` says why and the caller trains that run on its own.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch.func import functional_call, stack_module_state

from losscli.config.validate import validate_train
from losscli.device import autocast, autocast_dtype, cpu_threads, resolve_device, seeded_generator, should_compile
from losscli.engine import rundir
from losscli.engine.build import (STREAM_ORDER, DeviceData, build_run_loss, build_run_model, load_run_data,
                                  loss_context, model_name)
from losscli.engine.evaluate import finalize_metrics
from losscli.engine.optim import build_optimizer, build_schedule, epoch_batches
from losscli.engine.recorder import RunRecorder, Stopwatch
from losscli.engine.runspec import RunSpec
from losscli.environment import environment


def batchable(loss_fn, model) -> str | None:
    """None when this run can train stacked with others; otherwise the reason it cannot."""
    info = loss_fn.info
    if not info.stackable:  # a sum with an embedding part reads logits too: its input kind is no reason
        why = "it reads the model's embeddings" if "embeddings" in info.needs else (
            f"its input is {info.input}, its target {info.target}")
        return f"{info.name} cannot train stacked ({why})"
    if loss_fn.keeps_epoch_state:
        return f"{info.name} updates its state at the end of each epoch"
    if loss_fn.make_head(8, 2) is not None or info.head:
        return f"{info.name} brings its own head"
    if any(True for _ in loss_fn.parameters()):
        return f"{info.name} has learnable parameters"
    if {"index", "teacher_logits"} & set(info.needs):
        return f"{info.name} needs per-sample state or a teacher"
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            return "the model uses BatchNorm (batch statistics differ when stacked)"
        if isinstance(m, torch.nn.Dropout) and m.p > 0:
            return "the model uses dropout (random masks differ when stacked)"
    return None


@dataclass
class GroupContext:
    """Everything a stacked group trains with; index ``r`` is the r-th run everywhere."""

    specs: list[RunSpec]
    bundles: list
    losses: list
    models: list[torch.nn.Module]
    recs: list[RunRecorder]
    device: torch.device
    amp: torch.dtype | None
    compiled: bool
    log: Callable[[str], None] | None = None


def train_group(specs: list[RunSpec], run_dirs: list[Path], *, overwrite: bool = True, progress: bool = False,
                data_cache: dict | None = None, log: Callable[[str], None] | None = None,
                render_markdown: Callable[[dict], str] | None = None,
                hooks: list | None = None) -> list[dict[str, Any]]:
    """Train ``specs`` (one batch group) together; write each run's directory; return reports.
    ``hooks[r]`` (an experiment tracker's run, or None) follows run ``r``."""
    if not specs or len(specs) != len(run_dirs):
        raise ValueError("train_group needs one run directory per spec")
    first = specs[0]
    validate_train(first.train)
    device = resolve_device(first.device)
    amp = autocast_dtype(first.precision, device)
    compiled = should_compile(first.compile, device)

    bundles = [load_run_data(s, data_cache) for s in specs]
    losses = [build_run_loss(s, b).to(device) for s, b in zip(specs, bundles)]
    models = [build_run_model(s, b, l) for s, b, l in zip(specs, bundles, losses)]
    for loss_fn, model in zip(losses, models):
        reason = batchable(loss_fn, model)
        if reason:
            raise ValueError(f"cannot batch {loss_fn.info.name}: {reason}")
    for m in models:
        m.to(device)
    with cpu_threads(first.threads, device, models[0]) as threads:
        env = {**environment(device, compiled=compiled, amp_dtype=amp, threads=threads), "batched_runs": len(specs)}
        recs = []
        for i, (s, d, b) in enumerate(zip(specs, run_dirs, bundles)):
            rec = RunRecorder(s, rundir.prepare_run_dir(Path(d), overwrite), env, b, model_name(s, b), render_markdown,
                              hooks[i] if hooks else None)
            rec.start()
            recs.append(rec)
        return _fit_group(GroupContext(specs, bundles, losses, models, recs, device, amp, compiled, log))


def _fit_group(g: GroupContext) -> list[dict[str, Any]]:
    specs, bundles, losses, models, recs, device = g.specs, g.bundles, g.losses, g.models, g.recs, g.device
    cfg = specs[0].train
    R = len(specs)
    params, buffers = stack_module_state(models)  # leaf tensors [R, ...]
    loss_groups = _group_identical_losses(specs, losses)
    template = copy.deepcopy(models[0]).to("meta")

    def one_model(p, b, x):
        return functional_call(template, (p, b), (x,))

    forward_each = torch.vmap(one_model, in_dims=(0, 0, 0))  # x: [R, B, ...]
    forward_shared = torch.vmap(one_model, in_dims=(0, 0, None))  # x: [N, ...] shared (evaluation)
    if g.compiled:
        forward_each = torch.compile(forward_each)

    x_train = bundles[0].x_train.to(device)
    y_train = torch.stack([b.y_train for b in bundles]).to(device)  # [R, N]: labels differ per seed (noise)
    data0 = DeviceData.from_bundle(bundles[0], device)
    n_train = x_train.shape[0]
    optimizer = build_optimizer(list(params.values()), cfg)
    scheduler, spe = build_schedule(optimizer, n_train, cfg)
    orders = [seeded_generator(s.seed, STREAM_ORDER) for s in specs]
    alive = [True] * R

    for epoch in range(1, cfg.epochs + 1):
        step_losses = torch.empty(R, spe, device=device)
        batches = [epoch_batches(n_train, cfg.batch_size, o) for o in orders]
        with Stopwatch(device) as sw:
            for b in range(spe):
                idx = torch.stack([batches[r][b] for r in range(R)]).to(device)  # [R, B]
                with autocast(g.amp, device):
                    logits = forward_each(params, buffers, x_train[idx])
                yb = torch.gather(y_train, 1, idx)
                per_run = _per_run_losses(loss_groups, losses, logits, yb, idx, epoch, R)
                optimizer.zero_grad(set_to_none=True)
                per_run.sum().backward()
                if cfg.grad_clip is not None:
                    _clip_per_run(params, cfg.grad_clip)
                optimizer.step()
                scheduler.step()
                step_losses[:, b] = per_run.detach()
        with Stopwatch(device) as ew:
            val_acc = _stacked_accuracy(forward_shared, params, buffers, data0.x_val, data0.y_val, g.amp)
            test_acc = _stacked_accuracy(forward_shared, params, buffers, data0.x_test, data0.y_test, g.amp)
        for r, rec in enumerate(recs):
            if not alive[r]:
                continue
            rec.add_train_time(sw.seconds / R, spe * min(cfg.batch_size, n_train))  # the group's time, shared evenly
            rec.add_eval_time(ew.seconds / R)
            if not (rec.check_finite(step_losses[r], epoch)
                    and rec.check_outputs(epoch, {"validation": (val_acc[r], data0.x_val.shape[0]),
                                                  "test": (test_acc[r], data0.x_test.shape[0])})):
                rec.finish_failed()
                alive[r] = False
                if g.log:
                    g.log(f"{specs[r].loss_label} (seed {specs[r].seed}) failed: {rec.failed}")
                continue
            rec.record_epoch(epoch, step_losses[r].mean().item(), val_acc[r], test_acc[r],
                             optimizer.param_groups[0]["lr"],
                             {f"model.{k}": v[r] for k, v in {**params, **buffers}.items()})
        if not any(alive):
            break

    reports = []
    for r, rec in enumerate(recs):
        if not alive[r]:
            reports.append(rundir.read_report(rec.run_dir))
            continue
        model = models[r]
        with torch.no_grad():
            model.load_state_dict({k: v[r].detach() for k, v in {**params, **buffers}.items()})
        metrics, logits = finalize_metrics(model, losses[r], DeviceData.from_bundle(bundles[r], device), bundles[r], g.amp)
        state = {f"model.{k}": v for k, v in model.state_dict().items()}
        reports.append(rec.finish(state, logits, metrics))
        if g.log:
            g.log(f"{specs[r].loss_label} (seed {specs[r].seed}): test accuracy {metrics['test']['accuracy']:.4f}")
    return reports


def _group_identical_losses(specs: list[RunSpec], losses: list) -> list[tuple[list[int], Any]]:
    """Runs whose loss is the same function (same spec, no per-run state such as class counts,
    weights or context) share one loss call per step: ``reduction="none"`` over their stacked
    logits, then a mean per run — the same value as separate per-run means, in fewer kernels."""
    groups: dict[str, list[int]] = {}
    for r, (spec, loss_fn) in enumerate(zip(specs, losses)):
        info = loss_fn.info
        shareable = (loss_fn.reduction == "mean" and loss_fn.weight is None and not info.batch_coupled
                     and not info.needs_class_counts and not info.needs and not info.uses)
        groups.setdefault(spec.loss_label if shareable else f"#run{r}", []).append(r)
    out = []
    for key, members in groups.items():
        if len(members) > 1:
            shared = copy.copy(losses[members[0]])
            shared.reduction = "none"
            out.append((members, shared))
        else:
            out.append((members, None))
    return out


def _per_run_losses(groups, losses, logits, yb, idx, epoch, R) -> torch.Tensor:
    per_run: list[torch.Tensor | None] = [None] * R
    for members, shared in groups:
        if shared is None:
            r = members[0]
            per_run[r] = losses[r](logits[r], yb[r], **loss_context(losses[r], idx[r], epoch, None))
            continue
        rows = torch.as_tensor(members, device=logits.device)
        k, b, c = len(members), logits.shape[1], logits.shape[2]
        means = shared(logits[rows].reshape(k * b, c), yb[rows].reshape(k * b)).reshape(k, b).mean(1)
        for j, r in enumerate(members):
            per_run[r] = means[j]
    return torch.stack(per_run)


def _clip_per_run(params: dict[str, torch.Tensor], max_norm: float) -> None:
    """clip_grad_norm_ for each run's slice separately (the global norm of one run)."""
    grads = [p.grad for p in params.values() if p.grad is not None]
    if not grads:
        return
    sq = torch.stack([g.reshape(g.shape[0], -1).pow(2).sum(1) for g in grads]).sum(0)  # [R]
    scale = (max_norm / (sq.sqrt() + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(scale.view(-1, *([1] * (g.dim() - 1))).to(g.dtype))


@torch.no_grad()
def _stacked_accuracy(forward_shared, params, buffers, x, y, amp, chunk: int = 4096) -> list[float]:
    R = next(iter(params.values())).shape[0]
    if x.shape[0] == 0:
        return [float("nan")] * R
    correct = torch.zeros(R, device=x.device)
    finite = torch.ones(R, dtype=torch.bool, device=x.device)
    for start in range(0, x.shape[0], chunk):
        with autocast(amp, x.device):
            logits = forward_shared(params, buffers, x[start:start + chunk])  # [R, n, C]
        correct += (logits.argmax(-1) == y[start:start + chunk]).sum(-1)
        finite &= torch.isfinite(logits).flatten(1).all(1)
    # NaN for a run whose outputs are not finite (RunRecorder.check_outputs fails it)
    return torch.where(finite, correct / x.shape[0], float("nan")).tolist()
