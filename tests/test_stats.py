"""Statistics of the compare report against hand-computed cases."""

import itertools
import math

import pytest

from losscli.report import stats


# ---------------------------------------------------------------------------- summarize


def test_summarize_mean_std_and_t_interval_by_hand():
    s = stats.summarize([0.81, 0.83, 0.80])
    mean = (0.81 + 0.83 + 0.80) / 3
    var = ((0.81 - mean) ** 2 + (0.83 - mean) ** 2 + (0.80 - mean) ** 2) / 2  # ddof = 1
    half = 4.302652729749464 * math.sqrt(var) / math.sqrt(3)  # t_{0.975, 2}
    assert s["n"] == 3
    assert s["values"] == [0.81, 0.83, 0.80]
    assert s["mean"] == pytest.approx(mean, abs=1e-12)
    assert s["std"] == pytest.approx(math.sqrt(var), abs=1e-12)
    assert s["ci95"] == pytest.approx([mean - half, mean + half], abs=1e-8)


def test_summarize_two_values_uses_t_with_one_df():
    s = stats.summarize([1.0, 3.0])
    # mean 2, std sqrt(2), half width 12.706 * sqrt(2) / sqrt(2) = 12.706
    assert s["mean"] == 2.0
    assert s["std"] == pytest.approx(math.sqrt(2.0))
    assert s["ci95"] == pytest.approx([2.0 - 12.706204736, 2.0 + 12.706204736], abs=1e-8)


def test_summarize_single_value_and_empty_and_missing():
    assert stats.summarize([0.5]) == {"values": [0.5], "mean": 0.5, "std": 0.0, "ci95": [0.5, 0.5], "n": 1}
    empty = stats.summarize([])
    assert empty["n"] == 0 and empty["mean"] is None and empty["ci95"] is None
    s = stats.summarize([1.0, None, float("nan"), 3.0])
    assert s["n"] == 2 and s["mean"] == 2.0
    assert s["values"] == [1.0, None, None, 3.0]


def test_summarize_constant_values_give_zero_width_interval():
    s = stats.summarize([0.7, 0.7, 0.7])
    assert s["std"] == 0.0
    assert s["ci95"] == [0.7, 0.7]


def test_t_critical_matches_scipy_when_available():
    scipy_stats = pytest.importorskip("scipy.stats")
    for df in list(range(1, 60)) + [100, 1000]:
        assert stats.t_critical_95(df) == pytest.approx(scipy_stats.t.ppf(0.975, df), abs=1e-6)


# ---------------------------------------------------------------------------- paired test


def test_sign_flip_three_positive_diffs_is_quarter():
    # diffs [1, 2, 3]: of the 8 sign assignments only (+,+,+) and (-,-,-) reach |sum| = 6.
    t = stats.paired_test([1, 2, 3], [0, 0, 0])
    assert t["p_value"] == pytest.approx(0.25)
    assert (t["wins"], t["ties"], t["losses"]) == (3, 0, 0)
    assert t["diff"] == pytest.approx(2.0)
    assert t["n"] == 3
    assert t["test"] == "sign-flip permutation (exact)"
    assert t["min_p_value"] == pytest.approx(0.25)


def test_sign_flip_mixed_signs_by_hand():
    # diffs [1, -1, 2, 3], |sum| = 5. Sums reaching |S| >= 5: 7 (all +), 5 (either 1 flipped) and
    # their mirror images: 6 of 16 -> 0.375.
    t = stats.paired_test([1, -1, 2, 3], [0, 0, 0, 0])
    assert t["p_value"] == pytest.approx(6 / 16)
    assert (t["wins"], t["ties"], t["losses"]) == (3, 0, 1)
    assert t["diff"] == pytest.approx(1.25)


def test_sign_flip_matches_brute_force_enumeration():
    a = [0.71, 0.69, 0.74, 0.70, 0.73]
    b = [0.70, 0.70, 0.70, 0.70, 0.70]
    d = [x - y for x, y in zip(a, b)]
    obs = abs(sum(d))
    hits = sum(1 for signs in itertools.product([1, -1], repeat=5)
               if abs(sum(s * v for s, v in zip(signs, d))) >= obs - 1e-12)
    assert stats.paired_test(a, b)["p_value"] == pytest.approx(hits / 32)


def test_sign_flip_smallest_p_needs_six_seeds():
    assert stats.paired_test([1] * 5, [0] * 5)["p_value"] == pytest.approx(2 / 32)
    assert stats.paired_test([1] * 6, [0] * 6)["p_value"] == pytest.approx(2 / 64)
    assert stats.min_p_value(3) == 0.25
    assert not stats.can_reach_significance(5)
    assert stats.can_reach_significance(6)
    assert stats.min_seeds_for(0.05) == 6


def test_ties_and_direction():
    # identical values tie; lower-is-better metrics count a smaller value as a win
    t = stats.paired_test([0.1, 0.2, 0.3], [0.1, 0.3, 0.2], higher_is_better=False)
    assert (t["wins"], t["ties"], t["losses"]) == (1, 1, 1)
    assert t["p_value"] == pytest.approx(1.0)  # diffs (0, -0.1, 0.1): every assignment reaches |0|
    # a tolerance turns small differences into ties (and zeros them for the test)
    t = stats.paired_test([1.0, 2.0, 3.0], [1.0005, 2.0, 2.0], tie_tol=1e-3)
    assert (t["wins"], t["ties"], t["losses"]) == (1, 2, 0)
    assert t["min_p_value"] == 1.0  # a single non-tied pair can never be significant
    # relative default tolerance: float noise is a tie
    t = stats.paired_test([0.1 + 0.2], [0.3])
    assert t["ties"] == 1


def test_all_ties_gives_p_one_and_missing_pairs_are_dropped():
    t = stats.paired_test([0.5, 0.5], [0.5, 0.5])
    assert t["p_value"] == 1.0 and t["ties"] == 2
    t = stats.paired_test([1.0, None, 3.0], [0.0, 1.0, None])
    assert t["n"] == 1 and t["p_value"] == 1.0
    t = stats.paired_test([], [])
    assert t["p_value"] is None and t["n"] == 0
    with pytest.raises(ValueError):
        stats.paired_test([1, 2], [1])


def test_monte_carlo_above_sixteen_pairs_is_deterministic():
    a = list(range(1, 21))
    t1, t2 = stats.paired_test(a, [0] * 20), stats.paired_test(a, [0] * 20)
    assert t1["p_value"] == t2["p_value"]
    assert t1["p_value"] == pytest.approx(1 / (1 + stats.MC_RESAMPLES))
    assert "Monte Carlo" in t1["test"]
    # a null-like case stays far from significant
    alt = [(-1) ** i * (i + 1) for i in range(20)]
    assert stats.paired_test(alt, [0] * 20)["p_value"] > 0.5


# ---------------------------------------------------------------------------- ranks, significance


def test_rank_average_ties_and_direction():
    assert stats.rank([0.9, 0.8, 0.9, 0.7]) == [1.5, 3, 1.5, 4]
    assert stats.rank([0.9, 0.8, 0.9, 0.7], higher_is_better=False) == [3.5, 2, 3.5, 1]
    assert stats.rank([1.0, 1.0, 1.0]) == [2, 2, 2]
    assert stats.rank([0.5, None, 0.7]) == [2, None, 1]
    assert stats.rank([]) == []
    assert stats.rank([0.1 + 0.2, 0.3]) == [1.5, 1.5]  # float noise ties


def test_significance_and_outcome():
    assert stats.is_significant(0.03125)
    assert not stats.is_significant(0.05)
    assert not stats.is_significant(0.25)
    assert not stats.is_significant(None)
    better = stats.paired_test([1] * 6, [0] * 6)
    assert stats.compare_outcome(better, higher_is_better=True) == "better"
    assert stats.compare_outcome(better, higher_is_better=False) == "worse"
    three = stats.paired_test([1, 2, 3], [0, 0, 0])
    assert stats.compare_outcome(three) == "too_few_seeds"
    mixed = stats.paired_test([1, -1, 2, -2, 1, -1, 3], [0] * 7)
    assert stats.compare_outcome(mixed) == "no_difference"
    assert stats.compare_outcome(stats.paired_test([], [])) == "no_data"
