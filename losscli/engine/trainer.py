"""One run, one readable loop (nanoGPT/airbench style): data on the device, batches are
index slices of a per-epoch permutation (or OKO's sets: ``engine/steps.py``), honest timing,
NaN stops the run cleanly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from losscli.config.validate import validate_train
from losscli.device import autocast_dtype, cpu_threads, resolve_device, seeded_generator, should_compile
from losscli.engine import rundir
from losscli.engine.build import STREAM_ORDER, DeviceData, build_run_loss, build_run_model, load_run_data, model_name
from losscli.engine.evaluate import epoch_score, finalize_metrics
from losscli.engine.optim import build_optimizer, build_schedule
from losscli.engine.recorder import RunRecorder, Stopwatch
from losscli.engine.runspec import RunSpec
from losscli.engine.steps import make_steps
from losscli.engine.teacher import teacher_logits
from losscli.environment import environment

ProgressFn = Callable[[str], None]
#: called after each evaluated epoch with (epoch, validation score: accuracy, or -MSE on regression
#: data, so higher is better either way); may raise StopRun
EpochFn = Callable[[int, float], None]


class StopRun(Exception):
    """Raised by an epoch callback to end a run early (a pruned tuning trial); not a failure."""


@dataclass
class RunContext:
    """Everything one training run works with, built once by :func:`train_run`."""

    spec: RunSpec
    model: torch.nn.Module
    loss_fn: Any  # losscli.losses.Loss
    data: DeviceData
    bundle: Any  # losscli.data.DataBundle
    rec: RunRecorder
    device: torch.device
    amp: torch.dtype | None
    compiled: bool
    teacher: torch.Tensor | None = None  # [N_train, C] teacher logits for distillation losses
    progress: bool = False
    on_epoch: EpochFn | None = None


def train_run(spec: RunSpec, run_dir: Path, *, overwrite: bool = False, progress: bool = True,
              data_cache: dict | None = None, log: ProgressFn | None = None,
              render_markdown: Callable[[dict], str] | None = None) -> dict[str, Any]:
    """Train one model with one loss; write the run directory; return the report.

    A non-finite loss stops the run: the report says at which epoch and step, status is
    ``failed``, and everything written so far stays on disk. ``render_markdown`` turns the
    report into the run's report.md (None: no report.md).
    """
    validate_train(spec.train)
    device = resolve_device(spec.device)
    amp = autocast_dtype(spec.precision, device)
    compiled = should_compile(spec.compile, device)
    run_dir = rundir.prepare_run_dir(Path(run_dir), overwrite)

    bundle = load_run_data(spec, data_cache)
    loss_fn = build_run_loss(spec, bundle)
    model = build_run_model(spec, bundle, loss_fn)
    teacher = teacher_logits(spec, bundle, device)
    model.to(device)
    loss_fn.to(device)
    with cpu_threads(spec.threads, device, model) as threads:
        env = environment(device, compiled=compiled, amp_dtype=amp, threads=threads)
        rec = RunRecorder(spec, run_dir, env, bundle, model_name(spec, bundle), render_markdown)
        rec.start()
        ctx = RunContext(spec, model, loss_fn, DeviceData.from_bundle(bundle, device), bundle, rec, device, amp,
                         compiled, teacher, progress)
        report = _fit(ctx)
    if log and report["status"] == "ok":
        name = rec.score
        log(f"{spec.loss_label}: test {name} {report['metrics']['test'][name]:.4f} -> {run_dir}")
    return report


def train_trial(spec: RunSpec, *, data_cache: dict | None = None, on_epoch: EpochFn | None = None) -> dict[str, Any]:
    """Train one tuning trial: no run directory, and **no test split** — it is removed from the
    data before training starts, so selection can only ever see the validation split.

    ``on_epoch(epoch, val_score)`` may raise :class:`StopRun` (a pruned trial); the score is the
    validation accuracy (-MSE on regression data). Returns ``{status: ok|failed|pruned, error,
    history: [{epoch, val_accuracy (val_mse), ...}], metrics: {val: ...}}``.
    """
    validate_train(spec.train)
    device = resolve_device(spec.device)
    amp = autocast_dtype(spec.precision, device)
    compiled = should_compile(spec.compile, device)
    bundle = load_run_data(spec, data_cache).without_test()
    loss_fn = build_run_loss(spec, bundle)
    model = build_run_model(spec, bundle, loss_fn)
    teacher = teacher_logits(spec, bundle, device)
    model.to(device)
    loss_fn.to(device)
    with cpu_threads(spec.threads, device, model) as threads:
        env = environment(device, compiled=compiled, amp_dtype=amp, threads=threads)
        rec = RunRecorder(spec, None, env, bundle, model_name(spec, bundle))
        ctx = RunContext(spec, model, loss_fn, DeviceData.from_bundle(bundle, device), bundle, rec, device, amp,
                         compiled, teacher, False, on_epoch)
        try:
            return _fit(ctx)
        except StopRun:
            return {"status": "pruned", "error": None, "history": rec.history, "metrics": {}}


def _fit(ctx: RunContext) -> dict[str, Any]:
    """The training loop proper (nanoGPT style: flat and readable)."""
    cfg, model, loss_fn, data, rec = ctx.spec.train, ctx.model, ctx.loss_fn, ctx.data, ctx.rec
    optimizer = build_optimizer(list(model.parameters()) + list(loss_fn.parameters()), cfg)
    steps = make_steps(ctx)  # rows of the training set, or OKO's sets
    scheduler, spe = build_schedule(optimizer, steps.units, cfg, batch_size=steps.units_per_step)
    forward = _compiled_forward(steps.module(), rec) if ctx.compiled else steps.module()
    order = seeded_generator(ctx.spec.seed, STREAM_ORDER)
    higher = 1.0 if rec.higher_is_better else -1.0  # the epoch callback's score: higher is better
    bar = _progress_bar(cfg.epochs, ctx.spec.loss_label, ctx.progress)

    for epoch in range(1, cfg.epochs + 1):
        step_losses = torch.empty(spe, device=ctx.device)
        model.train()
        with Stopwatch(ctx.device) as sw:
            for b, batch in enumerate(steps.batches(order)):
                loss = steps.loss(forward, batch, epoch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                scheduler.step()
                step_losses[b] = loss.detach()
        rec.add_train_time(sw.seconds - (rec.compile_seconds if epoch == 1 else 0.0), spe * steps.examples_per_step)
        if not rec.check_finite(step_losses, epoch):
            bar.close()
            return rec.finish_failed()
        if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
            with Stopwatch(ctx.device) as ew:
                val = epoch_score(model, loss_fn, data.x_val, data.y_val, ctx.bundle, ctx.amp)
                test = epoch_score(model, loss_fn, data.x_test, data.y_test, ctx.bundle, ctx.amp)
            rec.add_eval_time(ew.seconds)
            train_loss = step_losses.mean().item()
            rec.record_epoch(epoch, train_loss, val, test, optimizer.param_groups[0]["lr"], _state(model, loss_fn))
            if not ctx.bundle.is_regression:  # the hook's contract is a validation accuracy
                loss_fn.on_epoch_end(epoch - 1, val)  # stateful losses (ASLP) adapt to validation accuracy
            bar.set_postfix(loss=f"{train_loss:.4f}", val=f"{val:.3f}")
            if ctx.on_epoch is not None:
                ctx.on_epoch(epoch, higher * val)
        bar.update(1)
    bar.close()

    metrics, logits = finalize_metrics(model, loss_fn, data, ctx.bundle, ctx.amp)
    return rec.finish(_state(model, loss_fn), logits, metrics)


def _state(model, loss_fn) -> dict[str, torch.Tensor]:
    out = {f"model.{k}": v for k, v in model.state_dict().items()}
    out.update({f"loss.{k}": v for k, v in loss_fn.state_dict().items()})
    return out


def _compiled_forward(model, rec: RunRecorder):
    """torch.compile the model; the first call's compile time is timed and reported separately."""
    compiled = torch.compile(model)
    state = {"first": True}

    def forward(x):
        if state["first"]:
            state["first"] = False
            t0 = time.perf_counter()
            out = compiled(x)
            if x.is_cuda:
                torch.cuda.synchronize()
            rec.add_compile_time(time.perf_counter() - t0)
            return out
        return compiled(x)

    return forward


def _progress_bar(total: int, desc: str, enabled: bool):
    import sys

    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="epoch", leave=False, file=sys.stderr,
                disable=not (enabled and sys.stderr.isatty()))
