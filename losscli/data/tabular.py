"""Numeric tables -> feature matrices and labels: shared by ``.csv`` and ``.parquet`` files and by
Hugging Face tables (``hf:table.csv``, ``hf:saved_dir``...).

A table arrives as ``{split: {column: 1-D numpy array}}``; numeric columns are float/int/bool arrays
(missing cells NaN), text columns object arrays. The label column is option ``label_column`` or the
first of :data:`LABEL_COLUMNS` present (case-insensitive); the features are option
``feature_columns`` (names or shell patterns such as ``pixel_*``, comma-separated or a list) or
every numeric column but the label. Text columns are left out of the automatic choice (and named
in the data info); a missing value in a feature is an error naming the column, since silently
imputing it would change the data.

Labels: non-negative integers are class ids as they are; text, booleans and negative integers
(``-1``/``+1``) become class ids in sorted order with the values as class names; float labels with
a non-integer value make a regression dataset (option ``task`` decides otherwise).
"""

from __future__ import annotations

import fnmatch
from typing import Any

import numpy as np

from losscli.errors import UsageError
from losscli.lossspec import split_list

#: label columns found without ``label_column``, in this order (matched case-insensitively)
LABEL_COLUMNS = ("label", "labels", "target", "class", "fine_label", "y", "category")
TASKS = ("classification", "regression")


def is_numeric(values: np.ndarray) -> bool:
    return values.dtype.kind in "biuf"


def parse_feature_option(value: Any, where: str) -> list[str] | None:
    """``"a, b,c*"`` or ``["a", "b"]`` -> a list of names/patterns; None -> None (automatic)."""
    if value is None:
        return None
    items = split_list(value, f"{where}: feature_columns", brackets=False) if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
        raise UsageError(f"{where}: feature_columns must be column names (a comma list), got {value!r}")
    items = [i.strip() for i in items if i.strip()]
    if not items:
        raise UsageError(f"{where}: feature_columns is empty; name at least one column (or leave it out)")
    return items


def pick_column(columns: list[str], wanted: str | None, candidates: tuple[str, ...], what: str,
                where: str) -> str | None:
    """``wanted`` (which must exist), else the first of ``candidates`` present (any case), else None."""
    if wanted is not None:
        if wanted not in columns:
            raise UsageError(f"{where}: no {what} column {wanted!r} (columns: {_names(columns)}); "
                             f"pass --{what}-column NAME")
        return wanted
    lower = {c.lower(): c for c in columns}
    return next((lower[c] for c in candidates if c in lower), None)


def pick_label(columns: list[str], wanted: str | None, where: str) -> str:
    found = pick_column(columns, wanted, LABEL_COLUMNS, "label", where)
    if found is not None:
        return found
    raise UsageError(f"{where}: no label column found (looked for {', '.join(LABEL_COLUMNS)}; columns: "
                     f"{_names(columns)}); pass --label-column NAME")


def pick_features(columns: list[str], numeric: set[str], label: str, wanted: Any, where: str) -> tuple[list[str], list[str]]:
    """``(features, ignored text columns)``: the named/matched columns, or every numeric column but the label."""
    patterns = parse_feature_option(wanted, where)
    if patterns is None:
        features = [c for c in columns if c != label and c in numeric]
        ignored = [c for c in columns if c != label and c not in numeric]
        if not features:
            raise UsageError(f"{where}: no numeric feature columns besides the label {label!r} (columns: "
                             f"{_names(columns)}); pass --feature-columns")
        return features, ignored
    features: list[str] = []
    for p in patterns:
        # a pattern never picks the label; naming it outright is an error (below)
        matched = [c for c in columns if c != label and fnmatch.fnmatchcase(c, p)] if any(ch in p for ch in "*?[") \
            else ([p] if p in columns else [])
        if not matched:
            raise UsageError(f"{where}: feature column {p!r} matches no column (columns: {_names(columns)})")
        features += [c for c in matched if c not in features]
    if label in features:
        raise UsageError(f"{where}: the label column {label!r} cannot also be a feature column")
    text = [c for c in features if c not in numeric]
    if text:
        raise UsageError(f"{where}: feature column {text[0]!r} is not numeric; losscli reads numeric features "
                         "(encode it as numbers, or leave it out of --feature-columns)")
    return features, []


def feature_matrix(table: dict[str, np.ndarray], features: list[str], where: str) -> np.ndarray:
    """``[N, D]`` float32 from ``features``; a missing (NaN) or infinite value is an error naming the column."""
    cols = []
    for c in features:
        v = np.asarray(table[c], dtype=np.float64)
        bad = ~np.isfinite(v)
        if bad.any():
            first = int(np.argmax(bad))
            raise UsageError(f"{where}: feature column {c!r} has {int(bad.sum())} missing or non-finite value(s) "
                             f"(first at row {first + 1}); fill or drop them first, or leave the column out "
                             "with --feature-columns")
        cols.append(v)
    n = len(next(iter(table.values()))) if table else 0
    return np.stack(cols, axis=1).astype(np.float32) if cols else np.zeros((n, 0), np.float32)


def encode_labels(splits: dict[str, np.ndarray], task: str | None, where: str) -> tuple[dict[str, np.ndarray], list[str] | None, str]:
    """``({split: labels}, class names or None, task)`` for one label column across splits."""
    if task is not None and task not in TASKS:
        raise UsageError(f"{where}: option task must be one of {', '.join(TASKS)}, got {task!r}")
    allv = np.concatenate([np.asarray(v) for v in splits.values()]) if splits else np.zeros(0)
    if is_numeric(allv) and allv.dtype.kind != "b":
        values = allv.astype(np.float64)
        if not np.isfinite(values).all():
            raise UsageError(f"{where}: the label column has missing or non-finite values; drop those rows first")
        integral = bool(np.all(values == np.round(values)))
        if task == "regression" or (task is None and not integral):
            return {k: np.asarray(v, dtype=np.float64) for k, v in splits.items()}, None, "regression"
        if not integral:
            raise UsageError(f"{where}: task classification needs integer labels, the label column holds "
                             "fractions (use task regression)")
        if values.min() >= 0:
            return {k: np.asarray(v, dtype=np.float64).astype(np.int64) for k, v in splits.items()}, None, "classification"
        # negative integers (-1/+1 style): class ids in sorted order, the values as names
        order = sorted({int(x) for x in values})
        index = {v: i for i, v in enumerate(order)}
        return ({k: np.asarray([index[int(x)] for x in np.asarray(v, dtype=np.float64)], dtype=np.int64)
                 for k, v in splits.items()}, [str(v) for v in order], "classification")
    if task == "regression":
        raise UsageError(f"{where}: task regression needs numeric targets, the label column holds text")
    text = {k: [_label_text(x) for x in np.asarray(v, dtype=object)] for k, v in splits.items()}
    missing = [x for v in text.values() for x in v if x == ""]
    if missing:
        raise UsageError(f"{where}: the label column has {len(missing)} empty cell(s); drop those rows first")
    order = sorted({x for v in text.values() for x in v})
    index = {v: i for i, v in enumerate(order)}
    return {k: np.asarray([index[x] for x in v], dtype=np.int64) for k, v in text.items()}, order, "classification"


def table_info(label: str, features: list[str], ignored: list[str]) -> dict[str, Any]:
    """What the data info records about the columns used."""
    shown = features if len(features) <= 32 else features[:16] + [f"... ({len(features)} in all)"]
    out: dict[str, Any] = {"label_column": label, "feature_columns": shown, "num_features": len(features)}
    if ignored:
        out["ignored_text_columns"] = ignored
    return out


def column_from_cells(cells: list[str], name: str, where: str, line_of: Any) -> np.ndarray:
    """A CSV column: float64 (blank cells NaN) when every filled cell is a number, text otherwise;
    numbers mixed with text is an error naming the line (usually a typo, never silently dropped)."""
    values = np.empty(len(cells), dtype=np.float64)
    first_text = None
    n_numbers = 0
    for i, cell in enumerate(cells):
        s = cell.strip()
        if s == "":
            values[i] = np.nan
            continue
        try:
            values[i] = float(s)
            n_numbers += 1
        except ValueError:
            if first_text is None:
                first_text = i
    if first_text is None:
        return values
    if n_numbers:
        raise UsageError(f"{where}, line {line_of(first_text)}: column {name!r} mixes numbers and text "
                         f"({cells[first_text].strip()!r}); fix the cell")
    return np.asarray([c.strip() for c in cells], dtype=object)


def arrow_columns(table: Any) -> dict[str, np.ndarray]:
    """A pyarrow table as ``{column: 1-D array}``: numeric columns (nulls as NaN: a missing feature
    is then reported by name, never imputed), everything else as text/objects. Whole columns at
    once: converting row by row is a thousand times slower on a real table."""
    import pyarrow.types as pt

    out: dict[str, np.ndarray] = {}
    for name, col in zip(table.column_names, table.columns):
        t = col.type
        if pt.is_integer(t) or pt.is_floating(t) or pt.is_boolean(t):
            out[name] = col.to_numpy(zero_copy_only=False) if col.null_count == 0 else \
                np.asarray(col.cast("float64").fill_null(float("nan")).to_numpy(zero_copy_only=False))
        else:
            out[name] = np.asarray(col.to_pylist(), dtype=object)
    return out


def _label_text(x: Any) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return ""
    if isinstance(x, (bool, np.bool_)):
        return "true" if x else "false"
    return str(x).strip()


def _names(columns: list[str]) -> str:
    return ", ".join(columns[:20]) + (f", ... ({len(columns)} in all)" if len(columns) > 20 else "")
