"""Evaluation: logits in chunks, every metric, and reloading a saved run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import yaml

from losscli.errors import UsageError


@torch.no_grad()
def predict_logits(model: torch.nn.Module, loss_fn, x: torch.Tensor, batch_size: int = 4096,
                   amp_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Prediction logits (float32, CPU) — through the loss's ``prediction_logits`` (cosine scale etc.)."""
    from losscli.engine.device import autocast

    was_training = model.training
    model.eval()
    out = []
    for start in range(0, x.shape[0], batch_size):
        with autocast(amp_dtype, x.device):
            z = model(x[start:start + batch_size])
        out.append(loss_fn.prediction_logits(z.float()).float().cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


def train_set_metrics(logits: torch.Tensor, y_used: torch.Tensor, y_clean: torch.Tensor) -> dict[str, Any]:
    """Accuracy against the labels trained on and the clean ones; memorisation of noisy labels."""
    pred = logits.argmax(dim=1)
    y_used, y_clean = y_used.cpu(), y_clean.cpu()
    out: dict[str, Any] = {"accuracy": (pred == y_used).float().mean().item()}
    noisy = y_used != y_clean
    if bool(noisy.any()):
        out["clean_accuracy"] = (pred == y_clean).float().mean().item()
        out["noisy_memorized"] = (pred[noisy] == y_used[noisy]).float().mean().item()
        out["noisy_corrected"] = (pred[noisy] == y_clean[noisy]).float().mean().item()
        out["noisy_fraction"] = noisy.float().mean().item()
    return out


def full_metrics(logits: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> dict[str, float]:
    from losscli.metrics import compute_metrics

    return compute_metrics(logits, labels, n_bins=n_bins)


def load_run_model(run_dir: Path, device: torch.device):
    """Rebuild the model and loss of a finished run from config.yaml + model.pt."""
    from losscli.config import DatasetConfig, ModelConfig, TrainConfig
    from losscli.engine.setup import build_run_loss, build_run_model, load_run_data
    from losscli.engine.spec import RunSpec

    run_dir = Path(run_dir)
    cfg_path, model_path = run_dir / "config.yaml", run_dir / "model.pt"
    for p in (cfg_path, model_path):
        if not p.is_file():
            raise UsageError(f"{run_dir} is not a losscli run directory (missing {p.name})")
    cfg = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
    ds = dict(cfg["dataset"])
    noise, imbalance = ds.pop("noise"), ds.pop("imbalance")
    model_cfg = dict(cfg["model"])
    model_cfg.pop("resolved_name", None)
    spec = RunSpec(
        loss=cfg["loss"]["name"], loss_params=cfg["loss"].get("params") or {}, seed=cfg["seed"], noise=noise,
        imbalance=imbalance, dataset=DatasetConfig(**ds), model=ModelConfig(**model_cfg),
        train=TrainConfig(**cfg["train"]), device=cfg.get("device", "auto"), compile=cfg.get("compile"),
        precision=cfg.get("precision", "auto"), teacher=cfg.get("teacher"),
    )
    bundle = load_run_data(spec)
    loss_fn = build_run_loss(spec, bundle)
    model = build_run_model(spec, bundle, loss_fn)
    state = torch.load(model_path, map_location="cpu", weights_only=True)
    model_state = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
    loss_state = {k[len("loss."):]: v for k, v in state.items() if k.startswith("loss.")}
    model.load_state_dict(model_state)
    if loss_state:
        loss_fn.load_state_dict(loss_state, strict=False)
    return model.to(device), loss_fn.to(device), (spec, bundle)


def evaluate_run(run_dir: Path, *, dataset: str | None = None, data_dir: str | None = None,
                 calibrator: str | None = None, n_bins: int = 15, device: str = "auto") -> dict[str, Any]:
    """All metrics of a saved run (schema ``losscli/eval/v1``), recomputed from its model.

    With ``dataset`` the model is evaluated on that dataset's test split (same input shape
    and classes required). With ``calibrator`` the fitted calibrator from ``losscli
    calibrate`` is applied to the logits first.
    """
    from losscli.engine.device import resolve_device
    from losscli.metrics import per_class_accuracy, shot_accuracy

    dev = resolve_device(device)
    model, loss_fn, (spec, bundle) = load_run_model(Path(run_dir), dev)
    splits = {"val": (bundle.x_val, bundle.y_val), "test": (bundle.x_test, bundle.y_test)}
    if dataset:
        from losscli.data import load_dataset

        other = load_dataset(dataset, data_dir=data_dir)
        if tuple(other.input_shape) != tuple(bundle.input_shape) or other.num_classes != bundle.num_classes:
            raise UsageError(
                f"{dataset} has inputs {tuple(other.input_shape)} and {other.num_classes} classes; the model expects "
                f"{tuple(bundle.input_shape)} and {bundle.num_classes}"
            )
        splits = {"test": (other.x_test, other.y_test)}
    cal = None
    if calibrator:
        from losscli.calibrate import load_calibrator

        cal = load_calibrator(Path(run_dir), calibrator)
    metrics: dict[str, Any] = {}
    test_logits = None
    for split, (x, y) in splits.items():
        if len(y) == 0:
            continue
        logits = predict_logits(model, loss_fn, x.to(dev))
        if cal is not None:
            logits = cal.transform(logits)
        metrics[split] = full_metrics(logits, y, n_bins=n_bins)
        if split == "test":
            test_logits = logits
    y_test = splits["test"][1]
    report: dict[str, Any] = {
        "schema": "losscli/eval/v1",
        "run_dir": str(Path(run_dir).resolve()),
        "loss": {"name": spec.loss, "params": spec.loss_params},
        "dataset": dataset or spec.dataset.name,
        "calibrator": calibrator,
        "metrics": metrics,
        "per_class_test_accuracy": [float(v) for v in per_class_accuracy(test_logits, y_test, bundle.num_classes)],
    }
    if spec.imbalance not in ("none", None):
        report["shot_accuracy"] = shot_accuracy(test_logits, y_test, bundle.class_counts)
    return report
