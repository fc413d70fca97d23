"""A run's progress on stderr: a self-clearing bar on a terminal, plain lines anywhere else.

A tqdm bar redrawn into a file (nohup, CI, a Ray worker's log) is either invisible (it is disabled
off a terminal) or a wall of carriage returns; a log needs lines it can be followed by. So off a
terminal (or whenever ``log_every`` is given) every ``log_every``-th epoch (default 1) and the last
one print one line: ``ce: epoch 5/60  loss 0.4321  val_accuracy 0.9120  lr 0.0093  12.3s``.
"""

from __future__ import annotations

import sys
import time
from typing import Callable


class EpochProgress:
    def __init__(self, total: int, label: str, enabled: bool, log_every: int | None = None,
                 log: Callable[[str], None] | None = None, start: int = 0, score: str = "accuracy"):
        self.total, self.label, self.score = total, label, score
        self.every = log_every
        self.log = log or _stderr
        self.t0 = time.perf_counter()
        self._bar = None
        self._lines = False
        if not enabled:
            return
        if log_every is None and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=start, desc=label, unit="epoch", leave=False, file=sys.stderr)
        else:
            self._lines = True
            self.every = log_every or 1

    def epoch(self, epoch: int, train_loss: float | None = None, val: float | None = None, lr: float | None = None) -> None:
        """Epoch ``epoch`` (1-based) is done; ``val`` is the validation score when it was evaluated."""
        if self._bar is not None:
            if train_loss is not None and val is not None:
                self._bar.set_postfix(loss=f"{train_loss:.4f}", val=f"{val:.3f}")
            self._bar.update(1)
        elif self._lines and (epoch % self.every == 0 or epoch == self.total):
            parts = [f"{self.label}: epoch {epoch}/{self.total}"]
            if train_loss is not None:
                parts.append(f"loss {train_loss:.4f}")
            if val is not None:
                parts.append(f"val_{self.score} {val:.4f}")
            if lr is not None:
                parts.append(f"lr {lr:.3g}")
            parts.append(f"{time.perf_counter() - self.t0:.1f}s")
            self.log("  ".join(parts))

    def note(self, message: str) -> None:
        """A line that must not be lost in the bar (resuming, stopping)."""
        if self._bar is not None:
            self._bar.write(message, file=sys.stderr)
        elif self._lines:
            self.log(message)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
