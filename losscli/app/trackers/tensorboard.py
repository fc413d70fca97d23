"""TensorBoard event files (``torch.utils.tensorboard``): one event directory per run.

Scalars per epoch under ``train/`` (loss, learning rate) and ``val/``, ``test/`` (the selection
score); the final metrics under ``final/``; the resolved config, the tags and the final report
(without its per-epoch history, which the scalars already hold) as text. A resumed run writes to
the same directory with ``purge_step``: events after its checkpoint are dropped, not duplicated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from losscli.app.trackers.base import final_metrics


class TensorBoardRun:
    def __init__(self, log_dir: Path, tags: dict[str, str], run_dir: Path):
        self.log_dir, self.tags, self.run_dir = Path(log_dir), tags, Path(run_dir)
        self.writer = None

    def started(self, resolved: dict, start_epoch: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        from losscli.serialize import dump_yaml

        self.writer = SummaryWriter(log_dir=str(self.log_dir), purge_step=start_epoch + 1 if start_epoch else None)
        if not start_epoch:
            self.writer.add_text("config", _code(dump_yaml(resolved)), 0)
            self.writer.add_text("tags", "\n\n".join(f"**{k}**: {v}" for k, v in self.tags.items()), 0)
        self.writer.flush()

    def epoch(self, row: dict) -> None:
        step = int(row["epoch"])
        for key, value in row.items():
            if key == "epoch" or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            split, _, name = key.partition("_")
            tag = f"{split}/{name}" if split in ("val", "test") else f"train/{key}"
            self.writer.add_scalar(tag, float(value), step)
        self.writer.flush()

    def finished(self, report: dict) -> None:
        from losscli.serialize import dump_yaml

        step = len(report.get("history") or []) and int(report["history"][-1]["epoch"])
        for key, value in final_metrics(report).items():
            self.writer.add_scalar(f"final/{key}", value, step)
        summary = {k: v for k, v in report.items() if k not in ("history", "config")}
        self.writer.add_text("report", _code(dump_yaml(summary)), step)
        self.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _code(text: str) -> str:
    # TensorBoard renders text as markdown: indent by four spaces so YAML keeps its layout
    return "\n".join("    " + line for line in text.splitlines())


def scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """``{tag: [(step, value), ...]}`` read back from a run's event files (tests, debugging)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    out: dict[str, Any] = {}
    for tag in acc.Tags().get("scalars", []):
        out[tag] = [(e.step, e.value) for e in acc.Scalars(tag)]
    return out
