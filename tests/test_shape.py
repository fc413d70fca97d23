"""Analytic shape checks on losses whose properties are known."""

from __future__ import annotations

import pytest

from losscli.losses import LOSSES
from losscli.profiling.shape import analyse_loss, analyse_losses


def _need(name):
    if name not in LOSSES:
        pytest.skip(f"{name} not registered yet")


@pytest.mark.parametrize("name", ["mae", "rce"])
def test_symmetric_and_bounded(name):
    _need(name)
    row = analyse_loss(name, c=4, with_curves=False)
    assert row["bounded"] and row["symmetric"], row
    assert row["sum_spread"] < 1e-6
    assert row["calibrated"]
    assert row["disagreements"] == []


def test_ce_unbounded_proper_calibrated():
    row = analyse_loss("ce", c=4, with_curves=True)
    assert not row["bounded"] and not row["symmetric"]
    assert row["proper"] and row["calibrated"] and row["minimiser_max_error"] < 0.02
    curves = row["curves"]
    assert curves["loss_vs_p"][0] > curves["loss_vs_p"][-1]  # -log p decreasing in p
    assert len(curves["grad_norm_vs_margin"]) == len(curves["margin"])


def test_label_smoothing_not_proper_but_calibrated():
    row = analyse_loss("label_smoothing", c=4, with_curves=False)
    assert row["calibrated"] and not row["proper"]


def test_report_and_plot(tmp_path):
    rep = analyse_losses(["ce", "label_smoothing"], c=3, with_curves=True)
    assert rep["schema"] == "losscli/shape/v1" and len(rep["rows"]) == 2
    from losscli.profiling.shape import plot_shapes

    paths = plot_shapes(rep, str(tmp_path / "shape.png"))
    assert paths and all((tmp_path / p.split("/")[-1]).exists() for p in paths)


def test_batch_coupled_loss_skipped_with_reason():
    _need("jaccard")
    rep = analyse_losses(["jaccard"], c=3, with_curves=False)
    assert rep["rows"] == [] and "batch-coupled" in rep["skipped"][0]["reason"]
