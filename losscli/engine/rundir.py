"""Run directory layout and writing. Every file is written atomically (temp + rename).

    RUN_DIR/config.yaml     fully resolved config (reproducible)
    RUN_DIR/metrics.jsonl   one JSON line per epoch, appended and flushed as training goes
    RUN_DIR/model.pt        state_dict (torch.load(..., weights_only=True))
    RUN_DIR/logits.pt       {val_logits, val_labels, test_logits, test_labels}
    RUN_DIR/report.yaml     schema losscli/run/v1; written last: its presence marks a finished run
    RUN_DIR/report.md       the same for people
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from losscli.errors import UsageError
from losscli.io import atomic_torch_save, atomic_write_text, write_yaml

REPORT = "report.yaml"


def read_report(run_dir: Path) -> dict | None:
    path = Path(run_dir) / REPORT
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        return None  # a torn file cannot exist (atomic writes), but a hand-edited one can
    return data if isinstance(data, dict) else None


def prepare_run_dir(run_dir: Path, overwrite: bool) -> Path:
    run_dir = Path(run_dir)
    report = read_report(run_dir)
    if report is not None and report.get("status") == "ok" and not overwrite:
        raise UsageError(f"{run_dir} already holds a completed run; pass --overwrite to replace it or choose another --out")
    # no mkdir here: the directory appears with the first file (config.yaml), so input that
    # fails while data or model are built leaves no empty run directory behind
    for stale in ("metrics.jsonl", REPORT, "report.md"):
        (run_dir / stale).unlink(missing_ok=True)
    return run_dir


def write_config(run_dir: Path, resolved: dict) -> None:
    write_yaml(Path(run_dir) / "config.yaml", resolved)


def append_metrics(run_dir: Path, record: dict) -> None:
    with open(Path(run_dir) / "metrics.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, allow_nan=True) + "\n")
        fh.flush()


def save_model(run_dir: Path, state_dict: dict) -> None:
    atomic_torch_save({k: v.detach().cpu() for k, v in state_dict.items()}, Path(run_dir) / "model.pt")


def save_logits(run_dir: Path, logits: dict) -> None:
    atomic_torch_save({k: v.detach().cpu() for k, v in logits.items()}, Path(run_dir) / "logits.pt")


def write_report(run_dir: Path, report: dict[str, Any], markdown: str) -> None:
    atomic_write_text(Path(run_dir) / "report.md", markdown)
    write_yaml(Path(run_dir) / REPORT, report)  # last: marks completion
