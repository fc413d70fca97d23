"""Experiment trackers people already use: ``--tracker tensorboard`` and ``--tracker mlflow``.

Each training run becomes one tracker run: its resolved configuration as parameters, its
per-epoch metrics (train loss, validation and test score, learning rate) as they come, the final
test and validation metrics, and the final report as an artifact (MLflow) or text (TensorBoard).
Both are optional extras (``pip install 'losscli[tensorboard]'`` / ``'losscli[mlflow]'``); asking
for a missing one is one line and exit 2, before anything trains.

:class:`TrackerConfig` is plain data: it travels with compare's tasks to worker processes (and
Ray), where :func:`open_run` turns it into the engine's ``RunHooks`` for one run. A tracker that
fails mid-run warns once and stops tracking that run; training goes on (the run directory stays
the record).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any, Callable

from losscli.app.trackers.base import TrackerConfig, final_metrics, flat_params  # noqa: F401
from losscli.errors import UsageError

TRACKERS = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow")}  # name -> (module, extra)


def check_tracker(kind: str | None, uri: str | None = None) -> str | None:
    """The tracker's canonical name, or None; one line (exit 2) for an unknown or missing one, or for a
    tracking ``uri`` without a tracker (it was ignored: nothing was logged where the user looked)."""
    if kind is None:
        if uri is not None:
            raise UsageError(f"--tracking-uri {uri} without --tracker: nothing would be logged there; add "
                             "--tracker tensorboard or --tracker mlflow")
        return None
    name = kind.strip().lower()
    if name not in TRACKERS:
        raise UsageError(f"unknown tracker {kind!r}; use tensorboard or mlflow")
    module, extra = TRACKERS[name]
    if importlib.util.find_spec(module) is None:
        raise UsageError(f"--tracker {name} needs {module}, which is not installed: pip install 'losscli[{extra}]'")
    return name


def prepare(cfg: TrackerConfig, log: Callable[[str], None] | None = None) -> TrackerConfig:
    """Resolve defaults and create what runs share (the MLflow experiment), once, in the driver."""
    if cfg.kind == "mlflow":
        from losscli.app.trackers.mlflow import prepare_mlflow

        return prepare_mlflow(cfg, log)
    return cfg


def open_run(cfg: TrackerConfig | None, spec: Any, run_dir: Path, log: Callable[[str], None] | None = None,
             tags: dict[str, str] | None = None):
    """The ``RunHooks`` following one run (None without a tracker)."""
    if cfg is None:
        return None
    all_tags = {**cfg.tags, **run_tags(spec, run_dir), **(tags or {})}
    if cfg.kind == "tensorboard":
        from losscli.app.trackers.tensorboard import TensorBoardRun

        root = Path(cfg.root) if cfg.root else None
        log_dir = root / run_name(spec) if root else Path(run_dir) / "tensorboard"
        return Guarded(TensorBoardRun(log_dir, all_tags, run_dir), "tensorboard", log)
    from losscli.app.trackers.mlflow import MlflowRun

    return Guarded(MlflowRun(cfg, run_name(spec), all_tags, run_dir), "mlflow", log)


def run_tags(spec: Any, run_dir: Path) -> dict[str, str]:
    s = spec.setting()
    return {"losscli.loss": spec.loss_label, "losscli.seed": str(spec.seed), "losscli.dataset": s["dataset"],
            "losscli.noise": s["noise"], "losscli.imbalance": s["imbalance"], "losscli.run_key": spec.key(),
            "losscli.run_dir": str(Path(run_dir).resolve())}


def run_name(spec: Any) -> str:
    """A readable, unique name: ``focal_gamma_2-sym_0.4-none-s1-3fa2c1``."""
    def slug(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9.]+", "_", text).strip("_")[:40] or "x"

    noise = spec.noise
    noise_text = f"file_{Path(noise.source).stem}" if getattr(noise, "kind", "") == "file" else str(noise)
    return f"{slug(spec.loss_label)}-{slug(noise_text)}-{slug(str(spec.imbalance))}-s{spec.seed}-{spec.key()[:6]}"


class Guarded:
    """A tracker run whose failures never stop training: the first error is reported (one line)
    and the rest of the run is not tracked."""

    def __init__(self, inner: Any, name: str, log: Callable[[str], None] | None):
        self.inner, self.name, self.log = inner, name, log
        self.dead = False

    def _call(self, method: str, *args: Any) -> None:
        if self.dead:
            return
        try:
            getattr(self.inner, method)(*args)
        except Exception as exc:  # noqa: BLE001 - tracking is a side channel: report it, keep training
            self.dead = True
            message = f"warning: {self.name} tracking stopped ({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); training goes on"
            (self.log or _stderr)(message)
            try:
                self.inner.close()
            except Exception:  # noqa: BLE001
                pass

    def started(self, resolved: dict, start_epoch: int) -> None:
        self._call("started", resolved, start_epoch)

    def epoch(self, row: dict) -> None:
        self._call("epoch", row)

    def finished(self, report: dict) -> None:
        self._call("finished", report)


def _stderr(message: str) -> None:
    import sys

    print(message, file=sys.stderr, flush=True)
