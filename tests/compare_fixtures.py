"""Synthetic per-run results for the compare-report tests (no training): a grid of losses x seeds x
noise settings with a planted gce effect under noise."""

from __future__ import annotations

import numpy as np


LOSSES = [
    {"name": "ce", "params": {}, "label": "ce"},
    {"name": "gce", "params": {"q": 0.7}, "label": "gce(q=0.7)"},
    {"name": "focal", "params": {"gamma": 2.0}, "label": "focal(gamma=2.0)"},
]


def make_results(seeds=(0, 1, 2), noises=("none", "sym:0.4"), imbalances=("none",), gce_gain=0.10,
                 fail=(), run_root=None, rng_seed=0, loss_ms=True, seed_sd=0.005):
    """One result dict per (setting, loss, seed). gce gains ``gce_gain`` accuracy under noise,
    focal equals ce up to noise; ``fail``: (loss name, noise, seed) triples that failed."""
    rng = np.random.default_rng(rng_seed)
    out = []
    for imb in imbalances:
        for noise in noises:
            for li, loss in enumerate(LOSSES):
                for seed in seeds:
                    failed = (loss["name"], noise, seed) in fail
                    acc = 0.80 - (0.30 if noise != "none" else 0.0) + seed_sd * rng.standard_normal()
                    if loss["name"] == "gce" and noise != "none":
                        acc += gce_gain
                    run_dir = None
                    if run_root is not None:
                        run_dir = run_root / f"{imb}_{noise.replace(':', '')}_{loss['name']}_{seed}"
                        run_dir.mkdir(parents=True, exist_ok=True)
                    r = {"status": "failed" if failed else "ok",
                         "error": "loss is NaN at epoch 2" if failed else None,
                         "run_dir": None if run_dir is None else str(run_dir),
                         "loss": dict(loss), "seed": seed,
                         "setting": {"dataset": "mnist1d", "noise": noise, "imbalance": imb},
                         "metrics": {}, "timing": {}, "history": []}
                    if not failed:
                        r["metrics"] = {
                            "test": {"accuracy": acc, "macro_f1": acc - 0.01, "nll": 1.5 - acc, "ece": 0.05 + 0.01 * li,
                                     "brier": 0.6 - 0.5 * acc, "adaptive_ece": 0.04, "top5": 0.99},
                            "val": {"accuracy": acc + 0.01},
                            "train": {"accuracy": 0.95, "clean_accuracy": 0.9, "noisy_memorized": 0.1}}
                        r["timing"] = {"train_seconds": 10.0 + li, "samples_per_second": 1000.0}
                        if loss_ms:
                            r["timing"]["loss_ms_per_step"] = 0.2 * (1 + li)
                        r["history"] = [{"epoch": e, "train_loss": 1.0 / e, "val_accuracy": acc * e / 3,
                                         "test_accuracy": acc * e / 3} for e in (1, 2, 3)]
                    out.append(r)
    config = {"dataset": "mnist1d", "model": "mlp", "epochs": 3, "batch_size": 128, "seeds": list(seeds),
              "losses": [l["label"] for l in LOSSES], "noise": list(noises), "imbalance": list(imbalances),
              "baseline": "ce"}
    env = {"losscli": "0.1.0", "torch": "2.x", "device": "cpu", "threads": 2}
    return out, config, env


def entry(report, label, noise, imbalance="none"):
    found = [e for e in report["results"] if e["loss"]["label"] == label
             and e["setting"]["noise"] == noise and e["setting"]["imbalance"] == imbalance]
    assert len(found) == 1
    return found[0]


def all_sentences(report):
    return [s for v in report["verdicts"] for s in v["sentences"]]


# ---------------------------------------------------------------------------- structure
