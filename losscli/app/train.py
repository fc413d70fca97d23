"""``losscli train``: one model, one loss, one dataset -> a run directory.

Every epoch leaves a checkpoint, so ``--resume`` continues a killed or preempted run where it
stopped (``engine/checkpoint.py``); a job script can pass ``--resume`` every time: it starts the
run when there is nothing to continue and returns the report of a run that already finished.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

from losscli.config.schema import Config
from losscli.config.validate import validate
from losscli.errors import Interrupted, UsageError


def default_run_dir(cfg: Config) -> Path:
    spec = cfg.loss_spec()
    data = re.sub(r"[^A-Za-z0-9_.-]+", "_", cfg.dataset.name).strip("_")[:40] or "data"
    # a composite is named by its parts: ce + 0.5*focal -> ce+focal
    name = "+".join(p.name for _, p in spec.parts) if spec.parts else spec.name
    name = re.sub(r"[^A-Za-z0-9_.+-]+", "_", name)  # a plugin's import path: no ':' in directory names
    return Path("runs") / f"{name[:80]}-{data}-s{cfg.seed}"


def run_train(cfg: Config | None, *, out: str | Path | None = None, teacher: str | None = None,
              overwrite: bool = False, resume: bool = False, progress: bool = True,
              log: Callable[[str], None] | None = None, log_every: int | None = None,
              tracker: str | None = None, tracking_uri: str | None = None) -> tuple[dict[str, Any], Path]:
    """Validate ``cfg``, train its one run, write the run directory; returns (report, run dir).

    ``cfg=None`` (with ``resume`` and ``out``) continues the run in ``out`` with its own config.yaml.
    """
    from losscli.app.trackers import TrackerConfig, check_tracker, open_run, prepare
    from losscli.atomic import check_utf8_path, check_writable_dir
    from losscli.engine import rundir
    from losscli.engine.runspec import RunSpec
    from losscli.engine.teacher import check_teacher_used
    from losscli.engine.trainer import train_run
    from losscli.report.run import render_run_markdown

    kind = check_tracker(tracker, tracking_uri)
    if out:
        check_utf8_path(out, "--out")
    if cfg is None:
        if not (resume and out):
            raise UsageError("train needs a configuration (only --resume --out DIR reads the run's own)")
        run_dir = Path(out)
        spec = rundir.read_config(run_dir)
    else:
        validate(cfg, "train")
        spec = RunSpec.from_config(cfg, teacher=teacher)
        check_teacher_used(spec)
        run_dir = Path(out) if out else default_run_dir(cfg)
        rundir.check_out_dir(run_dir, overwrite)
        if resume:
            _same_config(spec, run_dir)
    if resume:
        status = rundir.run_status(run_dir)
        if status == "ok":
            if log:
                log(f"{run_dir} already holds the finished run; nothing to resume (--overwrite trains it again)")
            return rundir.read_report(run_dir), run_dir
        if status == "failed":
            error = (rundir.read_report(run_dir) or {}).get("error")
            raise UsageError(f"the run in {run_dir} failed ({error}); resuming would fail the same way: "
                             "change its options and pass --overwrite")
    if rundir.run_status(run_dir) != "ok" or overwrite:  # a finished run gets its own "already holds" line
        check_writable_dir(run_dir, "--out")
    hooks = None
    if kind:
        tcfg = TrackerConfig(kind, tracking_uri, root=tracking_uri if kind == "tensorboard" else None)
        hooks = open_run(prepare(tcfg, log), spec, run_dir, log)
    try:
        report = train_run(spec, run_dir, overwrite=overwrite, progress=progress, log=log,
                           render_markdown=render_run_markdown, resume=resume, checkpoints=True,
                           log_every=log_every, hooks=hooks)
    except KeyboardInterrupt:  # it exited 130 without a word; the epoch checkpoint is what is kept
        raise Interrupted(f"interrupted; {run_dir} keeps the checkpoint of its last finished epoch: continue with "
                          f"`losscli train --resume --out {run_dir}`") from None
    return report, run_dir


def _same_config(spec, run_dir: Path) -> None:
    """``--resume`` with options: they must describe the run being resumed (one line naming what differs)."""
    from losscli.engine import rundir

    if not (Path(run_dir) / rundir.CONFIG).is_file():
        return
    saved = rundir.read_config(run_dir)
    if saved.key() == spec.key():
        return
    differ = [k for k in _flat(spec.resolved()) if _flat(spec.resolved()).get(k) != _flat(saved.resolved()).get(k)
              and k not in ("device", "threads")]
    raise UsageError(f"{run_dir} holds a run with another configuration (differs in {', '.join(differ[:6]) or 'its key'}); "
                     "resume it with the same options (or only --resume --out DIR), or pass --overwrite")


def _flat(d: dict, prefix: str = "") -> dict:
    out: dict = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
