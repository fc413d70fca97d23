"""Numeric tables (CSV, parquet, Hugging Face) and standardised inputs: the data people actually have."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from losscli.data import load_dataset
from losscli.errors import UsageError


def _table(n=60, seed=0):
    rng = np.random.default_rng(seed)
    species = np.array(["setosa", "versicolor", "virginica"])[np.arange(n) % 3]
    return rng.normal(size=(n, 3)) * [1.0, 10.0, 100.0] + [0.0, 50.0, -5.0], species


def _write_csv(path, x, labels, extra=None):
    header = ["petal", "sepal", "stem", "species"] + ([] if extra is None else ["note"])
    lines = [",".join(header)]
    for i, (row, y) in enumerate(zip(x, labels)):
        cells = [f"{v:.6f}" for v in row] + [str(y)] + ([] if extra is None else [extra[i]])
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_csv_classification_with_text_labels_found_by_name(tmp_path):
    x, species = _table()
    path = _write_csv(tmp_path / "iris.csv", x, species, extra=[f"row {i}" for i in range(60)])
    b = load_dataset(str(path), options={"label_column": "species"})
    assert b.task == "classification" and b.kind == "vector" and b.num_classes == 3
    assert b.class_names == ["setosa", "versicolor", "virginica"]
    assert b.input_shape == (3,)  # the text column 'note' is left out, and said so
    assert b.info["table"]["ignored_text_columns"] == ["note"]
    assert b.info["table"]["feature_columns"] == ["petal", "sepal", "stem"]
    # a column called 'class' is found without --label-column
    path.write_text(path.read_text().replace("species", "class", 1))
    assert load_dataset(str(path)).info["table"]["label_column"] == "class"


def test_feature_columns_names_and_patterns(tmp_path):
    x, species = _table()
    path = _write_csv(tmp_path / "t.csv", x, species)
    b = load_dataset(str(path), options={"label_column": "species", "feature_columns": "stem, petal"})
    assert b.input_shape == (2,) and b.info["table"]["feature_columns"] == ["stem", "petal"]
    b = load_dataset(str(path), options={"label_column": "species", "feature_columns": ["s*"]})
    assert b.info["table"]["feature_columns"] == ["sepal", "stem"]
    with pytest.raises(UsageError, match="'leaf' matches no column"):
        load_dataset(str(path), options={"label_column": "species", "feature_columns": "leaf"})
    with pytest.raises(UsageError, match="cannot also be a feature"):
        load_dataset(str(path), options={"label_column": "species", "feature_columns": "petal,species"})


def test_standardised_with_training_statistics_and_opt_out(tmp_path):
    x, species = _table(n=90)
    x[:, 0] = 7.0  # a constant feature: centred, never divided by a tiny std
    path = _write_csv(tmp_path / "t.csv", x, species)
    b = load_dataset(str(path), options={"label_column": "species"})
    norm = b.info["normalization"]
    assert norm["method"] == "standardize" and norm["per"] == "feature" and norm["constant_features"] == 1
    assert torch.allclose(b.x_train.mean(0), torch.zeros(3), atol=1e-5)
    assert torch.allclose(b.x_train[:, 1:].std(0), torch.ones(2), atol=1e-4)
    assert float(b.x_test[:, 0].abs().max()) == 0.0  # constant 7 -> 0 everywhere, no blow-up
    # the statistics are the training split's, applied unchanged to val and test
    raw = load_dataset(str(path), options={"label_column": "species", "normalize": False})
    assert raw.info["normalization"]["method"] == "none"
    mean, std = torch.tensor(norm["mean"]), torch.tensor(norm["std"])
    assert torch.allclose(raw.x_train.mean(0).double(), mean.double(), atol=1e-4)
    assert torch.allclose((raw.x_test - mean.float()) / std.float(), b.x_test, atol=1e-4)


def test_npz_inputs_are_standardised_by_default(tmp_path):
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "d.npz", x=rng.integers(0, 17, (80, 8)), y=np.arange(80) % 4)
    b = load_dataset(str(tmp_path / "d.npz"))
    assert b.info["normalization"]["method"] == "standardize"
    assert torch.allclose(b.x_train.mean(0), torch.zeros(8), atol=1e-5)
    tokens = load_dataset(str(tmp_path / "d.npz"), options={"kind": "tokens"})
    assert tokens.info["normalization"]["method"] == "none" and tokens.x_train.dtype == torch.int64


def test_csv_errors_are_one_line_naming_the_place(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b,label\n1,2,0\n3,oops,1\n4,5,0\n")
    with pytest.raises(UsageError, match=r"line 3: column 'b' mixes numbers and text \('oops'\)"):
        load_dataset(str(path))
    path.write_text("a,b,label\n1,2,0\n3,,1\n4,5,0\n6,7,1\n")
    with pytest.raises(UsageError, match="feature column 'b' has 1 missing"):
        load_dataset(str(path))
    path.write_text("f1,f2\n1,2\n3,4\n")
    with pytest.raises(UsageError, match="no label column found.*--label-column"):
        load_dataset(str(path))
    path.write_text("name,label\nx,0\ny,1\n")
    with pytest.raises(UsageError, match="no numeric feature columns"):
        load_dataset(str(path))


def test_signed_labels_become_classes(tmp_path):
    rng = np.random.default_rng(2)
    rows = "".join(f"{rng.normal():.4f},{[-1, 1][i % 2]}\n" for i in range(40))
    (tmp_path / "svm.csv").write_text("x,target\n" + rows)
    b = load_dataset(str(tmp_path / "svm.csv"))
    assert b.num_classes == 2 and b.class_names == ["-1", "1"]


def test_parquet_with_nulls_and_text(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    x, species = _table()
    table = pa.table({"a": x[:, 0], "b": x[:, 1].astype(np.float32), "n": np.arange(60), "city": ["x"] * 60,
                      "label": species})
    pq.write_table(table, tmp_path / "t.parquet")
    b = load_dataset(str(tmp_path / "t.parquet"))
    assert b.input_shape == (3,) and b.num_classes == 3 and b.info["table"]["ignored_text_columns"] == ["city"]
    with_null = pa.table({"a": pa.array([1.0, None] + [2.0] * 58), "label": species})
    pq.write_table(with_null, tmp_path / "null.parquet")
    with pytest.raises(UsageError, match="'a' has 1 missing"):
        load_dataset(str(tmp_path / "null.parquet"))
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(UsageError, match="cannot read as parquet"):
        load_dataset(str(tmp_path / "bad.parquet"))


def test_hf_numeric_table_with_splits(tmp_path):
    d = tmp_path / "tab"
    d.mkdir()
    rng = np.random.default_rng(3)
    for name, n in (("train", 40), ("test", 12)):
        rows = "".join(f"{rng.normal():.4f},{rng.normal():.4f},{'ab'[i % 2]},{['cat', 'dog'][i % 2]}\n" for i in range(n))
        (d / f"{name}.csv").write_text("u,v,grp,label\n" + rows)
    b = load_dataset(f"hf:{d}")
    assert b.kind == "vector" and b.input_shape == (2,) and b.class_names == ["cat", "dog"]
    assert len(b.y_test) == 12 and b.info["table"]["ignored_text_columns"] == ["grp"]
    assert b.info["normalization"]["method"] == "standardize"
    one = load_dataset(f"hf:{d}", options={"feature_columns": "v"})
    assert one.input_shape == (1,)


def test_row_index_follows_carved_splits(tmp_path):
    """Each training/validation row knows its row in the file: what per-sample label files align with."""
    rng = np.random.default_rng(4)
    x = np.arange(100, dtype=np.float64)[:, None] + rng.normal(size=(100, 1)) * 0
    np.savez(tmp_path / "d.npz", x=np.concatenate([x, x], 1), y=np.arange(100) % 5)
    b = load_dataset(str(tmp_path / "d.npz"), options={"normalize": False})
    rows = torch.cat([b.train_index, b.val_index])
    assert len(set(rows.tolist())) == len(rows) == len(b.y_train) + len(b.y_val)
    assert torch.equal(b.x_train[:, 0], b.train_index.float()) and torch.equal(b.x_val[:, 0], b.val_index.float())
