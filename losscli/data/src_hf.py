"""Hugging Face ``datasets``: ``hf:<name-or-path>``.

``<name-or-path>`` may be a directory written by ``save_to_disk``, a parquet / csv / json
file, a directory of such files (split from file names: train*, valid*/val*/dev*, test*),
or a hub name (needs a network or the local HF cache). Columns are auto-detected
(image/img, text/sentence, label/labels...) unless ``image_column`` / ``text_column`` /
``label_column`` are given. Text goes through the hashing tokenizer (kind "tokens");
images become normalised float tensors (kind "image"); a table without image or text columns
(or with ``feature_columns``) is read as numeric features (kind "vector", ``losscli.data.tabular``),
standardised with training-split statistics unless ``normalize`` is false. Splits train/validation/test are
used when present; a missing test split is carved with ``test_fraction``, a missing
validation split with ``val_fraction``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import socket
from typing import Any

import numpy as np
import torch

from losscli.data.bundle import carve_split, make_bundle
from losscli.data.cache import cache_dir
from losscli.data.images import normalise_images
from losscli.data.registry import positive_int, register_dataset
from losscli.data.tabular import LABEL_COLUMNS, pick_column
from losscli.data.tokenize import DEFAULT_MAX_LEN, DEFAULT_VOCAB_SIZE, hash_tokenize
from losscli.errors import UsageError

IMAGE_COLUMNS = ("image", "img", "pixel_values", "picture")
TEXT_COLUMNS = ("text", "sentence", "content", "review", "document", "sms", "question")
VAL_NAMES = ("validation", "valid", "val", "dev")
FILE_BUILDERS = {".parquet": "parquet", ".csv": "csv", ".json": "json", ".jsonl": "json", ".tsv": "csv"}

OPTIONS = {"image_column": None, "text_column": None, "label_column": None, "feature_columns": None, "config": None,
           "vocab_size": DEFAULT_VOCAB_SIZE, "max_len": DEFAULT_MAX_LEN, "test_fraction": 0.2, "normalize": True}
#: feature dtypes of a numeric table (``datasets.Value``)
NUMERIC_DTYPES = ("int", "uint", "float", "bool", "double", "half")


# --------------------------------------------------------------------------- locating the data
def _split_of(filename: str) -> str:
    base = os.path.basename(filename).lower()
    if base.startswith("test"):
        return "test"
    if base.startswith(VAL_NAMES):
        return "validation"
    return "train"


def _load_files(files: list[str], where: str) -> Any:
    import datasets

    exts = {os.path.splitext(f)[1].lower() for f in files}
    if len(exts) != 1:
        raise UsageError(f"hf:{where}: mixed file types {sorted(exts)}; keep one of .parquet, .csv, .json")
    ext = exts.pop()
    data_files: dict[str, list[str]] = {}
    for f in sorted(files):
        data_files.setdefault(_split_of(f), []).append(f)
    kwargs = {"delimiter": "\t"} if ext == ".tsv" else {}
    try:
        return datasets.load_dataset(FILE_BUILDERS[ext], data_files=data_files,
                                     cache_dir=os.path.join(cache_dir(), "hf"), **kwargs)
    except Exception as e:
        raise UsageError(f"hf:{where}: cannot read {ext} files ({type(e).__name__}: {_first_line(e)})") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else ""


def _looks_like_path(spec: str) -> bool:
    return (spec.startswith(("/", ".", "~")) or spec.count("/") >= 2
            or os.path.splitext(spec)[1].lower() in FILE_BUILDERS)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP check of the hub endpoint (assumed reachable behind a proxy)."""
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout=timeout).close()
        return True
    except OSError:
        return False


@contextlib.contextmanager
def _offline_unless_reachable():
    """Without a network, switch the hub clients to offline mode (cache only) for this call,
    instead of letting them retry for half a minute."""
    import datasets.config
    import huggingface_hub.constants as hub_constants

    if datasets.config.HF_HUB_OFFLINE or _hub_reachable():
        yield
        return
    saved = datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE = saved


def open_hf(spec: str, config: str | None = None) -> dict[str, Any]:
    """``{split: datasets.Dataset}`` for a path or hub name."""
    import datasets

    path = os.path.expanduser(spec)
    if os.path.isdir(path):
        if any(os.path.exists(os.path.join(path, n)) for n in ("dataset_dict.json", "state.json")):
            try:
                ds = datasets.load_from_disk(path)
            except Exception as e:
                raise UsageError(f"hf:{spec}: cannot load saved dataset ({type(e).__name__}: {_first_line(e)})") from None
        else:
            files = [f for f in glob.glob(os.path.join(path, "**", "*"), recursive=True)
                     if os.path.splitext(f)[1].lower() in FILE_BUILDERS]
            if not files:
                raise UsageError(f"hf:{spec}: no dataset in {os.path.abspath(path)} (expected a save_to_disk "
                                 f"directory or .parquet/.csv/.json files)")
            ds = _load_files(files, spec)
    elif os.path.isfile(path):
        if os.path.splitext(path)[1].lower() not in FILE_BUILDERS:
            raise UsageError(f"hf:{spec}: unsupported file type; use .parquet, .csv, .tsv, .json or .jsonl")
        ds = _load_files([path], spec)
    elif _looks_like_path(spec):
        raise UsageError(f"hf:{spec}: no such file or directory ({os.path.abspath(path)})")
    else:
        try:
            with _offline_unless_reachable():
                ds = datasets.load_dataset(spec, config)
        except Exception as e:
            raise UsageError(f"hf:{spec}: cannot load from the Hugging Face hub or its cache (offline?) "
                             f"({type(e).__name__}: {_first_line(e)}); pass a local path: a save_to_disk "
                             f"directory or parquet/csv files") from None
    if isinstance(ds, datasets.Dataset):
        return {"train": ds}
    return dict(ds)


def _assign_splits(splits: dict[str, Any], spec: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    names = list(splits)
    if "train" in splits:
        out["train"] = splits["train"]
    elif names:
        out["train"] = splits[names[0]]
    else:
        raise UsageError(f"hf:{spec}: the dataset has no splits")
    for n in VAL_NAMES:
        if n in splits:
            out["validation"] = splits[n]
            break
    if "test" in splits and splits["test"] is not out["train"]:
        out["test"] = splits["test"]
    return out


def _pick(columns: list[str], wanted: str | None, candidates: tuple[str, ...], what: str, spec: str) -> str | None:
    return pick_column(columns, wanted, candidates, what, f"hf:{spec}")


# --------------------------------------------------------------------------- conversion
def _load_table(splits: dict[str, Any], label_col: str, spec: str, options: dict[str, Any], val_fraction: float,
                split_seed: int, test_fraction: float):
    """A table of numeric columns (``hf:data.csv``, ``hf:data.parquet``...): kind "vector"."""
    from losscli.data import tabular
    from losscli.data.normalize import standardize

    where = f"hf:{spec}"
    train = splits["train"]
    columns = list(train.column_names)
    numeric = {c for c in columns if str(getattr(train.features.get(c), "dtype", "")).startswith(NUMERIC_DTYPES)}
    features, ignored = tabular.pick_features(columns, numeric, label_col, options["feature_columns"], where)
    tables = {}
    for k, ds in splits.items():
        missing = [c for c in [label_col, *features] if c not in ds.column_names]
        if missing:
            raise UsageError(f"{where}: split {k!r} lacks column(s) {', '.join(missing[:5])}")
        tables[k] = tabular.arrow_columns(ds.select_columns([*features, label_col]).with_format("arrow")[:])
    xs = {k: tabular.feature_matrix(t, features, f"{where} ({k})") for k, t in tables.items()}
    names = getattr(train.features.get(label_col), "names", None)
    ys, class_names, task = tabular.encode_labels({k: t[label_col] for k, t in tables.items()}, None, where)
    class_names = list(names) if names is not None else class_names
    info: dict[str, Any] = {"source": where, "table": tabular.table_info(label_col, features, ignored)}
    xs_t = {k: torch.from_numpy(v) for k, v in xs.items()}
    ys_t = {k: torch.from_numpy(v) for k, v in ys.items()}
    row_index = None
    if "test" not in xs_t:
        y = ys_t["train"]
        keep, carved = carve_split(y, test_fraction, split_seed + 7919, stratify=task == "classification")
        xs_t["test"], ys_t["test"] = xs_t["train"][carved], y[carved]
        xs_t["train"], ys_t["train"] = xs_t["train"][keep], y[keep]
        row_index = keep
        info["test_source"] = f"carved from train (fraction {test_fraction:g}, split_seed {split_seed})"
    has_val = "validation" in xs_t
    bundle = make_bundle(
        where, x_train=xs_t["train"], y_train=ys_t["train"], x_test=xs_t["test"], y_test=ys_t["test"], kind="vector",
        x_val=xs_t.get("validation") if has_val else None, y_val=ys_t.get("validation") if has_val else None,
        num_classes=len(names) if names is not None else None, class_names=class_names, val_fraction=val_fraction,
        split_seed=split_seed, info=info, task=task, row_index=row_index,
    )
    return standardize(bundle, bool(options["normalize"]))



def _images(values: list[Any], mode: str | None, spec: str) -> tuple[np.ndarray, str | None]:
    arrays = []
    for v in values:
        if isinstance(v, dict) and ("bytes" in v or "path" in v):
            import io

            from PIL import Image

            v = Image.open(io.BytesIO(v["bytes"])) if v.get("bytes") else Image.open(v["path"])
        if hasattr(v, "convert"):  # PIL image
            if mode is None:
                mode = "L" if v.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB"
            v = v.convert(mode)
        a = np.asarray(v)
        if a.ndim == 2:
            a = a[:, :, None]
        arrays.append(a)
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise UsageError(f"hf:{spec}: images have different shapes ({', '.join(map(str, sorted(shapes)[:3]))}); "
                         f"resize them to one size first")
    stacked = np.stack(arrays) if arrays else np.zeros((0, 1, 1, 1), dtype=np.uint8)
    return np.transpose(stacked, (0, 3, 1, 2)), mode  # NHWC -> NCHW


def _labels(split_values: dict[str, list[Any]], feature: Any) -> tuple[dict[str, np.ndarray], list[str] | None, int | None]:
    names = getattr(feature, "names", None)
    if names is not None:  # ClassLabel
        return {k: np.asarray(v, dtype=np.int64) for k, v in split_values.items()}, list(names), len(names)
    flat = [x for v in split_values.values() for x in v]
    if all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in flat):
        return {k: np.asarray(v, dtype=np.int64) for k, v in split_values.items()}, None, None
    values = sorted({str(x) for x in flat})
    index = {v: i for i, v in enumerate(values)}
    return {k: np.asarray([index[str(x)] for x in v], dtype=np.int64) for k, v in split_values.items()}, values, len(values)


@register_dataset("hf", options=OPTIONS, kind="", doc="Hugging Face datasets: hf:<name-or-path>")
def load_hf(*, data_dir=None, download=False, val_fraction=0.1, split_seed=0, options=None, path: str = ""):
    spec = path
    if not spec:
        raise UsageError("hf: give a dataset name or path, e.g. hf:imdb or hf:./my_dataset")
    vocab_size = positive_int(options["vocab_size"], "hf: option 'vocab_size'", minimum=2)
    max_len = positive_int(options["max_len"], "hf: option 'max_len'")
    test_fraction = float(options["test_fraction"])
    if not 0.0 < test_fraction < 1.0:
        raise UsageError(f"hf: option 'test_fraction' must be in (0, 1), got {test_fraction!r}")
    splits = _assign_splits(open_hf(spec, options["config"]), spec)
    train = splits["train"]
    columns = list(train.column_names)
    label_col = _pick(columns, options["label_column"], LABEL_COLUMNS, "label", spec)
    if label_col is None:
        raise UsageError(f"hf:{spec}: no label column found; pass --label-column (columns: {', '.join(columns)})")
    tabular_wanted = options["feature_columns"] is not None
    image_col = None if tabular_wanted or options["text_column"] is not None else \
        _pick(columns, options["image_column"], IMAGE_COLUMNS, "image", spec)
    text_col = None if image_col or tabular_wanted else _pick(columns, options["text_column"], TEXT_COLUMNS, "text", spec)
    if image_col is None and text_col is None:  # a numeric table: its numeric columns are the features
        return _load_table(splits, label_col, spec, options, val_fraction, split_seed, test_fraction)
    for name, ds in splits.items():
        missing = [c for c in (label_col, image_col or text_col) if c not in ds.column_names]
        if missing:
            raise UsageError(f"hf:{spec}: split {name!r} lacks column(s) {', '.join(missing)}")

    labels, class_names, num_classes = _labels({k: list(ds[label_col]) for k, ds in splits.items()},
                                               train.features.get(label_col))
    # a split whose labels are all negative (e.g. GLUE's hidden test labels) is unlabelled: drop it
    for k in [k for k in list(splits) if k != "train" and len(labels[k]) and (labels[k] < 0).all()]:
        del splits[k], labels[k]
    if len(labels["train"]) and (labels["train"] < 0).any():
        raise UsageError(f"hf:{spec}: the train split has negative (missing) labels")

    info: dict[str, Any] = {"source": f"hf:{spec}", "label_column": label_col}
    xs: dict[str, Any] = {}
    if image_col:
        mode = None
        raw = {}
        for k, ds in splits.items():
            raw[k], mode = _images(list(ds[image_col]), mode, spec)
        keys = list(raw)
        x_train, rest, stats = normalise_images(raw["train"], [raw[k] for k in keys[1:]], bool(options["normalize"]))
        xs = {"train": x_train, **dict(zip(keys[1:], rest))}
        kind = "image"
        info.update(image_column=image_col, normalization=stats)
    else:
        xs = {k: hash_tokenize(ds[text_col], vocab_size=vocab_size, max_len=max_len) for k, ds in splits.items()}
        kind = "tokens"
        info.update(text_column=text_col, tokenizer="hash", vocab_size=vocab_size, max_len=max_len)

    ys = {k: torch.from_numpy(v) for k, v in labels.items()}
    row_index = None
    if "test" not in xs:
        keep, carved = carve_split(ys["train"], test_fraction, split_seed + 7919)
        xs["test"], ys["test"] = xs["train"][carved], ys["train"][carved]
        xs["train"], ys["train"] = xs["train"][keep], ys["train"][keep]
        row_index = keep
        info["test_source"] = f"carved from train (fraction {test_fraction:g}, split_seed {split_seed})"
    has_val = "validation" in xs
    name = "hf:" + spec
    return make_bundle(
        name, x_train=xs["train"], y_train=ys["train"], x_test=xs["test"], y_test=ys["test"], kind=kind,
        x_val=xs.get("validation") if has_val else None, y_val=ys.get("validation") if has_val else None,
        num_classes=num_classes, class_names=class_names, val_fraction=val_fraction, split_seed=split_seed,
        info=info, row_index=row_index,
    )
