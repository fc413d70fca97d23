"""The compare grid: losses x noise x imbalance x seeds as typed, canonical run specs.

Also the one owner of baseline resolution and of the grid's identity (which names the default
compare directory, so a custom grid never writes into another grid's folder).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from losscli.config.schema import Config
from losscli.engine.runspec import RunSpec
from losscli.errors import UsageError


#: runs in one compare grid: beyond this it is weeks of training and its report a table nobody reads
#: (two million runs spent minutes hashing their keys before the first one started)
MAX_GRID_RUNS = 100_000


def check_grid_size(cfg: Config) -> int:
    """The number of runs in ``cfg``'s grid; a grid over :data:`MAX_GRID_RUNS` is a UsageError."""
    sizes = {"losses": len(cfg.loss_specs()), "noise": len(cfg.noise_settings()),
             "imbalance": len(cfg.imbalance_settings()), "seeds": len(cfg.seed_list())}
    n = sizes["losses"] * sizes["noise"] * sizes["imbalance"] * sizes["seeds"]
    if n > MAX_GRID_RUNS:
        parts = " x ".join(f"{v} {k}" for k, v in sizes.items())
        raise UsageError(f"the compare grid has {n} runs ({parts}); at most {MAX_GRID_RUNS}: fewer seeds, "
                         "losses or settings, or split it into several compares")
    return n


def expand_grid(cfg: Config, tuned: dict | None = None) -> list[RunSpec]:
    """losses x noise x imbalance x seeds, settings outermost (equal configurations once).

    ``tuned`` maps ``(loss label, noise, imbalance)`` to the tuned ``(LossSpec, lr)`` of that loss in
    that setting (from ``compare --tune``); those runs use them, with the configured seeds."""
    from dataclasses import replace

    check_grid_size(cfg)
    specs = []
    for imbalance in cfg.imbalance_settings():
        for noise in cfg.noise_settings():
            for loss in cfg.loss_specs():
                chosen, lr = (tuned or {}).get((loss.label, str(noise), str(imbalance)), (loss, None))
                for seed in cfg.seed_list():
                    spec = RunSpec.from_config(cfg, chosen, seed=seed, noise=noise, imbalance=imbalance)
                    specs.append(spec if lr is None else replace(spec, train=replace(spec.train, lr=lr)))
    return specs


def row_labels(cfg: Config) -> list[str]:
    """The report row of each run of :func:`expand_grid`: the loss as listed (tuning may change its parameters)."""
    n = len(cfg.seed_list())
    return [loss.label for _ in cfg.imbalance_settings() for _ in cfg.noise_settings()
            for loss in cfg.loss_specs() for _ in range(n)]


def resolve_baseline(cfg: Config) -> str:
    """The baseline's canonical label: ``baseline`` (a spec, or a name matching one listed loss),
    else the first listed loss."""
    labels = [s.label for s in cfg.loss_specs()]
    if cfg.baseline is None:
        return labels[0]
    from losscli.losses.resolve import resolve_loss

    wanted = resolve_loss(cfg.baseline, for_engine=True)
    if wanted.label in labels:
        return wanted.label
    same_name = [s.label for s in cfg.loss_specs() if s.name == wanted.name]
    if len(same_name) == 1 and "(" not in str(cfg.baseline):
        return same_name[0]
    raise UsageError(f"baseline {cfg.baseline!r} is not among the compared losses ({', '.join(labels)}); "
                     "--baseline must name one of them")


def grid_key(cfg: Config) -> str:
    """Hash of everything that defines the grid's results (not how it runs: jobs, executor, device)."""
    data = {
        "losses": [s.label for s in cfg.loss_specs()], "seeds": cfg.seed_list(),
        "noise": [str(n) for n in cfg.noise_settings()], "imbalance": [str(i) for i in cfg.imbalance_settings()],
        "tune": [cfg.tune.trials, cfg.tune.pruner, cfg.tune.lr_factor, cfg.tune.sampler_seed] if cfg.tune.trials else None,
        "run": {k: v for k, v in RunSpec.from_config(cfg, cfg.loss_specs()[0], seed=0,
                                                    noise=cfg.noise_settings()[0],
                                                    imbalance=cfg.imbalance_settings()[0]).resolved().items()
                if k not in ("loss", "seed", "device", "threads")},
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:8]


def default_out_dir(preset: str, cfg: Config, preset_cfg: Config) -> Path:
    """``compare/<preset>`` for the preset's own grid; ``compare/<preset>-<grid hash>`` for any other,
    so a custom grid never overwrites the preset's report and plots."""
    name = Path(preset).stem
    if grid_key(cfg) == grid_key(preset_cfg):
        return Path("compare") / name
    return Path("compare") / f"{name}-{grid_key(cfg)}"
