"""Statistics of the compare report against hand-computed cases and scipy."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps

from losscli import stats


# ---------------------------------------------------------------------------- summarize


def test_summarize_mean_std_and_t_interval_by_hand():
    s = stats.summarize([0.81, 0.83, 0.80])
    mean = (0.81 + 0.83 + 0.80) / 3
    var = ((0.81 - mean) ** 2 + (0.83 - mean) ** 2 + (0.80 - mean) ** 2) / 2  # ddof = 1
    half = 4.302652729749464 * math.sqrt(var) / math.sqrt(3)  # t_{0.975, 2}
    assert s["n"] == 3 and s["values"] == [0.81, 0.83, 0.80]
    assert s["mean"] == pytest.approx(mean, abs=1e-12)
    assert s["std"] == pytest.approx(math.sqrt(var), abs=1e-12)
    assert s["ci95"] == pytest.approx([mean - half, mean + half], abs=1e-8)


def test_summarize_accepts_numpy_and_edge_cases():
    assert stats.summarize(np.array([1.0, 3.0]))["mean"] == 2.0  # arrays: no truthiness check
    assert stats.summarize([0.5]) == {"values": [0.5], "mean": 0.5, "std": 0.0, "ci95": [0.5, 0.5], "n": 1}
    empty = stats.summarize([])
    assert empty["n"] == 0 and empty["mean"] is None and empty["ci95"] is None
    s = stats.summarize([1.0, None, float("nan"), 3.0])
    assert s["n"] == 2 and s["mean"] == 2.0 and s["values"] == [1.0, None, None, 3.0]
    assert stats.summarize([0.7, 0.7, 0.7])["ci95"] == [0.7, 0.7]


# ---------------------------------------------------------------------------- paired tests


def test_t_seeds_equals_scipy_ttest_rel():
    a, b = [0.71, 0.69, 0.74, 0.70, 0.73], [0.70, 0.70, 0.70, 0.70, 0.71]
    t = stats.paired_test(np.array(a), np.array(b), test="t-seeds")
    ref = sps.ttest_rel(a, b)
    assert t["p_value"] == pytest.approx(ref.pvalue, rel=1e-10)
    d = np.array(a) - np.array(b)
    half = sps.t.ppf(0.975, 4) * d.std(ddof=1) / math.sqrt(5)
    assert t["diff_ci95"] == pytest.approx([d.mean() - half, d.mean() + half])
    assert (t["wins"], t["ties"], t["losses"]) == (3, 1, 1)  # 0.70 vs 0.70 ties


def test_t_with_testset_variance_by_hand():
    a, b, v = [0.73, 0.75, 0.71], [0.55, 0.545, 0.552], 0.0004
    d = np.array(a) - np.array(b)
    seed_var = d.var(ddof=1) / 3
    se = math.sqrt(seed_var + v)
    df = (seed_var + v) ** 2 / (seed_var**2 / 2)  # Satterthwaite, bootstrap df infinite
    t = stats.paired_test(a, b, test="t", extra_variance=v)
    assert t["se"] == pytest.approx(se) and t["df"] == pytest.approx(df)
    seeds_only = stats.paired_test(a, b, test="t-seeds")["p_value"]
    assert t["p_value"] == pytest.approx(max(2 * sps.t.sf(d.mean() / se, df), seeds_only))
    lo, hi = t["diff_ci95"]
    assert (lo > 0) == (t["p_value"] < 0.05)  # the interval agrees with the test
    # the test-set term can only make the test more cautious, also when it is large
    for extra in (1e-6, 1e-4, v, 0.01):
        assert stats.paired_test(a, b, test="t", extra_variance=extra)["p_value"] >= seeds_only


def test_t_edge_cases():
    assert stats.paired_test([0.5], [0.4], test="t")["p_value"] is None  # one seed: no spread to test
    assert stats.paired_test([0.5], [0.4], test="t", extra_variance=0.01)["p_value"] is None
    same = stats.paired_test([0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
    assert same["p_value"] == 1.0 and same["ties"] == 3
    shifted = stats.paired_test([0.75, 0.5, 0.25], [0.5, 0.25, 0.0])  # exactly constant difference, no spread
    assert shifted["p_value"] == 0.0 and shifted["diff"] == 0.25 and shifted["diff_ci95"] == [0.25, 0.25]
    assert stats.paired_test([], [])["p_value"] is None
    with pytest.raises(ValueError):
        stats.paired_test([1, 2], [1])


def test_sign_flip_by_hand_and_brute_force():
    t = stats.paired_test([1, 2, 3], [0, 0, 0], test="signflip")
    assert t["p_value"] == pytest.approx(0.25) and t["min_p_value"] == pytest.approx(0.25)
    # diffs [1, -1, 2, 3]: |S| = 5 is reached by 6 of the 16 sign assignments
    assert stats.paired_test([1, -1, 2, 3], [0, 0, 0, 0], test="signflip")["p_value"] == pytest.approx(6 / 16)
    a, b = [0.71, 0.69, 0.74, 0.70, 0.73], [0.70] * 5
    d = np.array(a) - np.array(b)
    hits = sum(abs(sum(s * x for s, x in zip(signs, d))) >= abs(d.sum()) - 1e-12
               for signs in itertools.product([1, -1], repeat=5))
    assert stats.paired_test(a, b, test="signflip")["p_value"] == pytest.approx(hits / 32)
    # the effect keeps its 95% interval under the sign-flip test (it had none): the seeds-only t-interval
    assert stats.paired_test(a, b, test="signflip")["diff_ci95"] == pytest.approx(
        stats.paired_test(a, b, test="t-seeds")["diff_ci95"])
    assert stats.paired_test([1.0], [0.0], test="signflip")["diff_ci95"] is None  # one seed: no spread


def test_lower_is_better_direction():
    t = stats.paired_test([0.1, 0.2, 0.3], [0.2, 0.3, 0.4], higher_is_better=False)
    assert (t["wins"], t["losses"]) == (3, 0) and t["diff"] == pytest.approx(-0.1)


# ---------------------------------------------------------------------------- corrections


def test_holm_by_hand():
    # sorted p: 0.005 (x4), 0.01 (x3), 0.03 (x2), 0.04 (x1 -> kept monotone at 0.06)
    assert stats.adjust([0.01, 0.04, 0.03, 0.005], "holm") == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.adjust([0.5, 0.6], "holm") == pytest.approx([1.0, 1.0])  # capped at 1


def test_benjamini_hochberg_by_hand_and_none_entries():
    # sorted p: 0.005 * 4/1 = 0.02, 0.01 * 4/2 = 0.02, 0.03 * 4/3 = 0.04, 0.04 * 4/4 = 0.04
    assert stats.adjust([0.01, 0.04, 0.03, 0.005], "bh") == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert stats.adjust([None, 0.02, None, 0.04], "holm") == [None, pytest.approx(0.04), None, pytest.approx(0.04)]
    assert stats.adjust([0.02, 0.04], "none") == pytest.approx([0.02, 0.04])
    with pytest.raises(ValueError):
        stats.adjust([0.1], "bonferonni")


# ---------------------------------------------------------------------------- effect, power, ranks


def test_probability_of_improvement_counts_pairs_and_ties():
    # pairs (a_i, b_j): 1 vs 2 loses, 2 vs 2 ties, 3 vs 2 wins -> (0 + 0.5 + 1) / 3
    assert stats.prob_improvement([1, 2, 3], [2, 2, 2]) == pytest.approx(0.5)
    assert stats.prob_improvement([3, 4], [1, 2]) == 1.0
    assert stats.prob_improvement([3, 4], [1, 2], higher_is_better=False) == 0.0
    assert stats.prob_improvement([], [1]) is None


def test_power_matches_a_simulation_and_seeds_needed_is_minimal():
    level, effect, sd = 0.05, 0.02, 0.02
    n = stats.seeds_needed(effect, sd, 0.0, level)
    assert stats.power(effect, sd, 0.0, n, level) >= stats.POWER > stats.power(effect, sd, 0.0, n - 1, level)
    rng = np.random.default_rng(0)
    d = rng.normal(effect, sd, size=(4000, n))
    p = sps.ttest_1samp(d, 0.0, axis=1).pvalue
    assert abs((p < level).mean() - stats.power(effect, sd, 0.0, n, level)) < 0.03


def test_power_is_finite_and_seeds_needed_is_not_the_seeds_already_run():
    # a large effect with a tiny spread: scipy's nct lower tail is nan there, and nan < POWER is
    # False, so 2 inconclusive seeds (t with 1 df at alpha/2) were said to be enough
    level, effect, sd = 0.025, 0.073, 0.00424
    assert stats.power(effect, sd, 0.0, 2, level) == pytest.approx(0.66, abs=0.01)
    assert stats.seeds_needed(effect, sd, 0.0, level) == 3


def test_power_keeps_the_seeds_only_floor_of_the_test():
    # paired_test's p is never below the seeds-only test's (n - 1 df): a test-set term cannot make
    # 2 seeds enough when the seeds-only test with 1 df cannot reject
    level, effect, sd, v = 0.025, 0.073, 0.00424, 1e-4
    assert stats.power(effect, sd, v, 2, level) == pytest.approx(stats.power(effect, sd, 0.0, 2, level))
    assert stats.seeds_needed(effect, sd, v, level) == 3
    assert stats.power(0.02, 0.02, 1e-6, 20, 0.05) <= stats.power(0.02, 0.02, 0.0, 20, 0.05)


def test_seeds_needed_is_none_when_the_test_set_hides_the_effect():
    assert stats.seeds_needed(0.02, 0.02, extra_variance=0.0001) is None  # test-set SD 0.01: z = 2 at best
    assert stats.seeds_needed(0.0, 0.02) is None
    assert stats.seeds_needed(0.05, 0.02, extra_variance=1e-6) is not None


def test_rank_average_ties_and_direction():
    assert stats.rank([0.9, 0.8, 0.9, None]) == [1.5, 3, 1.5, None]
    assert stats.rank([0.1, 0.3, 0.2], higher_is_better=False) == [1, 3, 2]


def test_seeds_for_interval_is_the_fewest_seeds_within_the_margin():
    from scipy import stats as sps

    def half(n, sd, v):
        return sps.t.ppf(0.975, n - 1) * (sd**2 / n + v) ** 0.5

    for sd, v, margin in ((0.03, 0.0, 0.01), (0.02, 1e-5, 0.01), (0.005, 0.0, 0.02)):
        n = stats.seeds_for_interval(margin, sd, v)
        assert half(n, sd, v) <= margin
        assert n == 2 or half(n - 1, sd, v) > margin
    assert stats.seeds_for_interval(0.01, 0.02, 0.0001) is None  # the test-set term alone is 1.96 points wide
    assert stats.seeds_for_interval(0.0, 0.02) is None and stats.seeds_for_interval(0.01, None) is None
