"""One run, one readable loop (nanoGPT/airbench style): data on the device, batches are
index slices of a per-epoch permutation, honest timing, NaN stops the run cleanly.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import torch

from losscli.engine import rundir
from losscli.engine.device import (autocast, autocast_dtype, cpu_threads, environment, resolve_device,
                                   seeded_generator, should_compile)
from losscli.engine.evaluate import full_metrics, predict_logits, train_set_metrics
from losscli.engine.optim import build_optimizer, lr_factor, validate_train_config
from losscli.engine.recorder import RunRecorder, Stopwatch, first_nonfinite
from losscli.engine.setup import (STREAM_ORDER, DeviceData, build_run_loss, build_run_model, load_run_data,
                                  load_teacher, loss_context, resolved_model_name)
from losscli.engine.spec import RunSpec

ProgressFn = Callable[[str], None]


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    # Drop the last partial batch (fixed shapes: no recompiles, exact batched equivalence).
    return max(1, n_train // batch_size) if n_train >= batch_size else 1


def epoch_batches(n_train: int, batch_size: int, gen: torch.Generator) -> list[torch.Tensor]:
    """Index slices of one epoch's permutation (on CPU; moved to the device by the caller)."""
    perm = torch.randperm(n_train, generator=gen)
    bs = min(batch_size, n_train)
    return [perm[i * bs:(i + 1) * bs] for i in range(steps_per_epoch(n_train, batch_size))]


def finalize_metrics(model, loss_fn, data: DeviceData, bundle, amp) -> tuple[dict, dict]:
    """Every metric on val/test/train, per-class and shot accuracy; returns (metrics, logits)."""
    from losscli.metrics import per_class_accuracy, shot_accuracy

    val = predict_logits(model, loss_fn, data.x_val, amp_dtype=amp)
    test = predict_logits(model, loss_fn, data.x_test, amp_dtype=amp)
    train = predict_logits(model, loss_fn, data.x_train, amp_dtype=amp)
    y_val, y_test = data.y_val.cpu(), data.y_test.cpu()
    metrics: dict[str, Any] = {
        "test": full_metrics(test, y_test),
        "val": full_metrics(val, y_val) if len(y_val) else {},
        "train": train_set_metrics(train, data.y_train, data.y_train_clean),
        "per_class_test_accuracy": [float(v) for v in per_class_accuracy(test, y_test, bundle.num_classes)],
    }
    if bundle.info.get("imbalance", {}).get("spec", "none") not in ("none", None):
        metrics["shot_accuracy"] = shot_accuracy(test, y_test, bundle.class_counts)
        # also as plain test metrics, so compare can aggregate and test them like any other
        for group, value in metrics["shot_accuracy"].items():
            metrics["test"][f"{group}_shot_accuracy"] = value
    logits = {"val_logits": val, "val_labels": y_val, "test_logits": test, "test_labels": y_test}
    return metrics, logits


def train_run(spec: RunSpec, run_dir: Path, *, overwrite: bool = False, progress: bool = True,
              data_cache: dict | None = None, log: ProgressFn | None = None) -> dict[str, Any]:
    """Train one model with one loss; write the run directory; return the report.

    A non-finite loss stops the run: the report says at which epoch and step, status is
    ``failed``, and everything written so far stays on disk.
    """
    validate_train_config(spec.train)
    device = resolve_device(spec.device)
    amp = autocast_dtype(spec.precision, device)
    compiled = should_compile(spec.compile, device)
    run_dir = rundir.prepare_run_dir(Path(run_dir), overwrite)

    bundle = load_run_data(spec, data_cache)
    loss_fn = build_run_loss(spec, bundle)
    model = build_run_model(spec, bundle, loss_fn)
    teacher = load_teacher(spec, bundle, device)
    model.to(device)
    loss_fn.to(device)
    data = DeviceData.from_bundle(bundle, device)
    with cpu_threads(spec.threads, device, model) as threads:
        env = {**environment(device, compiled, amp), "threads": threads}
        rec = RunRecorder(spec, run_dir, env, bundle, resolved_model_name(spec, bundle))
        rec.start()
        report = _fit(spec, model, loss_fn, data, bundle, teacher, rec, device, amp, compiled, progress)
    if log and report["status"] == "ok":
        log(f"{spec.loss_label}: test accuracy {report['metrics']['test']['accuracy']:.4f} -> {run_dir}")
    return report


def _fit(spec, model, loss_fn, data, bundle, teacher, rec: RunRecorder, device, amp, compiled, progress):
    """The training loop proper (nanoGPT style: flat and readable)."""
    cfg = spec.train
    optimizer = build_optimizer(list(model.parameters()) + list(loss_fn.parameters()), cfg)
    n_train = data.x_train.shape[0]
    spe = steps_per_epoch(n_train, cfg.batch_size)
    total = spe * cfg.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, spe, cfg))
    forward = _compiled_forward(model, rec) if compiled else model
    order = seeded_generator(spec.seed, STREAM_ORDER)
    bar = _progress_bar(cfg.epochs, spec.loss_label, progress)

    for epoch in range(1, cfg.epochs + 1):
        step_losses = torch.empty(spe, device=device)
        model.train()
        with Stopwatch(device) as sw:
            for b, idx in enumerate(epoch_batches(n_train, cfg.batch_size, order)):
                idx = idx.to(device, non_blocking=True)
                with autocast(amp, device):
                    logits = forward(data.x_train[idx])
                loss = loss_fn(logits, data.y_train[idx], **loss_context(loss_fn, idx, epoch, teacher))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                scheduler.step()
                step_losses[b] = loss.detach()
        rec.train_seconds += sw.seconds - (rec.compile_seconds if epoch == 1 else 0.0)
        rec.samples_seen += spe * min(cfg.batch_size, n_train)
        bad = first_nonfinite(step_losses)
        if bad is not None:
            rec.fail(f"non-finite loss ({step_losses[bad].item()}) at epoch {epoch}, step {bad + 1} of {spe}; "
                     "try a lower --lr, gradient clipping (--set train.grad_clip=1.0) or other loss parameters")
            bar.close()
            return rec.finish(rec.good_state or {}, None, None)
        if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
            with Stopwatch(device) as ew:
                val_acc = _accuracy(model, loss_fn, data.x_val, data.y_val, amp)
                test_acc = _accuracy(model, loss_fn, data.x_test, data.y_test, amp)
            rec.eval_seconds += ew.seconds
            train_loss = step_losses.mean().item()
            rec.record_epoch(epoch, train_loss, val_acc, test_acc, optimizer.param_groups[0]["lr"])
            rec.good_state = _state(model, loss_fn, clone=True)
            bar.set_postfix(loss=f"{train_loss:.4f}", val=f"{val_acc:.3f}")
        bar.update(1)
    bar.close()

    metrics, logits = finalize_metrics(model, loss_fn, data, bundle, amp)
    return rec.finish(_state(model, loss_fn), logits, metrics)


def _state(model, loss_fn, clone: bool = False) -> dict[str, torch.Tensor]:
    out = {f"model.{k}": v for k, v in model.state_dict().items()}
    out.update({f"loss.{k}": v for k, v in loss_fn.state_dict().items()})
    if clone:
        out = {k: v.detach().to("cpu", copy=True) for k, v in out.items()}
    return out


@torch.no_grad()
def _accuracy(model, loss_fn, x, y, amp) -> float:
    if x.shape[0] == 0:
        return float("nan")
    logits = predict_logits(model, loss_fn, x, amp_dtype=amp)
    return (logits.argmax(1) == y.cpu()).float().mean().item()


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
            rec.compile_seconds += time.perf_counter() - t0
            return out
        return compiled(x)

    return forward


def _progress_bar(total: int, desc: str, enabled: bool):
    import sys

    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="epoch", leave=False, file=sys.stderr,
                disable=not (enabled and sys.stderr.isatty()))
