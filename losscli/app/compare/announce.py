"""Say what a compare will run before its first run: the resolved configuration on stderr, and
recorded in ``OUT/config.yaml``, so a wrong dataset, model or budget is seen at once, not after
hours (a preset's model on another dataset used to fail every run without saying why)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from losscli.config.schema import Config
from losscli.engine.runspec import RunSpec

CONFIG_FILE = "config.yaml"
SCHEMA = "losscli/compare-config/v1"


def announce(cfg: Config, out_dir: Path, specs: list[RunSpec], log: Callable[[str], None] | None,
             cache: dict | None = None) -> dict[str, Any]:
    """Load the data once (a dataset that cannot load is one line here), write ``OUT/config.yaml``
    and log the summary; returns what was recorded."""
    from losscli.atomic import write_yaml
    from losscli.engine.build import load_base_data, model_name

    first = specs[0]
    bundle = load_base_data(first, cache)
    model = model_name(first, bundle)
    sizes = bundle.sizes()
    norm = (bundle.info.get("normalization") or {}).get("method", "none")
    data = {"name": bundle.name, "kind": bundle.kind, "task": bundle.task,
            "classes": None if bundle.is_regression else bundle.num_classes, "sizes": sizes,
            "normalization": norm, "source": bundle.info.get("source"), "warnings": bundle.info.get("warnings") or []}
    t = cfg.train
    record = {"schema": SCHEMA, "data": data, "model": {"name": cfg.model.name, "resolved": model},
              "runs": len(specs), "config": cfg.to_dict()}
    write_yaml(Path(out_dir) / CONFIG_FILE, record)
    if log:
        what = "regression" if bundle.is_regression else f"{bundle.num_classes} classes"
        seeds = cfg.seed_list()
        log(f"configuration (recorded in {Path(out_dir) / CONFIG_FILE}):")
        log(f"  data      {bundle.name}: {bundle.kind}, {what}, {sizes['train']}/{sizes['val']}/{sizes['test']} "
            f"train/val/test, inputs {'standardised' if norm == 'standardize' else 'as stored'}")
        log(f"  model     {model}" + (" (auto, from the data kind)" if cfg.model.name == "auto" else ""))
        log(f"  training  {t.epochs} epochs, batch {t.batch_size}, {t.optimizer} lr {t.lr:g} ({t.schedule}), "
            f"device {cfg.device}")
        log(f"  grid      losses {', '.join(s.label for s in cfg.loss_specs())} x noise "
            f"{', '.join(map(str, cfg.noise_settings()))} x imbalance {', '.join(map(str, cfg.imbalance_settings()))} "
            f"x seeds {_seeds(seeds)} = {len(specs)} runs")
        for warning in data["warnings"]:  # once here, not once per run
            log(f"warning: {warning}")
    return record


def _seeds(seeds: list[int]) -> str:
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}-{seeds[-1]}"
    return ",".join(map(str, seeds))
