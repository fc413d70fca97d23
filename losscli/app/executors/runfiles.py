"""A run directory as data: how runs trained on another machine come back without a shared filesystem.

A remote worker trains into a private temporary directory, :func:`pack_run` reads every file
there into ``{relative path: bytes}``, and the driver's :func:`unpack_run` writes them into the
real compare directory: each file atomically, ``report.yaml`` (the mark of a finished run) last,
and never over a run that is already finished there.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from losscli.engine.rundir import METRICS, REPORT, REPORT_MD, run_status

#: files a previous attempt may have left in the real directory that the new attempt replaces
#: or, when it did not write them (a failed run writes no metrics), must not survive it
_STALE = (REPORT, REPORT_MD, METRICS, "checkpoint.pt")


def pack_run(run_dir: Path) -> dict[str, bytes]:
    """Every regular file under ``run_dir`` as ``{posix relative path: content}`` (empty when absent)."""
    run_dir = Path(run_dir)
    files: dict[str, bytes] = {}
    if not run_dir.is_dir():
        return files
    for path in sorted(run_dir.rglob("*")):
        # skip the atomic writers' in-progress temp files (".name.xxxx.tmp"): never part of a run
        if path.is_file() and not path.is_symlink() and not path.name.startswith("."):
            files[path.relative_to(run_dir).as_posix()] = path.read_bytes()
    return files


def unpack_run(run_dir: Path, files: dict[str, bytes]) -> bool:
    """Write a run shipped by :func:`pack_run` into ``run_dir``. Returns False, writing nothing, when
    ``run_dir`` already holds a finished run (a retried task never overwrites a result) or when
    nothing was shipped. OSError (disk full, permissions) propagates: the run stays pending."""
    from losscli.atomic import atomic_write_bytes

    run_dir = Path(run_dir)
    if not files or run_status(run_dir, key=run_dir.name) == "ok":  # runs/<key>
        return False
    for name in files:
        _check_name(name)
    # first withdraw the old report (a failed run being retried): until the new one lands last,
    # the directory reads as pending, so a crash half-way leaves a run that a rerun redoes
    (run_dir / REPORT).unlink(missing_ok=True)
    for name in _STALE:
        if name not in files:
            (run_dir / name).unlink(missing_ok=True)
    for name, data in files.items():
        if name != REPORT:
            atomic_write_bytes(run_dir / name, data)
    if REPORT in files:
        atomic_write_bytes(run_dir / REPORT, _relocated(files[REPORT], run_dir))
    return True


def _relocated(report: bytes, run_dir: Path) -> bytes:
    """The report with ``run_dir`` naming where the run now lives (it was trained in a temp dir)."""
    from losscli.serialize import dump_yaml, load_yaml

    data = load_yaml(report, REPORT)
    if not isinstance(data, dict) or "run_dir" not in data:
        return report
    data["run_dir"] = str(Path(run_dir).resolve())
    return dump_yaml(data).encode("utf-8")


def _check_name(name: str) -> None:
    """Shipped names are relative paths inside the run directory, nothing else."""
    parts = PurePosixPath(name).parts
    if not parts or PurePosixPath(name).is_absolute() or ".." in parts or os.sep in name.replace("/", ""):
        raise ValueError(f"refusing to write {name!r} outside a run directory")
