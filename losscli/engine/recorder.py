"""Per-run bookkeeping shared by the single and batched trainers.

Tracks the epoch history (written to metrics.jsonl as it goes), the best epoch by
validation accuracy, timing, and turns a finished (or failed) run into its report.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from losscli.engine import rundir
from losscli.engine.spec import RunSpec

SCHEMA = "losscli/run/v1"


class RunRecorder:
    def __init__(self, spec: RunSpec, run_dir: Path, env: dict, bundle, model_name: str):
        self.spec = spec
        self.run_dir = Path(run_dir)
        self.env = env
        self.bundle = bundle
        self.model_name = model_name
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self.train_seconds = 0.0
        self.eval_seconds = 0.0
        self.compile_seconds = 0.0
        self.samples_seen = 0
        self.failed: str | None = None
        self.good_state: dict[str, torch.Tensor] | None = None  # last finite weights (for failures)

    def start(self) -> None:
        rundir.write_config(self.run_dir, self.resolved())

    def resolved(self) -> dict:
        data = self.spec.resolved()
        data["model"]["resolved_name"] = self.model_name
        return data

    def record_epoch(self, epoch: int, train_loss: float, val_acc: float, test_acc: float, lr: float) -> None:
        row = {
            "epoch": epoch, "train_loss": train_loss, "val_accuracy": val_acc, "test_accuracy": test_acc,
            "lr": lr, "train_seconds": round(self.train_seconds, 4),
        }
        self.history.append(row)
        rundir.append_metrics(self.run_dir, row)
        if self.best is None or val_acc > self.best["val_accuracy"]:
            self.best = {"epoch": epoch, "val_accuracy": val_acc, "test_accuracy": test_acc}

    def fail(self, message: str) -> None:
        self.failed = message

    def finish(self, model_state: dict[str, torch.Tensor], logits: dict[str, torch.Tensor] | None,
               metrics: dict[str, Any] | None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write model, logits and the report (last). Returns the report dict."""
        from losscli.report.run import render_run_markdown

        if model_state:
            rundir.save_model(self.run_dir, model_state)
        if logits:
            rundir.save_logits(self.run_dir, logits)
        last = self.history[-1] if self.history else None
        metrics = dict(metrics or {})
        metrics["best_epoch"] = self.best
        metrics["last_epoch"] = {"epoch": last["epoch"], "test_accuracy": last["test_accuracy"]} if last else None
        report = {
            "schema": SCHEMA,
            "status": "failed" if self.failed else "ok",
            "error": self.failed,
            "run_key": self.spec.key(),
            "loss": {"name": self.spec.loss, "params": dict(self.spec.loss_params), "label": self.spec.loss_label},
            "seed": self.spec.seed,
            "setting": self.spec.setting(),
            "config": self.resolved(),
            "data": self.bundle.info if self.bundle is not None else None,
            "env": self.env,
            "metrics": metrics,
            "timing": {
                "train_seconds": round(self.train_seconds, 4),
                "eval_seconds": round(self.eval_seconds, 4),
                "compile_seconds": round(self.compile_seconds, 4),
                "samples_per_second": (self.samples_seen / self.train_seconds) if self.train_seconds > 0 else None,
            },
            "history": self.history,
            "run_dir": str(self.run_dir.resolve()),
        }
        if extra:
            report.update(extra)
        rundir.write_report(self.run_dir, report, render_run_markdown(report))
        return report


class Stopwatch:
    """Wall time of a block, synchronising CUDA so queued kernels are counted."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds = 0.0

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.seconds = time.perf_counter() - self._t0
        return False


def first_nonfinite(step_losses: torch.Tensor) -> int | None:
    bad = ~torch.isfinite(step_losses.detach().float().cpu())
    if bool(bad.any()):
        return int(bad.nonzero()[0, 0])
    return None

