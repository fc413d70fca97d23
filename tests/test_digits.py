"""Real data end to end: scikit-learn's bundled digits (offline) exported as .npz, CSV and parquet,
trained with `losscli train` and compared with `losscli compare` (small budget)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

import losscli.cli as cli

datasets = pytest.importorskip("sklearn.datasets")
cli._register_commands()


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """The 1797 8x8 digits: raw 0-16 pixel counts, as people have them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = datasets.load_digits()
    root = tmp_path_factory.mktemp("digits")
    x, y = d.data.astype(np.int64), d.target.astype(np.int64)
    np.savez(root / "digits.npz", x=x, y=y)
    header = ",".join([f"pixel_{i}" for i in range(64)] + ["digit"])
    rows = "\n".join(",".join(map(str, [*r, t])) for r, t in zip(x, y))
    (root / "digits.csv").write_text(header + "\n" + rows + "\n")
    cols = {f"pixel_{i}": x[:, i] for i in range(64)}
    cols["label"] = [f"digit-{t}" for t in y]  # text labels, as exported tables often have
    pq.write_table(pa.table(cols), root / "digits.parquet")
    return root


def _main(args, capsys):
    try:
        cli.main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("name,extra", [("digits.npz", []), ("digits.csv", ["--label-column", "digit"]),
                                        ("digits.parquet", [])])
def test_train_on_digits(digits, tmp_path, capsys, name, extra):
    code, out, err = _main(["train", "--dataset", str(digits / name), *extra, "--epochs", "4", "--device", "cpu",
                            "--out", str(tmp_path / "run"), "--quiet", "--format", "json"], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["status"] == "ok" and report["config"]["model"]["resolved_name"] == "mlp"
    assert report["data"]["normalization"]["method"] == "standardize"
    assert report["data"]["num_classes"] == 10 and report["data"]["input_shape"] == [64]
    assert report["metrics"]["test"]["accuracy"] > 0.85


def test_compare_on_digits_parquet_through_hugging_face(digits, tmp_path, capsys):
    """`compare --dataset hf:...` used to inherit the default preset's cnn1d and fail every run: the
    model is auto unless given, and the resolved configuration is printed and recorded first."""
    out_dir = tmp_path / "cmp"
    code, out, err = _main(["compare", "--dataset", f"hf:{digits / 'digits.parquet'}", "--losses", "ce,gce",
                            "--seeds", "2", "--noise", "none", "--epochs", "3", "--jobs", "1", "--device", "cpu",
                            "--out", str(out_dir), "--format", "csv"], capsys)
    assert code == 0, err
    config = yaml.safe_load((out_dir / "config.yaml").read_text())
    assert config["model"] == {"name": "auto", "resolved": "mlp"}
    assert config["data"]["kind"] == "vector" and config["data"]["classes"] == 10
    assert "model     mlp (auto" in err and "data      hf:" in err
    assert err.index("configuration (recorded in") < err.index("compare: 4 runs")  # before the first run
    report = yaml.safe_load((out_dir / "report.yaml").read_text())
    assert (report["n_runs"], report["n_failed"], report["n_pending"]) == (4, 0, 0)
    lines = out.strip().splitlines()
    assert lines[0].startswith("dataset,noise,imbalance,loss") and len(lines) == 3  # csv: header + ce + gce
