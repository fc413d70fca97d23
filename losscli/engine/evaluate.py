"""Evaluation: logits in chunks, every metric of a model, and re-evaluating a saved run.

Classification runs are scored from the prediction logits; regression runs (``hl_gauss`` on
float targets) from the loss's decoded predictions: MSE, MAE and R². The per-epoch number that
picks the best epoch (:func:`selection_score`) is validation accuracy, or validation MSE (lower
is better) for regression: R² on the same split is a decreasing function of it, so both pick
the same epoch, and MSE is defined even when the targets are constant.
"""

from __future__ import annotations

from typing import Any

import torch


@torch.no_grad()
def predict_logits(model: torch.nn.Module, loss_fn, x: torch.Tensor, batch_size: int = 4096,
                   amp_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Prediction logits (float32, CPU) — through the loss's ``prediction_logits`` (cosine scale etc.)."""
    from losscli.device import autocast

    was_training = model.training
    model.eval()
    out = []
    for start in range(0, x.shape[0], batch_size):
        with autocast(amp_dtype, x.device):
            z = model(x[start:start + batch_size])
        out.append(loss_fn.prediction_logits(z.float()).float().cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


def selection_score(bundle) -> tuple[str, bool]:
    """``(metric, higher_is_better)`` of the per-epoch validation number that selects the best epoch."""
    return ("mse", False) if bundle.is_regression else ("accuracy", True)


@torch.no_grad()
def epoch_score(model, loss_fn, x: torch.Tensor, y: torch.Tensor, bundle, amp) -> float:
    """The selection metric on one split (NaN when the split is empty, or when the model's outputs on it
    are not finite: weights that diverged in the epoch's last steps, see ``RunRecorder.check_outputs``)."""
    if x.shape[0] == 0:
        return float("nan")
    logits = predict_logits(model, loss_fn, x, amp_dtype=amp)
    if not bool(torch.isfinite(logits).all()):
        return float("nan")
    if bundle.is_regression:
        return (loss_fn.decode(logits).double() - y.cpu().double()).square().mean().item()
    return (logits.argmax(1) == y.cpu()).float().mean().item()


def regression_metrics(logits: torch.Tensor, targets: torch.Tensor, loss_fn) -> dict[str, Any]:
    """MSE, MAE, R² of the loss's decoded predictions (``loss_fn.decode``: hl_gauss's bin-centre mean)."""
    from losscli.metrics import compute_regression_metrics

    return compute_regression_metrics(loss_fn.decode(logits).cpu(), targets.cpu())


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


def split_metrics(logits: torch.Tensor, labels: torch.Tensor, bundle, n_bins: int = 15) -> dict[str, Any]:
    """Every headline metric of one split; long-tailed training sets add many/medium/few-shot accuracy."""
    from losscli.metrics import compute_metrics, shot_accuracy

    out = compute_metrics(logits, labels, n_bins=n_bins)
    if bundle.info.get("imbalance", {}).get("spec", "none") != "none":
        # as plain metrics too, so compare can aggregate and test them like any other
        for group, value in shot_accuracy(logits, labels, bundle.class_counts).items():
            out[f"{group}_shot_accuracy"] = value
    return out


def finalize_metrics(model, loss_fn, data, bundle, amp) -> tuple[dict, dict]:
    """Every metric on val/test/train and per-class accuracy; returns (metrics, logits)."""
    from losscli.metrics import per_class_accuracy

    val = predict_logits(model, loss_fn, data.x_val, amp_dtype=amp)
    test = predict_logits(model, loss_fn, data.x_test, amp_dtype=amp)
    train = predict_logits(model, loss_fn, data.x_train, amp_dtype=amp)
    y_val, y_test = data.y_val.cpu(), data.y_test.cpu()
    logits = {"val_logits": val, "val_labels": y_val, "test_logits": test, "test_labels": y_test}
    if bundle.is_regression:  # the "labels" saved with the logits are the float targets
        return {split: regression_metrics(z, y, loss_fn) if len(y) else {}
                for split, z, y in (("test", test, y_test), ("val", val, y_val), ("train", train, data.y_train))}, logits
    metrics: dict[str, Any] = {
        "test": split_metrics(test, y_test, bundle) if len(y_test) else {},  # no test split: tuning trials
        "val": split_metrics(val, y_val, bundle) if len(y_val) else {},
        "train": train_set_metrics(train, data.y_train, data.y_train_clean),
    }
    if len(y_test):
        metrics["per_class_test_accuracy"] = [float(v) for v in per_class_accuracy(test, y_test, bundle.num_classes)]
    if shot_summary(metrics["test"]):
        metrics["shot_accuracy"] = shot_summary(metrics["test"])
    return metrics, logits


def shot_summary(test: dict[str, Any]) -> dict[str, Any]:
    """``{many, medium, few}`` from a split's ``<group>_shot_accuracy`` metrics (empty when balanced)."""
    return {g: test[f"{g}_shot_accuracy"] for g in ("many", "medium", "few") if f"{g}_shot_accuracy" in test}
