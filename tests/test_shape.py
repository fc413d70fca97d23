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


def test_minimiser_targets_have_a_clear_mode_at_any_class_count():
    import torch

    from losscli.profiling import shape

    gen = torch.Generator().manual_seed(0)
    for c in (4, 50, 1000):  # a flat Dirichlet's top two are ~0.007 apart at C = 1000
        q = shape._with_clear_mode(shape._dirichlet(c, gen))
        top = q.topk(2).values
        assert float(top[0] - top[1]) >= shape.MODE_GAP - 1e-12
        assert abs(float(q.sum()) - 1.0) < 1e-12 and bool((q >= 0).all())
    clear = torch.tensor([0.7, 0.2, 0.1], dtype=torch.float64)
    assert torch.equal(shape._with_clear_mode(clear), clear)  # already clear: untouched


def test_symmetry_sum_is_the_same_in_any_tile_size(monkeypatch):
    import torch

    from losscli.profiling import shape

    f, _ = shape._per_sample_fn("gce", 6)
    whole = shape.check_symmetric(f, 6, torch.Generator().manual_seed(1))
    monkeypatch.setattr(shape, "TILE_ELEMENTS", 6 * 6 * 5)  # five rows per call
    tiled = shape.check_symmetric(f, 6, torch.Generator().manual_seed(1))
    assert tiled["sum_spread"] == pytest.approx(whole["sum_spread"], rel=1e-12)
    assert tiled["symmetric"] == whole["symmetric"]


def test_properness_is_judged_relative_to_the_mode_at_many_classes():
    # at C = 100 every probability is small: label smoothing's minimiser is off by ~0.014 in absolute
    # terms (under an absolute 0.02 tolerance it passed as proper) but by ~9% of the top probability
    import torch

    from losscli.profiling import shape

    gen = torch.Generator().manual_seed(0)
    ls, _ = shape._per_sample_fn("label_smoothing", 100)
    ce, _ = shape._per_sample_fn("ce", 100)
    smoothed = shape.check_minimiser(ls, 100, gen, n_dist=4)
    assert not smoothed["proper"] and smoothed["minimiser_rel_error"] > 0.05
    assert shape.check_minimiser(ce, 100, gen, n_dist=4)["proper"]
