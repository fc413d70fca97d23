"""``losscli train``: one model, one loss, one dataset -> a run directory."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

from losscli.config.schema import Config
from losscli.config.validate import validate


def default_run_dir(cfg: Config) -> Path:
    spec = cfg.loss_spec()
    data = re.sub(r"[^A-Za-z0-9_.-]+", "_", cfg.dataset.name).strip("_")[:40] or "data"
    # a composite is named by its parts: ce + 0.5*focal -> ce+focal
    name = "+".join(p.name for _, p in spec.parts) if spec.parts else spec.name
    name = re.sub(r"[^A-Za-z0-9_.+-]+", "_", name)  # a plugin's import path: no ':' in directory names
    return Path("runs") / f"{name[:80]}-{data}-s{cfg.seed}"


def run_train(cfg: Config, *, out: str | Path | None = None, teacher: str | None = None, overwrite: bool = False,
              progress: bool = True, log: Callable[[str], None] | None = None) -> tuple[dict[str, Any], Path]:
    """Validate ``cfg``, train its one run, write the run directory; returns (report, run dir)."""
    from losscli.report.run import render_run_markdown
    from losscli.engine.runspec import RunSpec
    from losscli.engine.trainer import train_run

    validate(cfg, "train")
    spec = RunSpec.from_config(cfg, teacher=teacher)
    run_dir = Path(out) if out else default_run_dir(cfg)
    report = train_run(spec, run_dir, overwrite=overwrite, progress=progress, log=log,
                       render_markdown=render_run_markdown)
    return report, run_dir
