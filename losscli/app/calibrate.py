"""``losscli calibrate``: read logits (a run directory or files), fit and score calibrators,
write calibration.yaml/.md, reliability diagrams and the fitted calibrators; and read a fitted
calibrator back (``losscli eval --calibrator``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from losscli.atomic import check_writable_dir
from losscli.calibrate import CALIBRATORS, Calibrator
from losscli.calibrate.fitting import DEFAULT_METHODS, fit_and_score, resolve_methods
from losscli.errors import UsageError
from losscli.metrics.checks import check_bins

CALIBRATOR_SCHEMA = "losscli/calibrator/v1"


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
            from losscli.safeload import load_torch

            obj = load_torch(path, what)
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
    except Exception:  # noqa: BLE001 - anything not convertible is the same problem for the user
        raise UsageError(f"{path} does not hold a numeric array ({type(obj).__name__})") from None
    if what.endswith("labels") and t.is_floating_point():
        if not bool((t == t.round()).all()):
            raise UsageError(f"{path}: labels must be integer class indices")
        t = t.to(torch.int64)
    return t


def write_calibration_outputs(out_dir: str | Path, report: dict[str, Any], calibrators: dict[str, Calibrator],
                              test_logits: torch.Tensor, test_labels: torch.Tensor,
                              calibrated_test: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """Write calibrators/<m>.pt, reliability_<m>.png (+ _uncalibrated), calibration.md and
    calibration.yaml (last) into ``out_dir``; adds ``files`` (relative paths) to the report."""
    from losscli.atomic import atomic_torch_save, atomic_write_text, write_yaml
    from losscli.report.calibration import render_calibration_markdown
    from losscli.report.reliability import plot_reliability

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n_bins = int(report["n_bins"])
    files = _output_files(list(calibrators))
    for name, cal in calibrators.items():
        atomic_torch_save({"schema": CALIBRATOR_SCHEMA, "method": name, "state": cal.state_dict()},
                          out / files["calibrators"][name])
    plot_reliability(test_logits, test_labels, out / files["reliability"]["uncalibrated"],
                     title="uncalibrated (test)", n_bins=n_bins, is_probs=False)
    for name, cal in calibrators.items():
        z = calibrated_test[name] if calibrated_test and name in calibrated_test else cal.transform(test_logits)
        plot_reliability(z, test_labels, out / files["reliability"][name], title=f"{name} (test)", n_bins=n_bins,
                         is_probs=False)
    report["files"] = files
    atomic_write_text(out / files["report_md"], render_calibration_markdown(report, files["reliability"]))
    write_yaml(out / files["report_yaml"], report)
    return report


def _output_files(names: Sequence[str]) -> dict[str, Any]:
    """The files calibrate writes for the calibrators ``names``, relative to its output directory (the
    report's ``files``): one list for the writer and for the check made before fitting."""
    return {"report_yaml": "calibration.yaml", "report_md": "calibration.md",
            "reliability": {"uncalibrated": "reliability_uncalibrated.png", **{n: f"reliability_{n}.png" for n in names}},
            "calibrators": {n: f"calibrators/{n}.pt" for n in names}}


def _check_outputs(out_dir: str | Path, names: Sequence[str]) -> None:
    """Refuse, before fitting, an output directory where a file calibrate writes is a directory (or
    calibrators/ a file): the write failed after the fit with IsADirectoryError text, exit 1, some files
    already replaced."""
    out = Path(out_dir)
    if (out / "calibrators").exists() and not (out / "calibrators").is_dir():
        raise UsageError(f"{out / 'calibrators'} is a file where calibrate keeps the fitted calibrators; remove it "
                         "(or choose another --out)")
    files = _output_files(names)
    for rel in [files["report_yaml"], files["report_md"], *files["reliability"].values(), *files["calibrators"].values()]:
        if (out / rel).is_dir():
            raise UsageError(f"{out / rel} is a directory where calibrate writes a file; remove it "
                             "(or choose another --out)")


def calibrate_run(run_dir: str | Path, methods: str | Sequence[str] | None = DEFAULT_METHODS, n_bins: int = 15,
                  out_dir: str | Path | None = None) -> dict[str, Any]:
    """Calibrate a run directory: read RUN_DIR/logits.pt, fit on val, score on test, write
    calibration.yaml/.md, reliability_<method>.png and calibrators/<method>.pt into
    ``out_dir`` (default RUN_DIR). Returns the report."""
    from losscli.engine import rundir

    names = resolve_methods(methods)  # unknown names fail before any file is read
    check_bins(n_bins)
    if not Path(run_dir).is_dir():
        raise UsageError(f"run directory {run_dir} does not exist (or is not a directory)")
    if (rundir.read_report(Path(run_dir)) or {}).get("task") == "regression":
        raise UsageError(f"{run_dir} is a regression run; calibrators apply to classifiers' probabilities")
    data = rundir.load_logits(Path(run_dir))
    check_writable_dir(out_dir if out_dir is not None else run_dir, "--out")  # before fitting, not after
    _check_outputs(out_dir if out_dir is not None else run_dir, names)
    report, fitted, cal_test, (zt, yt) = fit_and_score(
        data["val_logits"], data["val_labels"], data["test_logits"], data["test_labels"], names, n_bins)
    report["run_dir"] = str(Path(run_dir).resolve())
    return write_calibration_outputs(out_dir if out_dir is not None else run_dir, report, fitted, zt, yt, cal_test)


def calibrate_files(val_logits: str | Path, val_labels: str | Path, test_logits: str | Path, test_labels: str | Path,
                    methods: str | Sequence[str] | None = DEFAULT_METHODS, n_bins: int = 15,
                    out_dir: str | Path | None = None) -> dict[str, Any]:
    """Same as :func:`calibrate_run` for logits/labels in separate .pt/.npy/.npz files; files
    are written only when ``out_dir`` is given."""
    names = resolve_methods(methods)
    check_bins(n_bins)
    paths = {"val_logits": val_logits, "val_labels": val_labels, "test_logits": test_logits, "test_labels": test_labels}
    arrays = {k: load_array(p, k) for k, p in paths.items()}
    if out_dir is not None:
        check_writable_dir(out_dir, "--out")  # before fitting, not after
        _check_outputs(out_dir, names)
    report, fitted, cal_test, (zt, yt) = fit_and_score(
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
    from losscli.safeload import load_torch

    saved = load_torch(path, "a fitted calibrator")
    state = saved.get("state") if isinstance(saved, dict) else None
    if not isinstance(state, dict):
        raise UsageError(f"{path} is not a losscli calibrator; rerun `losscli calibrate {run_dir} --methods {name}`")
    return CALIBRATORS.get(name)(**state.get("hparams", {})).load_state_dict(state)
