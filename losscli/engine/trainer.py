"""One run, one readable loop (nanoGPT/airbench style): data on the device, batches are
index slices of a per-epoch permutation (or OKO's sets: ``engine/steps.py``), honest timing,
NaN stops the run cleanly.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from losscli.config.validate import validate_train
from losscli.device import autocast_dtype, cpu_threads, resolve_device, seeded_generator, should_compile
from losscli.engine import checkpoint, rundir
from losscli.engine.build import STREAM_ORDER, DeviceData, build_run_loss, build_run_model, load_run_data, model_name
from losscli.engine.evaluate import epoch_score, finalize_metrics
from losscli.engine.optim import build_optimizer, build_schedule
from losscli.engine.progress import EpochProgress
from losscli.engine.recorder import RunHooks, RunRecorder, Stopwatch
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
    log_every: int | None = None  # progress lines every N epochs (None: a bar on a terminal, lines elsewhere)
    log: ProgressFn | None = None
    checkpoint: bool = False  # write RUN_DIR/checkpoint.pt after every epoch (train --resume)
    resume_state: dict | None = None  # a checkpoint to continue from


def train_run(spec: RunSpec, run_dir: Path, *, overwrite: bool = False, progress: bool = True,
              data_cache: dict | None = None, log: ProgressFn | None = None,
              render_markdown: Callable[[dict], str] | None = None, resume: bool = False,
              checkpoints: bool = False, log_every: int | None = None,
              hooks: RunHooks | None = None) -> dict[str, Any]:
    """Train one model with one loss; write the run directory; return the report.

    A non-finite loss stops the run: the report says at which epoch and step, status is
    ``failed``, and everything written so far stays on disk. ``render_markdown`` turns the
    report into the run's report.md (None: no report.md). ``checkpoints`` writes a checkpoint
    after every epoch; ``resume`` continues from the one in ``run_dir`` (starts afresh without one).
    ``hooks`` (an experiment tracker) follow the run.
    """
    state = checkpoint.load(Path(run_dir), spec.key()) if resume else None
    rundir.check_run_dir(run_dir, overwrite)  # before the data loads: a refusal that costs nothing
    with _built(spec, data_cache, without_test=False) as (bundle, loss_fn, model, teacher, device, amp, compiled,
                                                            env):
        run_dir = rundir.prepare_run_dir(Path(run_dir), overwrite, resume=state is not None)
        rec = RunRecorder(spec, run_dir, env, bundle, model_name(spec, bundle), render_markdown, hooks)
        if log and progress:
            log(describe_run(spec, bundle, rec.model_name, device))
            for warning in bundle.info.get("warnings") or []:  # also in the report's data.warnings
                log(f"warning: {warning}")
        ctx = RunContext(spec, model, loss_fn, DeviceData.from_bundle(bundle, device), bundle, rec, device, amp,
                         compiled, teacher, progress, log_every=log_every, log=log if progress else None,
                         checkpoint=checkpoints or resume, resume_state=state)
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
    with _built(spec, data_cache, without_test=True) as (bundle, loss_fn, model, teacher, device, amp, compiled,
                                                           env):
        rec = RunRecorder(spec, None, env, bundle, model_name(spec, bundle))
        ctx = RunContext(spec, model, loss_fn, DeviceData.from_bundle(bundle, device), bundle, rec, device, amp,
                         compiled, teacher, False, on_epoch)
        try:
            return _fit(ctx)
        except StopRun:
            return {"status": "pruned", "error": None, "history": rec.history, "metrics": {}}


@contextlib.contextmanager
def _built(spec: RunSpec, data_cache: dict | None, without_test: bool):
    """Everything one run trains with, built the same way for a run and for a tuning trial (which
    gets the data without its test split), inside the run's CPU-thread setting."""
    validate_train(spec.train)
    device = resolve_device(spec.device)
    amp = autocast_dtype(spec.precision, device)
    compiled = should_compile(spec.compile, device)
    bundle = load_run_data(spec, data_cache)
    if without_test:
        bundle = bundle.without_test()
    loss_fn = build_run_loss(spec, bundle)
    model = build_run_model(spec, bundle, loss_fn)
    teacher = teacher_logits(spec, bundle, device)
    model.to(device)
    loss_fn.to(device)
    with cpu_threads(spec.threads, device, model) as threads:
        env = environment(device, compiled=compiled, amp_dtype=amp, threads=threads)
        yield bundle, loss_fn, model, teacher, device, amp, compiled, env


@contextlib.contextmanager
def step_probe(spec: RunSpec, data_cache: dict | None = None):
    """``spec``'s run built as for training (data, model, loss, optimizer, the loss's step plan) and
    a ``step()`` that makes one optimizer step of it on the next batch of the first epoch: for
    timing a loss's whole training step against another's (compare's step-time ratio). Neither the
    run's directory nor its test split is touched; the schedule is left out (a constant per step)."""
    with _built(spec, data_cache, without_test=True) as (bundle, loss_fn, model, teacher, device, amp, _, _):
        ctx = RunContext(spec, model, loss_fn, DeviceData.from_bundle(bundle, device), bundle, None, device, amp,
                         False, teacher)
        cfg = spec.train
        optimizer = _optimizer(model, loss_fn, cfg)
        steps = make_steps(ctx)
        forward = steps.module()
        batches = steps.batches(seeded_generator(spec.seed, STREAM_ORDER))
        model.train()
        count = itertools.count()

        def step() -> None:
            _optimizer_step(steps, forward, batches[next(count) % len(batches)], 1, optimizer, model, cfg.grad_clip)

        yield step


def _optimizer(model, loss_fn, cfg):
    return build_optimizer(list(model.parameters()) + list(loss_fn.parameters()), cfg)


def _optimizer_step(steps, forward, batch, epoch: int, optimizer, model, grad_clip) -> torch.Tensor:
    """One training step on ``batch`` (forward, loss, backward, clipping, optimizer); returns the loss."""
    loss = steps.loss(forward, batch, epoch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss


def _fit(ctx: RunContext) -> dict[str, Any]:
    """The training loop proper (nanoGPT style: flat and readable)."""
    cfg, model, loss_fn, data, rec = ctx.spec.train, ctx.model, ctx.loss_fn, ctx.data, ctx.rec
    optimizer = _optimizer(model, loss_fn, cfg)
    steps = make_steps(ctx)  # rows of the training set, or OKO's sets
    scheduler, spe = build_schedule(optimizer, steps.units, cfg, batch_size=steps.units_per_step)
    forward = _compiled_forward(steps.module(), rec) if ctx.compiled else steps.module()
    order = seeded_generator(ctx.spec.seed, STREAM_ORDER)
    generators = {"order": order, **({"sets": steps.sets} if hasattr(steps, "sets") else {})}
    start = 0
    if ctx.resume_state is not None:
        start = checkpoint.restore(ctx.resume_state, model=model, loss_fn=loss_fn, optimizer=optimizer,
                                   scheduler=scheduler, generators=generators)
        rec.load_state(ctx.resume_state["recorder"], start, _state(model, loss_fn))
    rec.start(start)
    higher = 1.0 if rec.higher_is_better else -1.0  # the epoch callback's score: higher is better
    bar = EpochProgress(cfg.epochs, ctx.spec.loss_label, ctx.progress, ctx.log_every, ctx.log, start, rec.score)
    if start:
        bar.note(f"{ctx.spec.loss_label}: resuming after epoch {start} of {cfg.epochs} ({checkpoint.path(rec.run_dir)})")

    for epoch in range(start + 1, cfg.epochs + 1):
        step_losses = torch.empty(spe, device=ctx.device)
        model.train()
        with Stopwatch(ctx.device) as sw:
            for b, batch in enumerate(steps.batches(order)):
                loss = _optimizer_step(steps, forward, batch, epoch, optimizer, model, cfg.grad_clip)
                scheduler.step()
                step_losses[b] = loss.detach()
        rec.add_train_time(sw.seconds - (rec.compile_seconds if epoch == 1 else 0.0), spe * steps.examples_per_step)
        if not rec.check_finite(step_losses, epoch):
            bar.close()
            _drop_checkpoint(ctx)
            return rec.finish_failed()
        if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
            with Stopwatch(ctx.device) as ew:
                val = epoch_score(model, loss_fn, data.x_val, data.y_val, ctx.bundle, ctx.amp)
                test = epoch_score(model, loss_fn, data.x_test, data.y_test, ctx.bundle, ctx.amp)
            rec.add_eval_time(ew.seconds)
            if not rec.check_outputs(epoch, {"validation": (val, data.x_val.shape[0]),
                                             "test": (test, data.x_test.shape[0])}):
                bar.close()
                _drop_checkpoint(ctx)
                return rec.finish_failed()
            train_loss = step_losses.mean().item()
            rec.record_epoch(epoch, train_loss, val, test, optimizer.param_groups[0]["lr"], _state(model, loss_fn))
            if not ctx.bundle.is_regression:  # the hook's contract is a validation accuracy
                loss_fn.on_epoch_end(epoch - 1, val)  # stateful losses (ASLP) adapt to validation accuracy
            bar.epoch(epoch, train_loss, val, optimizer.param_groups[0]["lr"])
            if ctx.on_epoch is not None:
                ctx.on_epoch(epoch, higher * val)
        else:
            bar.epoch(epoch)
        if ctx.checkpoint and rec.run_dir is not None and epoch < cfg.epochs:
            checkpoint.save(rec.run_dir, key=ctx.spec.key(), epoch=epoch, model=model, loss_fn=loss_fn,
                            optimizer=optimizer, scheduler=scheduler, generators=generators,
                            recorder=rec.state(epoch))
    bar.close()

    metrics, logits = finalize_metrics(model, loss_fn, data, ctx.bundle, ctx.amp)
    report = rec.finish(_state(model, loss_fn), logits, metrics)
    _drop_checkpoint(ctx)  # after the report: a kill before it still resumes
    return report


def _drop_checkpoint(ctx: RunContext) -> None:
    if ctx.checkpoint and ctx.rec.run_dir is not None:
        checkpoint.remove(ctx.rec.run_dir)


def describe_run(spec: RunSpec, bundle, model: str, device: torch.device) -> str:
    """One line saying what is about to train (the resolved data, model and budget)."""
    t = spec.train
    sizes = bundle.sizes()
    what = "regression" if bundle.is_regression else f"{bundle.num_classes} classes"
    norm = (bundle.info.get("normalization") or {}).get("method")
    data = (f"{bundle.name} ({bundle.kind}, {what}, {sizes['train']}/{sizes['val']}/{sizes['test']} train/val/test"
            + (", standardised" if norm == "standardize" else "") + ")")
    auto = " (auto)" if spec.model.name == "auto" else ""
    return (f"{spec.loss_label}: {data}, model {model}{auto}, {t.epochs} epochs, batch {t.batch_size}, "
            f"{t.optimizer} lr {t.lr:g} ({t.schedule}), noise {spec.noise}, seed {spec.seed}, {device.type}")


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
