"""The run directory: the one owner of its format, for writing and for reading back.

    RUN_DIR/config.yaml     the run's resolved spec (``RunSpec.resolved()``; reproducible)
    RUN_DIR/metrics.jsonl   one JSON line per epoch, appended and flushed as training goes
    RUN_DIR/model.pt        state_dict (``model.*`` and ``loss.*`` keys; torch.load(weights_only=True))
    RUN_DIR/logits.pt       {val_logits, val_labels, test_logits, test_labels}
    RUN_DIR/report.md       the report for people
    RUN_DIR/report.yaml     schema losscli/run/v1; written last: a valid one marks a finished run
    RUN_DIR/checkpoint.pt   while ``train`` runs: the state after the last epoch, for ``--resume``
                            (``engine/checkpoint.py``); removed when the run finishes

Every file is written atomically (temp + rename). Readers validate what they read: a run
whose report is missing, unreadable or incomplete is *pending* (``compare`` reruns it), and a
corrupted file given to ``eval``/``--teacher`` is one line naming it and what to do.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from losscli.atomic import atomic_torch_save, atomic_write_text, write_yaml
from losscli.errors import UsageError
from losscli.serialize import load_yaml

CONFIG, METRICS, MODEL, LOGITS = "config.yaml", "metrics.jsonl", "model.pt", "logits.pt"
REPORT, REPORT_MD = "report.yaml", "report.md"
RUNS = "runs"  # a compare's directory holds its runs in OUT/runs/<run>/ (not a run directory)
RUN_SCHEMA = "losscli/run/v1"
LOGITS_KEYS = ("val_logits", "val_labels", "test_logits", "test_labels")
_FIX = "retrain the run (or delete its directory)"


# --------------------------------------------------------------------------- writing


def check_run_dir(run_dir: Path, overwrite: bool) -> Path:
    """Refuse a ``run_dir`` that is a file, or holds a finished run and ``overwrite`` is not given."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"{run_dir} exists and is not a directory; choose another --out")
    if run_status(run_dir) == "ok" and not overwrite:
        raise UsageError(f"{run_dir} already holds a completed run; pass --overwrite to replace it or choose another --out")
    from losscli.engine.checkpoint import CHECKPOINT  # (imports torch: only where a run is about to train)

    for name in (CONFIG, METRICS, MODEL, LOGITS, REPORT, REPORT_MD, CHECKPOINT):
        # a directory where a run file goes: unlinking it failed (IsADirectoryError, exit 1) after the files
        # before it (metrics.jsonl: a killed run's history) were deleted; the write at the end failed too
        if (run_dir / name).is_dir():
            raise UsageError(f"{run_dir / name} is a directory where the run writes a file; remove it or choose "
                             "another --out")
    return run_dir


def prepare_run_dir(run_dir: Path, overwrite: bool, resume: bool = False) -> Path:
    """:func:`check_run_dir`, then clear a previous attempt's files (``resume``: keep them for the
    checkpoint to continue from). Call it once the run is built: the files it deletes are the
    finished run that ``--overwrite`` replaces, and input refused while building must not cost them."""
    run_dir = check_run_dir(run_dir, overwrite)
    # no mkdir here: the directory appears with the first file (config.yaml), so input that
    # fails while data or model are built leaves no empty run directory behind
    for stale in (REPORT, REPORT_MD) if resume else (METRICS, REPORT, REPORT_MD, "checkpoint.pt"):
        (run_dir / stale).unlink(missing_ok=True)
    return run_dir


def write_config(run_dir: Path, resolved: dict) -> None:
    write_yaml(Path(run_dir) / CONFIG, resolved)


def append_metrics(run_dir: Path, record: dict) -> None:
    path = Path(run_dir) / METRICS
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, allow_nan=True) + "\n")
            fh.flush()
    except OSError as exc:
        if exc.filename:
            raise
        raise OSError(exc.errno, exc.strerror, str(path)) from exc


def rewrite_metrics(run_dir: Path, rows: list[dict]) -> None:
    """metrics.jsonl holding exactly ``rows`` (a resumed run drops epochs its checkpoint does not have)."""
    atomic_write_text(Path(run_dir) / METRICS, "".join(json.dumps(r, allow_nan=True) + "\n" for r in rows))


def save_model(run_dir: Path, state_dict: dict) -> None:
    atomic_torch_save({k: v.detach().cpu() for k, v in state_dict.items()}, Path(run_dir) / MODEL)


def save_logits(run_dir: Path, logits: dict) -> None:
    atomic_torch_save({k: v.detach().cpu() for k, v in logits.items()}, Path(run_dir) / LOGITS)


def write_report(run_dir: Path, report: dict[str, Any], markdown: str | None) -> None:
    if markdown is not None:
        atomic_write_text(Path(run_dir) / REPORT_MD, markdown)
    write_yaml(Path(run_dir) / REPORT, report)  # last: marks completion


# --------------------------------------------------------------------------- reading


def read_report(run_dir: Path) -> dict | None:
    """The run's report, or None when it is absent or not a readable YAML mapping."""
    path = Path(run_dir) / REPORT
    try:
        if not path.is_file():
            return None
        data = load_yaml(path.read_bytes(), str(path))
    except (OSError, UsageError):
        return None
    return data if isinstance(data, dict) else None


class ReportCache:
    """Run reports parsed once per invocation: a compare asks for every run's report several times
    (is anything left to run, which runs to run, then collecting the results): parsing each three
    times cost a resumed compare seconds. An entry is reused only while the
    file's inode, mtime and size are unchanged: a report is replaced atomically (a new inode) when a
    run finishes, so a run trained between two reads is read again. Callers must not mutate what
    ``read`` returns (copy it first): it is the cached dict."""

    def __init__(self) -> None:
        self._entries: dict[Path, tuple[tuple[int, int, int], dict | None]] = {}

    def read(self, run_dir: Path) -> dict | None:
        """:func:`read_report`, from the cache when the file is the one parsed before."""
        path = Path(run_dir) / REPORT
        try:
            st = path.stat()
        except OSError:
            return None  # absent (never started): nothing to cache, and it may appear later
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        hit = self._entries.get(path)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        report = read_report(run_dir)
        self._entries[path] = (stamp, report)
        return report


def report_problem(report: dict | None, key: str | None = None) -> str | None:
    """Why a report does not describe a finished run (None when it does). ``key``: the run's key, for a
    directory named by it (a compare's ``runs/<key>``): a report naming another run is not this one's."""
    if report is None:
        return "no readable report.yaml"
    if report.get("schema") != RUN_SCHEMA:
        return f"report.yaml has schema {report.get('schema')!r}, not {RUN_SCHEMA}"
    if key is not None and report.get("run_key") not in (None, key):  # copied or swapped between runs by hand
        return f"report.yaml is run {report.get('run_key')!r}'s, not {key!r}'s"
    status = report.get("status")
    if status == "failed":
        return None if isinstance(report.get("error"), str) else "failed report without an error message"
    if status != "ok":
        return f"report.yaml has status {status!r}"
    test = (report.get("metrics") or {}).get("test")
    headline = "mse" if report.get("task") == "regression" else "accuracy"
    if not isinstance(test, dict) or not isinstance(test.get(headline), (int, float)):
        return "report.yaml lacks its test metrics"
    if isinstance(test[headline], bool) or not math.isfinite(test[headline]):  # a finished run's never is
        return f"report.yaml has test {headline} {test[headline]!r}"
    return None


def run_status(run_dir: Path, reports: ReportCache | None = None, *, key: str | None = None) -> str:
    """``ok`` (finished), ``failed`` (the run's own failure, recorded) or ``pending`` (not done:
    never started, interrupted, or its report is incomplete; rerunning it loses nothing).
    ``reports`` reads the report through that cache instead of parsing it again. ``key``: the run
    ``run_dir`` is for (compare's runs): a report of another run there (copied or swapped by hand) is
    pending, not that run's result."""
    report = reports.read(run_dir) if reports is not None else read_report(run_dir)
    if report_problem(report, key) is not None:
        return "pending"
    return "ok" if report["status"] == "ok" else "failed"


def read_config(run_dir: Path):
    """The run's :class:`RunSpec` from config.yaml (one line naming the file when it is corrupt)."""
    from losscli.engine.runspec import RunSpec

    path = Path(run_dir) / CONFIG
    refuse_compare_dir(Path(run_dir))
    if not path.is_file():
        raise UsageError(f"{run_dir} is not a losscli run directory (no {CONFIG}); pass a directory written by "
                         "`losscli train`")
    try:
        data = load_yaml(path.read_bytes(), str(path))
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} is not a losscli run config; {_FIX}")
    return RunSpec.from_resolved(data, where=str(path))


def refuse_compare_dir(run_dir: Path) -> None:
    """A compare's output directory (``OUT/config.yaml``, ``OUT/report.yaml``, ``OUT/runs/<run>/``) given
    where one run is wanted: one line saying so and naming a run to pass instead (its config.yaml read
    as a run's said "KeyError: 'dataset'", and the advice was to delete the directory)."""
    runs = run_dir / RUNS
    if not runs.is_dir() or (run_dir / MODEL).exists():
        return
    names = sorted(d.name for d in runs.iterdir() if d.is_dir())
    done = [n for n in names[:50] if run_status(runs / n) == "ok"]
    example = runs / (done or names or ["<run>"])[0]
    count = f"{len(names)} run{'s' if len(names) != 1 else ''}"
    raise UsageError(f"{run_dir} is a compare directory, not one run ({count} in {runs}); pass one run's directory, "
                     f"e.g. {example}")


def check_out_dir(run_dir: Path, overwrite: bool) -> None:
    """Refuse to train into a directory whose files of a run's names are not a run's: a compare's
    directory, or someone's own config.yaml/report.md. A run replaces config.yaml and deletes
    report.*, metrics.jsonl: a compare's report (and the user's files) were lost without a word."""
    run_dir = Path(run_dir)
    try:
        compare_dir = (run_dir / RUNS).is_dir() and not (run_dir / MODEL).exists()
        found = [n for n in (CONFIG, REPORT, REPORT_MD, METRICS, MODEL, LOGITS) if (run_dir / n).exists()]
    except OSError:  # a name too long, a parent that is a file: the write probe says so next
        return
    if compare_dir:
        raise UsageError(f"--out {run_dir} is a compare directory; a run written there would replace its report: "
                         "choose another --out")
    if not found or overwrite:
        return
    try:
        read_config(run_dir)  # a run's own config.yaml: a finished, failed or interrupted run of losscli
    except UsageError:
        raise UsageError(f"--out {run_dir} holds {', '.join(found)} but is not a losscli run ({CONFIG} missing or "
                         "not a run's); choose another --out, or pass --overwrite to replace those files") from None


def load_state(run_dir: Path) -> dict:
    """model.pt as a state dict (tensors only), validated."""
    return _torch_file(Path(run_dir) / MODEL, "the trained weights")


def load_logits(run_dir: Path) -> dict:
    """logits.pt: {val_logits, val_labels, test_logits, test_labels}, validated."""
    refuse_compare_dir(Path(run_dir))
    data = _torch_file(Path(run_dir) / LOGITS, "the saved logits")
    missing = [k for k in LOGITS_KEYS if k not in data]
    if missing:
        raise UsageError(f"{Path(run_dir) / LOGITS} lacks {', '.join(missing)}; {_FIX}")
    return {k: data[k] for k in LOGITS_KEYS}


def _torch_file(path: Path, what: str) -> dict:
    import torch

    from losscli.safeload import load_torch

    try:
        data = load_torch(path, what)
    except UsageError as exc:
        raise UsageError(f"{exc}; {_FIX}") from None
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise UsageError(f"{path} does not hold a dict of tensors ({what}); {_FIX}")
    return data


@dataclass
class LoadedRun:
    """A finished run read back: its spec, its report (None when absent) and its directory."""

    run_dir: Path
    spec: Any  # RunSpec
    report: dict | None

    def state(self) -> dict:
        return load_state(self.run_dir)

    def logits(self) -> dict:
        return load_logits(self.run_dir)


def load_run(run_dir: Path) -> LoadedRun:
    """Read a run directory back (``eval``, ``--teacher``, ``calibrate``): one line for anything corrupt."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise UsageError(f"run directory {run_dir} does not exist")
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir} is not a directory; pass a run directory written by `losscli train`")
    spec = read_config(run_dir)
    report_path = run_dir / REPORT
    report = read_report(run_dir)
    if report_path.exists() and report is None:
        raise UsageError(f"{report_path} is not a readable report; {_FIX}")
    return LoadedRun(run_dir, spec, report)
