"""Per-run bookkeeping shared by the single and the batched trainer.

Tracks the epoch history (written to metrics.jsonl as it goes), the best epoch by validation
accuracy (by validation MSE, lowest, on regression data), timing, the last finite weights, and
turns a finished (or failed) run into its report. Trainers talk to it through methods only, so
its fields stay consistent.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Protocol

import torch

from losscli.engine import rundir
from losscli.engine.evaluate import selection_score
from losscli.engine.runspec import RunSpec


class RunHooks(Protocol):
    """Someone following a run as it goes (an experiment tracker): told when it starts (or resumes
    after ``start_epoch`` epochs), after each evaluated epoch (the metrics.jsonl row) and when it ends
    (the report, after it is written). Hooks must not raise: the run is not theirs to stop."""

    def started(self, resolved: dict, start_epoch: int) -> None: ...

    def epoch(self, row: dict) -> None: ...

    def finished(self, report: dict) -> None: ...


#: what to try when a run diverges (a non-finite loss or non-finite outputs)
DIVERGED_ADVICE = "try a lower --lr, gradient clipping (--set train.grad_clip=1.0) or other loss parameters"


class RunRecorder:
    def __init__(self, spec: RunSpec, run_dir: Path | None, env: dict, bundle, model_name: str,
                 render_markdown: Callable[[dict], str] | None = None, hooks: RunHooks | None = None):
        self.spec = spec
        self.run_dir = Path(run_dir) if run_dir is not None else None  # None: in memory only (tuning trials)
        self.env = env
        self.bundle = bundle
        self.model_name = model_name
        self.render_markdown = render_markdown  # the caller's view of a report (None: no report.md)
        self.task = bundle.task if bundle is not None else "classification"
        # the per-epoch selection metric: history rows hold val_<score> / test_<score>
        self.score, self.higher_is_better = selection_score(bundle) if bundle is not None else ("accuracy", True)
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self.failed: str | None = None
        self._train_seconds = 0.0
        self._eval_seconds = 0.0
        self._compile_seconds = 0.0
        self._samples = 0
        self._good_state: dict[str, torch.Tensor] | None = None  # last finite weights (kept on failure)
        self._good_epoch = 0
        self.hooks = hooks

    # -- progress ------------------------------------------------------------------------
    def start(self, start_epoch: int = 0) -> None:
        if self.run_dir is not None:
            rundir.write_config(self.run_dir, self.resolved())
            if start_epoch:  # resumed: metrics.jsonl holds exactly the checkpoint's epochs (a killed run may
                rundir.rewrite_metrics(self.run_dir, self.history)  # have appended one it never checkpointed)
        if self.hooks is not None:
            self.hooks.started(self.resolved(), start_epoch)

    # -- checkpoints (engine/checkpoint.py) ---------------------------------------------------
    def state(self, epoch: int) -> dict[str, Any]:
        """What a resumed run needs to go on recording as if it had never stopped (after ``epoch``)."""
        out: dict[str, Any] = {"history": self.history, "best": self.best, "train_seconds": self._train_seconds,
                               "eval_seconds": self._eval_seconds, "compile_seconds": self._compile_seconds,
                               "samples": self._samples, "good_epoch": self._good_epoch}
        if self._good_state is not None and self._good_epoch != epoch:  # else: the checkpoint's own weights
            out["good_state"] = self._good_state
        return out

    def load_state(self, state: dict[str, Any], epoch: int, current: dict[str, torch.Tensor]) -> None:
        self.history = list(state["history"])
        self.best = state["best"]
        self._train_seconds, self._eval_seconds = float(state["train_seconds"]), float(state["eval_seconds"])
        self._compile_seconds, self._samples = float(state["compile_seconds"]), int(state["samples"])
        self._good_epoch = int(state["good_epoch"])
        if "good_state" in state:
            self._good_state = state["good_state"]
        elif self._good_epoch:
            self._good_state = {k: v.detach().to("cpu", copy=True) for k, v in current.items()}

    def resolved(self) -> dict:
        data = self.spec.resolved()
        data["model"]["resolved_name"] = self.model_name
        return data

    def add_train_time(self, seconds: float, samples: int) -> None:
        self._train_seconds += seconds
        self._samples += samples

    def add_eval_time(self, seconds: float) -> None:
        self._eval_seconds += seconds

    def add_compile_time(self, seconds: float) -> None:
        self._compile_seconds += seconds

    @property
    def compile_seconds(self) -> float:
        return self._compile_seconds

    def check_finite(self, step_losses: torch.Tensor, epoch: int) -> bool:
        """False (and the run marked failed, with where and what to try) if a step's loss was not finite."""
        losses = step_losses.detach().float().cpu()
        bad = (~torch.isfinite(losses)).nonzero()
        if len(bad) == 0:
            return True
        step = int(bad[0, 0])
        self.failed = (f"non-finite loss ({float(losses[step])}) at epoch {epoch}, step {step + 1} of {len(losses)}; "
                       + DIVERGED_ADVICE)
        return False

    def check_outputs(self, epoch: int, scores: dict[str, tuple[float, int]]) -> bool:
        """False (and the run marked failed) if a non-empty split's score is NaN: the model's outputs were
        not finite, the weights having diverged in the epoch's last steps (every step's loss was finite).
        ``scores`` maps a split to ``(score, rows)``; an empty split's NaN score is expected."""
        bad = [split for split, (score, rows) in scores.items() if rows and score != score]
        if not bad:
            return True
        self.failed = (f"the model's outputs became non-finite (NaN or inf) on the {bad[0]} split after epoch {epoch}; "
                       + DIVERGED_ADVICE)
        return False

    def record_epoch(self, epoch: int, train_loss: float, val_score: float, test_score: float, lr: float,
                     state: dict[str, torch.Tensor]) -> None:
        """One epoch's numbers (appended to metrics.jsonl) and the weights after it (CPU copies).
        The scores are the selection metric's (accuracy, or MSE on regression data)."""
        val_key, test_key = f"val_{self.score}", f"test_{self.score}"
        row = {
            "epoch": epoch, "train_loss": train_loss, val_key: val_score, test_key: test_score,
            "lr": lr, "train_seconds": round(self._train_seconds, 4),
        }
        self.history.append(row)
        if self.run_dir is not None:
            rundir.append_metrics(self.run_dir, row)
        if self.hooks is not None:
            self.hooks.epoch(row)
        best = None if self.best is None else self.best[val_key]
        if best is None or (val_score > best if self.higher_is_better else val_score < best):
            self.best = {"epoch": epoch, val_key: val_score, test_key: test_score}
        self._good_state = {k: v.detach().to("cpu", copy=True) for k, v in state.items()}
        self._good_epoch = epoch

    def fail(self, message: str) -> None:
        self.failed = message

    # -- the end ---------------------------------------------------------------------------
    def finish_failed(self) -> dict[str, Any]:
        """Write the report of a failed run, keeping the last finite weights."""
        return self.finish(self._good_state or {}, None, None)

    def finish(self, model_state: dict[str, torch.Tensor], logits: dict[str, torch.Tensor] | None,
               metrics: dict[str, Any] | None) -> dict[str, Any]:
        """Write model, logits and the report (last). Returns the report dict."""
        if self.run_dir is not None and model_state:
            rundir.save_model(self.run_dir, model_state)
        if self.run_dir is not None and logits:
            rundir.save_logits(self.run_dir, logits)
        last = self.history[-1] if self.history else None
        metrics = dict(metrics or {})
        metrics["best_epoch"] = self.best
        test_key = f"test_{self.score}"
        metrics["last_epoch"] = {"epoch": last["epoch"], test_key: last[test_key]} if last else None
        report = {
            "schema": rundir.RUN_SCHEMA,
            "status": "failed" if self.failed else "ok",
            "error": self.failed,
            "task": self.task,
            "run_key": self.spec.key(),
            "loss": self.spec.loss.to_dict(),
            "seed": self.spec.seed,
            "setting": self.spec.setting(),
            "config": self.resolved(),
            "data": self.bundle.info if self.bundle is not None else None,
            "env": self.env,
            "metrics": metrics,
            "timing": {
                "train_seconds": round(self._train_seconds, 4),
                "eval_seconds": round(self._eval_seconds, 4),
                "compile_seconds": round(self._compile_seconds, 4),
                "samples_per_second": (self._samples / self._train_seconds) if self._train_seconds > 0 else None,
            },
            "history": self.history,
            "run_dir": str(self.run_dir.resolve()) if self.run_dir is not None else None,
        }
        if self.run_dir is not None:
            rundir.write_report(self.run_dir, report, self.render_markdown(report) if self.render_markdown else None)
        if self.hooks is not None:
            self.hooks.finished(report)
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
