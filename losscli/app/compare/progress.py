"""Progress of a grid on stderr: done / running / pending / failed counts and an ETA.

On a terminal it is one self-updating line (tqdm); elsewhere (nohup, CI, Ray workers' logs)
one plain line per finished task, so logs stay readable. Tuning trials use it too (``unit="trial"``).
"""

from __future__ import annotations

import sys
import time
from typing import Callable


class GridProgress:
    def __init__(self, total_runs: int, running: int, enabled: bool, log: Callable[[str], None] | None,
                 unit: str = "run"):
        self.total = total_runs
        self.done = 0
        self.failed = 0
        self.running = running  # runs in flight at most (workers x runs per task)
        self.log = log if enabled else None
        self.t0 = time.perf_counter()
        self._bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total_runs, desc=unit + "s", unit=unit, file=sys.stderr, leave=False)

    def finished(self, n_ok: int, n_failed: int, what: str, error: str | None = None) -> None:
        self.done += n_ok
        self.failed += n_failed
        if self._bar is not None:
            self._bar.update(n_ok + n_failed)
            self._bar.set_postfix_str(self.counts())
        elif self.log:
            self.log(f"  {what}: {self.counts()}" + (f" ({error})" if error else ""))

    def counts(self) -> str:
        finished = self.done + self.failed
        left = max(0, self.total - finished)
        running = min(self.running, left)
        text = f"{self.done} done, {running} running, {left - running} pending, {self.failed} failed"
        elapsed = time.perf_counter() - self.t0
        if finished and left:
            text += f", ETA {_duration(elapsed / finished * left)}"
        return text

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
