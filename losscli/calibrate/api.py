"""Fit calibrators on validation logits, score them on test logits, write the report.

Report schema ``losscli/calibration/v1``::

    schema: losscli/calibration/v1
    env: {losscli, torch}
    data: {n_val, n_test, n_classes}
    n_bins: 15
    uncalibrated: {val: {metrics}, test: {metrics}}
    methods: {name: {params: {...}, accuracy_preserving: bool, fit_seconds: float, val: {...}, test: {...}}}
    definitions: <text of the metric conventions>
    files: {...}          # only when written to a directory
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch

from losscli.calibrate.base import CALIBRATORS, Calibrator, check_logits
from losscli.errors import UsageError
from losscli.metrics.functional import DEFINITIONS, _check_labels, compute_metrics

SCHEMA = "losscli/calibration/v1"
CALIBRATOR_SCHEMA = "losscli/calibrator/v1"
DEFAULT_METHODS = ("temperature", "vector", "matrix", "dirichlet", "histogram", "isotonic")
LOGITS_KEYS = ("val_logits", "val_labels", "test_logits", "test_labels")
TABLE_METRICS = ("accuracy", "nll", "brier", "ece", "adaptive_ece", "classwise_ece", "mce")


def resolve_methods(methods: str | Iterable[str] | None) -> list[str]:
    """Canonical calibrator names (comma-separated string or list), duplicates removed.
    Unknown names raise :class:`UnknownNameError` with a "did you mean" hint."""
    if methods is None:
        return list(DEFAULT_METHODS)
    if isinstance(methods, str):
        methods = [m for m in (p.strip() for p in methods.split(",")) if m]
    out: list[str] = []
    for m in methods:
        name = CALIBRATORS.canonical(m)
        if name not in out:
            out.append(name)
    if not out:
        raise UsageError(f"no calibration methods given; known: {', '.join(CALIBRATORS.names())}")
    return out


def _check_split(logits: Any, labels: Any, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    z = check_logits(logits, f"{split}_logits")
    y = _check_labels(labels, z.shape[0], z.shape[1], f"{split}_labels")
    return z, y


def _env() -> dict[str, Any]:
    from losscli import __version__

    return {"losscli": __version__, "torch": torch.__version__.split("+")[0], "device": "cpu"}


def _fit_and_score(val_logits, val_labels, test_logits, test_labels, methods, n_bins):
    zv, yv = _check_split(val_logits, val_labels, "val")
    zt, yt = _check_split(test_logits, test_labels, "test")
    if zv.shape[1] != zt.shape[1]:
        raise UsageError(f"val logits have {zv.shape[1]} classes but test logits have {zt.shape[1]}")
    names = resolve_methods(methods)
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "env": _env(),
        "data": {"n_val": int(zv.shape[0]), "n_test": int(zt.shape[0]), "n_classes": int(zv.shape[1])},
        "n_bins": int(n_bins),
        "uncalibrated": {"val": compute_metrics(zv, yv, n_bins), "test": compute_metrics(zt, yt, n_bins)},
        "methods": {},
        "definitions": DEFINITIONS,
    }
    fitted: dict[str, Calibrator] = {}
    calibrated_test: dict[str, torch.Tensor] = {}
    for name in names:
        cal = CALIBRATORS.get(name)()
        t0 = time.perf_counter()
        cal.fit(zv, yv)
        seconds = time.perf_counter() - t0
        out_test = cal.transform(zt)
        report["methods"][name] = {
            "params": cal.params(),
            "accuracy_preserving": bool(cal.accuracy_preserving),
            "fit_seconds": round(seconds, 4),
            "val": compute_metrics(cal.transform(zv), yv, n_bins),
            "test": compute_metrics(out_test, yt, n_bins),
        }
        fitted[name] = cal
        calibrated_test[name] = out_test
    return report, fitted, calibrated_test, (zt, yt)


def fit_calibrators(val_logits: Any, val_labels: Any, methods: str | Sequence[str] | None = None) -> dict[str, Calibrator]:
    """Fit each method on the validation split; returns ``{name: fitted calibrator}``."""
    zv, yv = _check_split(val_logits, val_labels, "val")
    return {name: CALIBRATORS.get(name)().fit(zv, yv) for name in resolve_methods(methods)}


def calibrate_logits(val_logits: Any, val_labels: Any, test_logits: Any, test_labels: Any,
                     methods: str | Sequence[str] | None = DEFAULT_METHODS, n_bins: int = 15) -> dict[str, Any]:
    """Fit every method on (val_logits, val_labels), score before/after on both splits.

    Returns the ``losscli/calibration/v1`` report dict (see the module docstring)."""
    report, _, _, _ = _fit_and_score(val_logits, val_labels, test_logits, test_labels, methods, n_bins)
    return report


# --------------------------------------------------------------------------- files


def load_run_logits(run_dir: str | Path) -> dict[str, torch.Tensor]:
    """RUN_DIR/logits.pt -> {val_logits, val_labels, test_logits, test_labels} (validated keys)."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise UsageError(f"run directory {run_dir} does not exist")
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir} is not a directory")
    path = run_dir / "logits.pt"
    if not path.is_file():
        raise UsageError(
            f"{path} not found: the run saved no logits (train it with `losscli train`, or pass "
            "--val-logits/--val-labels/--test-logits/--test-labels)"
        )
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise UsageError(f"cannot read {path}: {_one_line(exc)}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} must hold a dict with keys {', '.join(LOGITS_KEYS)}")
    missing = [k for k in LOGITS_KEYS if k not in data]
    if missing:
        raise UsageError(f"{path} lacks {', '.join(missing)} (has {', '.join(map(str, data)) or 'nothing'})")
    return {k: data[k] for k in LOGITS_KEYS}


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def load_array(path: str | Path, what: str = "logits") -> torch.Tensor:
    """Read a tensor from ``.pt`` (a tensor, or a dict with one tensor / a key named like
    ``what``), ``.npy`` or ``.npz`` (one array, or a key named like ``what``).
    Integer-valued float labels are converted to int64 when ``what`` ends in "labels"."""
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{what} file {path} not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".pt" or suffix == ".pth":
            obj = torch.load(path, map_location="cpu", weights_only=True)
        elif suffix == ".npy":
            obj = np.load(path, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                obj = {k: npz[k] for k in npz.files}
        else:
            raise UsageError(f"{path}: unsupported file type {suffix or '(none)'}; use .pt, .npy or .npz")
    except UsageError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise UsageError(f"cannot read {path}: {_one_line(exc)}") from None
    if isinstance(obj, dict):
        keys = list(obj)
        short = what.split("_")[-1]  # "val_logits" -> "logits"
        pick = next((k for k in (what, short) if k in obj), None)
        if pick is None and len(keys) == 1:
            pick = keys[0]
        if pick is None:
            raise UsageError(f"{path} holds {', '.join(map(str, keys)) or 'nothing'}; expected one array or a key {what!r}")
        obj = obj[pick]
    try:
        t = obj if isinstance(obj, torch.Tensor) else torch.as_tensor(np.asarray(obj))
    except Exception as exc:  # noqa: BLE001
        raise UsageError(f"{path} does not hold a numeric array ({type(obj).__name__})") from None
    if what.endswith("labels") and t.is_floating_point():
        if not bool((t == t.round()).all()):
            raise UsageError(f"{path}: labels must be integer class indices")
        t = t.to(torch.int64)
    return t


def _fmt_params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def summary_rows(report: dict[str, Any], split: str = "test") -> list[dict[str, Any]]:
    """One row per method (uncalibrated first): the table metrics on ``split`` and the params."""
    rows = [{"method": "uncalibrated", **{k: report["uncalibrated"][split][k] for k in TABLE_METRICS}, "params": ""}]
    for name, entry in report["methods"].items():
        rows.append({"method": name, **{k: entry[split][k] for k in TABLE_METRICS}, "params": _fmt_params(entry["params"])})
    return rows


def render_markdown(report: dict[str, Any], images: dict[str, str] | None = None) -> str:
    """calibration.md: before/after tables (test and val), the metric definitions, diagrams."""
    from losscli.cli.output import render_table

    d = report["data"]
    lines = [
        "# Calibration report",
        "",
        f"Calibrators are fitted on the validation split ({d['n_val']} samples) and scored on the test split "
        f"({d['n_test']} samples), {d['n_classes']} classes, {report['n_bins']} bins.",
        "",
        "## Test split",
        "",
        render_table(summary_rows(report, "test"), "md", floatfmt=".4f"),
        "",
        "## Validation split (fitting data: optimistic for the calibrated rows)",
        "",
        render_table(summary_rows(report, "val"), "md", floatfmt=".4f"),
        "",
        "## Metric definitions",
        "",
        report["definitions"].rstrip(),
        "",
        "Lower is better for nll, brier and the calibration errors; temperature scaling leaves accuracy "
        "exactly unchanged, the other methods may change it.",
    ]
    if images:
        lines += ["", "## Reliability diagrams (test split)", ""]
        for name, rel in images.items():
            lines += [f"### {name}", "", f"![{name} reliability diagram]({rel})", ""]
    return "\n".join(lines).rstrip() + "\n"


def write_calibration_outputs(out_dir: str | Path, report: dict[str, Any], calibrators: dict[str, Calibrator],
                              test_logits: torch.Tensor, test_labels: torch.Tensor,
                              calibrated_test: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """Write calibrators/<m>.pt, reliability_<m>.png (+ _uncalibrated), calibration.md and
    calibration.yaml (last) into ``out_dir``; adds ``files`` (relative paths) to the report."""
    from losscli.io import atomic_torch_save, atomic_write_text, write_yaml
    from losscli.report.reliability import plot_reliability

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n_bins = int(report["n_bins"])
    files: dict[str, Any] = {"report_yaml": "calibration.yaml", "report_md": "calibration.md",
                             "reliability": {}, "calibrators": {}}
    for name, cal in calibrators.items():
        rel = f"calibrators/{name}.pt"
        atomic_torch_save({"schema": CALIBRATOR_SCHEMA, "method": name, "state": cal.state_dict()}, out / rel)
        files["calibrators"][name] = rel
    plot_reliability(test_logits, test_labels, out / "reliability_uncalibrated.png",
                     title="uncalibrated (test)", n_bins=n_bins, is_probs=False)
    files["reliability"]["uncalibrated"] = "reliability_uncalibrated.png"
    for name, cal in calibrators.items():
        z = calibrated_test[name] if calibrated_test and name in calibrated_test else cal.transform(test_logits)
        rel = f"reliability_{name}.png"
        plot_reliability(z, test_labels, out / rel, title=f"{name} (test)", n_bins=n_bins, is_probs=False)
        files["reliability"][name] = rel
    report["files"] = files
    atomic_write_text(out / "calibration.md", render_markdown(report, files["reliability"]))
    write_yaml(out / "calibration.yaml", report)
    return report


def calibrate_run(run_dir: str | Path, methods: str | Sequence[str] | None = DEFAULT_METHODS, n_bins: int = 15,
                  out_dir: str | Path | None = None) -> dict[str, Any]:
    """Calibrate a run directory: read RUN_DIR/logits.pt, fit on val, score on test, write
    calibration.yaml/.md, reliability_<method>.png and calibrators/<method>.pt into
    ``out_dir`` (default RUN_DIR). Returns the report."""
    names = resolve_methods(methods)  # unknown names fail before any file is read
    data = load_run_logits(run_dir)
    report, fitted, cal_test, (zt, yt) = _fit_and_score(
        data["val_logits"], data["val_labels"], data["test_logits"], data["test_labels"], names, n_bins)
    report["run_dir"] = str(Path(run_dir).resolve())
    return write_calibration_outputs(out_dir if out_dir is not None else run_dir, report, fitted, zt, yt, cal_test)


def calibrate_files(val_logits: str | Path, val_labels: str | Path, test_logits: str | Path, test_labels: str | Path,
                    methods: str | Sequence[str] | None = DEFAULT_METHODS, n_bins: int = 15,
                    out_dir: str | Path | None = None) -> dict[str, Any]:
    """Same as :func:`calibrate_run` for logits/labels in separate .pt/.npy/.npz files; files
    are written only when ``out_dir`` is given."""
    names = resolve_methods(methods)
    paths = {"val_logits": val_logits, "val_labels": val_labels, "test_logits": test_logits, "test_labels": test_labels}
    arrays = {k: load_array(p, k) for k, p in paths.items()}
    report, fitted, cal_test, (zt, yt) = _fit_and_score(
        arrays["val_logits"], arrays["val_labels"], arrays["test_logits"], arrays["test_labels"], names, n_bins)
    report["inputs"] = {k: str(p) for k, p in paths.items()}
    if out_dir is not None:
        write_calibration_outputs(out_dir, report, fitted, zt, yt, cal_test)
    return report


def load_calibrator(run_dir: str | Path, method: str) -> Calibrator:
    """The calibrator fitted by ``losscli calibrate`` and saved as RUN_DIR/calibrators/<method>.pt."""
    name = CALIBRATORS.canonical(method)
    path = Path(run_dir) / "calibrators" / f"{name}.pt"
    if not path.is_file():
        raise UsageError(f"no fitted {name!r} calibrator at {path}; run `losscli calibrate {run_dir} --methods {name}` first")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        state = saved["state"]
    except Exception as exc:  # noqa: BLE001
        raise UsageError(f"cannot read calibrator {path}: {_one_line(exc)}") from None
    return CALIBRATORS.get(name)(**state.get("hparams", {})).load_state_dict(state)
