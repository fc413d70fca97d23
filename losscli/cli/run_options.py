"""Options shared by ``train`` and ``compare``: flags -> a nested override dict for the config.

Only flags the user actually gave are applied, so a preset's values survive unless a
flag overrides them (precedence: defaults < preset < flags < --set).
"""

from __future__ import annotations

from typing import Any, Optional

import typer

from losscli.cli import names

PRESET = typer.Option(None, "--preset", help="Preset name (see `losscli presets`) or a YAML file.",
                      autocompletion=names.complete_preset)
SET = typer.Option(None, "--set", help="Override any config key: --set train.lr=0.01 (repeatable).")
DATASET_HELP = ("mnist1d (offline), synthetic, mnist, fashion_mnist, cifar10, cifar100, svhn, hf:NAME-OR-PATH, "
                "folder:DIR (class folders of images), a .npz/.pt/.csv/.parquet file (float targets y: a "
                "regression dataset), or your function my_package.data:load.")
DATA_DIR = typer.Option(None, "--data-dir", help="Directory holding torchvision / Hugging Face / CIFAR-N data.")
DOWNLOAD = typer.Option(None, "--download/--no-download", help="Allow downloading torchvision datasets (off by default).")
OPTIMIZER_HELP, SCHEDULE_HELP = "adamw or sgd.", "cosine, onecycle, step or constant."
COMPILE = typer.Option(None, "--compile/--no-compile", help="torch.compile (default: on for CUDA, off for CPU).")
IMAGE_COL = typer.Option(None, "--image-column", help="Hugging Face datasets: image column.")
TEXT_COL = typer.Option(None, "--text-column", help="Hugging Face datasets: text column.")
LABEL_COL = typer.Option(None, "--label-column", help="Tables (.csv, .parquet, hf:) and Hugging Face datasets: the label column (default: found by name: label, target, class, y...).")
FEATURE_COLS = typer.Option(None, "--feature-columns", help="Tables: comma list of feature columns or patterns (pixel_*) (default: every numeric column but the label).")
NORMALIZE = typer.Option(None, "--normalize/--no-normalize", help="Standardise inputs with training-split statistics (default: on for files, tables, image folders and images).")
IMAGE_SIZE = typer.Option(None, "--image-size", min=1, help="folder: datasets: resize every image to N x N pixels (default: keep; sizes must agree).")
CLEAN_VAL = typer.Option(None, "--clean-val/--noisy-val", help="Under label noise, keep validation labels clean (optimistic; default: as noisy as training, what a practitioner has).")
LOG_EVERY = typer.Option(None, "--log-every", min=1, help="Print one line every N epochs (default: a progress bar on a terminal, one line per epoch elsewhere: nohup, CI, logs).")
TRACKER = typer.Option(None, "--tracker", autocompletion=names.complete_tracker, help="Log to an experiment tracker: tensorboard or mlflow (pip install 'losscli[tensorboard]' / 'losscli[mlflow]').")
TRACKING_URI = typer.Option(None, "--tracking-uri", help="mlflow: tracking URI (default: the local file store ./mlruns); tensorboard: the log directory (default: tensorboard/ in the run or compare directory).")


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value))
    return "auto" if value is None else str(value)


class ConfigOptions:
    """The config-backed options of one command, each showing its effective default in --help:
    the schema's default (``train``: "100 (from the config)") or its preset's (``compare``). Torch-free:
    the schema and preset reading need neither torch nor numpy."""

    def __init__(self, preset: str | None, where: str):
        from losscli.config import build_config

        cfg = build_config(preset)

        # the default goes into the help text itself: click would print a string show_default as
        # "[default: (100 (from the config))]"
        def opt(*flags: str, value: Any, help: str, **kw: Any):
            return typer.Option(None, *flags, help=f"{help}  [default: {_shown(value)} ({where})]", **kw)

        t = cfg.train
        self.dataset = opt("--dataset", "-d", value=cfg.dataset.name, help=DATASET_HELP,
                           autocompletion=names.complete_dataset)
        model_note = "" if cfg.model.name == "auto" else "; auto with another --dataset"
        self.model = typer.Option(None, "--model", "-m", autocompletion=names.complete_model,
                                  help="auto (from the data kind), linear, mlp, cnn1d, resnet, bow, or your factory "
                                       "my_package.models:make.  "
                                       f"[default: {cfg.model.name} ({where}{model_note})]")
        self.epochs = opt("--epochs", "-e", value=t.epochs, help="Training epochs.")
        self.batch_size = opt("--batch-size", "-b", value=t.batch_size, help="Batch size.")
        self.lr = opt("--lr", value=t.lr, help="Peak learning rate.")
        self.optimizer = opt("--optimizer", value=t.optimizer, help=OPTIMIZER_HELP)
        self.schedule = opt("--schedule", value=t.schedule, help=SCHEDULE_HELP)
        self.device = opt("--device", value=cfg.device, help="auto (CUDA if present), cpu, cuda, cuda:N.")
        self.seed = opt("--seed", value=cfg.seed, help="Seed for init, data order and label noise.")
        self.seeds = opt("--seeds", value=cfg.seeds, help="Number of seeds (0..N-1).")
        self.losses = opt("--losses", value=cfg.losses, help="Comma list of loss specs: \"ce,focal(gamma=2),gce\"; a weighted sum is one spec: \"ce,ce + 0.5*focal\"; your own loss: my_package.losses:MyLoss(k=1).",
                          autocompletion=names.complete_losses)
        noise_help = ("none, sym:0.4, asym:0.4, pair:0.4, instance:0.4; real noise: file:LABELS.npy (.pt/.csv, one "
                      "label per training row), cifar10n:aggre|rand1|rand2|rand3|worst, cifar100n:noisy")
        self.noise = opt("--noise", value=cfg.noise, help=f"Label noise: {noise_help}.")
        self.noise_list = opt("--noise", value=cfg.noise, help=f"Comma list of label-noise settings: {noise_help}.")
        self.imbalance = opt("--imbalance", value=cfg.imbalance, help="Long tail: none, exp:100, step:10.")
        self.imbalance_list = opt("--imbalance", value=cfg.imbalance, help="Comma list of imbalance settings: none,exp:100,step:10.")


def flag_overrides(
    *, dataset: Optional[str] = None, data_dir: Optional[str] = None, download: Optional[bool] = None,
    model: Optional[str] = None, epochs: Optional[int] = None, batch_size: Optional[int] = None,
    lr: Optional[float] = None, optimizer: Optional[str] = None, schedule: Optional[str] = None,
    device: Optional[str] = None, compile: Optional[bool] = None, image_column: Optional[str] = None,
    text_column: Optional[str] = None, label_column: Optional[str] = None, clean_val: Optional[bool] = None,
    feature_columns: Optional[str] = None, normalize: Optional[bool] = None, image_size: Optional[int] = None,
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
    # dataset options: only the sources that read them accept them (another source names the option it lacks)
    for col, value in (("image_column", image_column), ("text_column", text_column), ("label_column", label_column),
                       ("feature_columns", feature_columns), ("normalize", normalize), ("size", image_size)):
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
