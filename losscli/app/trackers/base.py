"""What the trackers share: their plain-data configuration and the report's numbers as flat values."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TrackerConfig:
    kind: str  # tensorboard | mlflow
    uri: str | None = None  # mlflow: tracking URI; tensorboard: log directory root
    experiment: str = "losscli"  # mlflow experiment name
    experiment_id: str | None = None  # filled by prepare() in the driver (one creation, no races)
    tags: dict[str, str] = field(default_factory=dict)  # on every run (compare: the compare directory)
    root: str | None = None  # tensorboard: where runs' event directories go (None: RUN_DIR/tensorboard)


def flat_params(resolved: dict, prefix: str = "") -> dict[str, str]:
    """``{"train.lr": "0.01", ...}``: a nested config as flat string parameters."""
    out: dict[str, str] = {}
    for k, v in resolved.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flat_params(v, key + "."))
        else:
            out[key] = str(v)[:500]
    return out


def final_metrics(report: dict) -> dict[str, float]:
    """Scalar test/validation metrics of a finished run: ``test_accuracy``, ``val_nll``..."""
    out: dict[str, float] = {}
    for split in ("test", "val"):
        for k, v in ((report.get("metrics") or {}).get(split) or {}).items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v:
                out[f"{split}_{k}"] = float(v)
    return out
