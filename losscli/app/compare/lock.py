"""An exclusive lock on a compare directory, so two processes never train the same runs.

``flock`` on ``OUT/.lock``: the kernel releases it when the holder exits, even after ``kill -9``,
so a stale lock file never blocks anyone. The file records who holds it, for the message.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Callable

from losscli.errors import UsageError

LOCK_NAME = ".lock"


class CompareLock:
    def __init__(self, out_dir: Path, wait: bool = False, log: Callable[[str], None] | None = None):
        self.path = Path(out_dir) / LOCK_NAME
        self.wait = wait
        self.log = log
        self._fh = None

    def __enter__(self) -> "CompareLock":
        try:
            import fcntl
        except ImportError:  # pragma: no cover - no flock (Windows): run unlocked
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fh = open(self.path, "a+", encoding="utf-8")
        except IsADirectoryError:  # was IsADirectoryError text, exit 1
            raise UsageError(f"{self.path} is a directory where compare keeps its lock file; remove it "
                             "(or choose another --out)") from None
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(self.path)
            if not self.wait:
                fh.close()
                raise UsageError(f"{self.path.parent} is in use by {holder}; wait for it to finish, pass --wait, "
                                 "or choose another --out") from None
            if self.log:
                self.log(f"waiting for {holder} to finish with {self.path.parent} ...")
            fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "started": time.strftime("%Y-%m-%d %H:%M:%S")}))
        fh.flush()
        self._fh = fh
        return self

    def __exit__(self, *exc) -> None:
        if self._fh is not None:
            import fcntl

            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        return f"process {info['pid']} on {info['host']} (started {info['started']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another losscli process"
