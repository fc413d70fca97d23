"""Atomic writes: a failed write leaves the previous file intact and no temp file behind."""

from __future__ import annotations

import os

import pytest

from losscli.atomic import atomic_torch_save, atomic_write_text, write_yaml


def test_failed_write_keeps_old_content(tmp_path, monkeypatch):
    target = tmp_path / "report.yaml"
    write_yaml(target, {"status": "ok", "value": 1})

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_text(target, "status: half-written")
    monkeypatch.undo()
    assert target.read_text().startswith("status: ok")
    assert [p.name for p in tmp_path.iterdir()] == ["report.yaml"]  # temp file cleaned up


def test_torch_save_round_trip(tmp_path):
    import torch

    atomic_torch_save({"w": torch.arange(3)}, tmp_path / "sub" / "m.pt")
    assert torch.load(tmp_path / "sub" / "m.pt", weights_only=True)["w"].tolist() == [0, 1, 2]


def test_yaml_is_plain(tmp_path):
    import torch
    import yaml

    write_yaml(tmp_path / "a.yaml", {"t": torch.tensor([1.5]), "v": torch.__version__, "nan": float("nan")})
    data = yaml.safe_load((tmp_path / "a.yaml").read_text())
    assert data == {"t": [1.5], "v": str(torch.__version__), "nan": None}


def test_atomic_writes_apply_the_umask(tmp_path):
    import os

    from losscli.atomic import atomic_write_text

    old = os.umask(0o022)
    try:
        p = atomic_write_text(tmp_path / "shared.yaml", "a: 1\n")
        assert p.stat().st_mode & 0o777 == 0o644  # teammates can read reports
        os.umask(0o077)
        q = atomic_write_text(tmp_path / "private.yaml", "a: 1\n")
        assert q.stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


def test_a_failed_write_names_the_file(tmp_path, monkeypatch):
    import errno
    import os

    from losscli.atomic import atomic_write_bytes

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OSError) as info:
        atomic_write_bytes(tmp_path / "report.yaml", b"x" * 10)
    assert info.value.filename == str(tmp_path / "report.yaml") and info.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []  # no temp file left behind


def test_yaml_text_is_the_pure_python_emitters():
    # dump_yaml uses libyaml's emitter when present: reports must read exactly as before
    import yaml

    from losscli.serialize import dump_yaml, to_plain

    data = {
        "schema": "losscli/compare/v2", "empty": {}, "none": None, "flag": True,
        "text": "héllo: a\nsecond line", "quoted": "yes", "num_like": "1e3", "long": "word " * 40,
        "floats": [0.1, 1e-300, float("nan"), float("inf"), -0.0, 123456789.125], "ints": [0, -3, 2**40],
        "nested": [{"loss": "focal(gamma=2)", "p": [0.5, [1, 2]]}, [], "- dash"],
    }
    assert dump_yaml(data) == yaml.safe_dump(to_plain(data), sort_keys=False, allow_unicode=True, width=120)


def test_a_report_counts_as_finished_only_with_a_finite_headline_metric():
    # a report.yaml edited or damaged to accuracy .nan was counted as a finished run on resume
    from losscli.engine.rundir import RUN_SCHEMA, report_problem

    def report(**test):
        return {"schema": RUN_SCHEMA, "status": "ok", "metrics": {"test": test}}

    assert report_problem(report(accuracy=0.91)) is None
    assert report_problem(report(accuracy=1)) is None
    for bad in (float("nan"), float("inf"), True, "0.9"):
        assert report_problem(report(accuracy=bad)) is not None, bad
    assert report_problem(report(nll=0.3)) == "report.yaml lacks its test metrics"


def test_json_output_writes_nan_and_inf_as_null():
    # `profile --shape --format json` crashed (exit 1, nothing on stdout) on an unbounded loss whose
    # max_value is inf: JSON has no NaN or Infinity, so both are null there; YAML keeps .inf
    import json
    import math

    from losscli.serialize import dump_json, dump_yaml

    data = {"rows": [{"max_value": math.inf, "low": -math.inf, "nll": math.nan, "ok": 1.5}]}
    assert json.loads(dump_json(data)) == {"rows": [{"max_value": None, "low": None, "nll": None, "ok": 1.5}]}
    assert ".inf" in dump_yaml(data)
