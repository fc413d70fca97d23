"""Linux /proc helpers for the Ray tests: listening sockets, a process's descendants, Ray's task workers;
and a child process that takes Ctrl-C whatever the suite was started under."""

from __future__ import annotations

import os
import signal
from pathlib import Path


def listening() -> dict[str, str]:
    """Listening TCP sockets: inode -> local address (hex, as /proc/net/tcp{,6} spell it)."""
    found = {}
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                found[fields[9]] = fields[1].split(":")[0]
    return found


def sockets_of(pids: list[int]) -> set[str]:
    """Inodes of the sockets these processes hold open."""
    inodes = set()
    for pid in pids:
        try:
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue
        inodes.update(link[8:-1] for link in links if link.startswith("socket:["))
    return inodes


# 127.0.0.1, ::1 and ::ffff:127.0.0.1 as /proc/net/tcp{,6} spell them
LOOPBACK = {"0100007F", "00000000000000000000000001000000", "0000000000000000FFFF00000100007F"}


def task_workers() -> list[int]:
    """Ray worker processes executing our remote function right now (Ray sets the process title)."""
    pids = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if (entry / "cmdline").read_bytes().split(b"\0")[0] == b"ray::_run_remote":
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def answers_ctrl_c() -> None:
    """``preexec_fn`` for a child the test interrupts with SIGINT: restore its default action. An
    ignored signal is inherited across exec, and a suite started in the background of a
    non-interactive shell (``nohup make test &``, a CI wrapper) runs with SIGINT ignored; Python
    then installs no KeyboardInterrupt handler and the child runs to the end as if never interrupted."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
