"""Engine benchmarks, measured in one process and one run:

1. `losscli train` defaults on MNIST-1D: test accuracy and wall time for cnn1d, mlp, linear
   (the MNIST-1D paper reports 94% / 68% / 32%).
2. compare batching: the default preset's runs of one setting trained stacked with torch.func
   versus the same runs one by one; prints the speed-up ratio.

    python benchmarks/bench_train.py                 # both parts
    python benchmarks/bench_train.py --part batching --seeds 3 --epochs 15
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import torch

from losscli.config import build_config
from losscli.engine.batched import train_group
from losscli.engine.runspec import RunSpec
from losscli.engine.trainer import train_run
from losscli.environment import cpu_model




def bench_train(models: list[str], device: str) -> None:
    print(f"## train defaults on MNIST-1D (device={device}, threads: auto (1 per run for small models on CPU), {cpu_model()})")
    print("| model | epochs | test accuracy (last) | best-epoch test accuracy | wall s (whole command body) | train s |")
    print("|---|---|---|---|---|---|")
    for model in models:
        cfg = build_config(None, {"model": {"name": model}, "device": device})
        spec = RunSpec.from_config(cfg)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            report = train_run(spec, Path(tmp) / "run", progress=False)
            wall = time.perf_counter() - t0
        m = report["metrics"]
        print(f"| {model} | {cfg.train.epochs} | {m['test']['accuracy']:.4f} | {m['best_epoch']['test_accuracy']:.4f} "
              f"| {wall:.1f} | {report['timing']['train_seconds']:.1f} |")


def bench_batching(seeds: int, epochs: int | None, device: str, compile: bool) -> None:
    over = {"seeds": seeds, "device": device, "compile": compile}
    if epochs:
        over["train"] = {"epochs": epochs}
    cfg = build_config("default", over)
    epochs = cfg.train.epochs
    none_noise, none_imbalance = cfg.noise_settings()[0], cfg.imbalance_settings()[0]  # the clean setting
    specs = [RunSpec.from_config(cfg, loss, seed=s, noise=none_noise, imbalance=none_imbalance)
             for loss in cfg.loss_specs() for s in cfg.seed_list()]
    print(f"\n## compare batching: {len(specs)} runs of the default preset (one setting), {epochs} epochs, "
          f"device={device}, compile={compile}")
    with tempfile.TemporaryDirectory() as tmp:
        cache: dict = {}
        # warm caches (dataset generation) outside the timed regions
        train_run(specs[0], Path(tmp) / "warm", progress=False, data_cache=cache)
        t0 = time.perf_counter()
        train_group(specs, [Path(tmp) / f"b{i}" for i in range(len(specs))], data_cache=cache)
        batched = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i, spec in enumerate(specs):
            train_run(spec, Path(tmp) / f"s{i}", progress=False, data_cache=cache)
        separate = time.perf_counter() - t0
    print("| runs | one by one s | batched s | speed-up |")
    print("|---|---|---|---|")
    print(f"| {len(specs)} | {separate:.1f} | {batched:.1f} | {separate / batched:.2f}x |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["all", "train", "batching"], default="all")
    ap.add_argument("--models", default="cnn1d,mlp,linear")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=None, help="default: the preset's")
    ap.add_argument("--compile", action="store_true", help="torch.compile both paths (compile time included)")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, python {platform.python_version()}")
    if args.part in ("all", "train"):
        bench_train(args.models.split(","), args.device)
    if args.part in ("all", "batching"):
        bench_batching(args.seeds, args.epochs, args.device, args.compile)


if __name__ == "__main__":
    main()
