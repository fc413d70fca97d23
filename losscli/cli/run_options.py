"""Options shared by ``train`` and ``compare``: flags -> a nested override dict for the config.

Only flags the user actually gave are applied, so a preset's values survive unless a
flag overrides them (precedence: defaults < preset < flags < --set).
"""

from __future__ import annotations

from typing import Any, Optional

import typer

PRESET = typer.Option(None, "--preset", help="Preset name (see `losscli presets`) or a YAML file.")
SET = typer.Option(None, "--set", help="Override any config key: --set train.lr=0.01 (repeatable).")
DATASET = typer.Option(None, "--dataset", "-d", help="mnist1d (default, offline), synthetic, mnist, fashion_mnist, cifar10, cifar100, svhn, hf:NAME, or a .npz/.pt/.csv file (float targets y: a regression dataset).")
DATA_DIR = typer.Option(None, "--data-dir", help="Directory holding torchvision / Hugging Face data.")
DOWNLOAD = typer.Option(None, "--download/--no-download", help="Allow downloading torchvision datasets (off by default).")
MODEL = typer.Option(None, "--model", "-m", help="auto, linear, mlp, cnn1d, resnet, bow.")
EPOCHS = typer.Option(None, "--epochs", "-e", help="Training epochs.")
BATCH = typer.Option(None, "--batch-size", "-b", help="Batch size.")
LR = typer.Option(None, "--lr", help="Peak learning rate.")
OPTIMIZER = typer.Option(None, "--optimizer", help="adamw or sgd.")
SCHEDULE = typer.Option(None, "--schedule", help="cosine, onecycle, step or constant.")
DEVICE = typer.Option(None, "--device", help="auto (CUDA if present), cpu, cuda, cuda:N.")
COMPILE = typer.Option(None, "--compile/--no-compile", help="torch.compile (default: on for CUDA, off for CPU).")
IMAGE_COL = typer.Option(None, "--image-column", help="Hugging Face datasets: image column.")
TEXT_COL = typer.Option(None, "--text-column", help="Hugging Face datasets: text column.")
LABEL_COL = typer.Option(None, "--label-column", help="Hugging Face datasets: label column.")
CLEAN_VAL = typer.Option(None, "--clean-val/--noisy-val", help="Under label noise, keep validation labels clean (optimistic; default: as noisy as training, what a practitioner has).")


def flag_overrides(
    *, dataset: Optional[str] = None, data_dir: Optional[str] = None, download: Optional[bool] = None,
    model: Optional[str] = None, epochs: Optional[int] = None, batch_size: Optional[int] = None,
    lr: Optional[float] = None, optimizer: Optional[str] = None, schedule: Optional[str] = None,
    device: Optional[str] = None, compile: Optional[bool] = None, image_column: Optional[str] = None,
    text_column: Optional[str] = None, label_column: Optional[str] = None, clean_val: Optional[bool] = None,
    nested: Optional[dict[str, Any]] = None, **top: Any,
) -> dict:
    out: dict[str, Any] = {}

    def put(section: str | None, key: str, value: Any) -> None:
        if value is None:
            return
        (out.setdefault(section, {}) if section else out)[key] = value

    put("dataset", "name", dataset)
    put("dataset", "data_dir", data_dir)
    put("dataset", "download", download)
    put("dataset", "clean_val", clean_val)
    for col, value in (("image_column", image_column), ("text_column", text_column), ("label_column", label_column)):
        if value is not None:
            out.setdefault("dataset", {}).setdefault("options", {})[col] = value
    put("model", "name", model)
    put("train", "epochs", epochs)
    put("train", "batch_size", batch_size)
    put("train", "lr", lr)
    put("train", "optimizer", optimizer)
    put("train", "schedule", schedule)
    put(None, "device", device)
    put(None, "compile", compile)
    for key, value in top.items():
        put(None, key, value)
    for dotted, value in (nested or {}).items():  # "section.key" -> {section: {key: value}}
        section, key = dotted.split(".", 1)
        put(section, key, value)
    return out
