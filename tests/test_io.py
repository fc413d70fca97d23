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
