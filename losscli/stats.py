"""Statistics for comparing losses across seeds: summaries, paired tests, multiple-comparison
control, effect sizes, probability of improvement, seeds needed (to detect a difference or to
narrow its interval). Distributions from scipy.stats.

Tests (``paired_test(test=...)``) on per-seed paired differences ``d_s = loss_s - baseline_s``:

* ``t`` (default): Welch-type t-test of the mean difference whose standard error also counts
  the **test-set sampling variance** ``v`` (``SE^2 = s^2/n + v``; ``v`` from a bootstrap over
  test examples, see :mod:`losscli.report.testset`; 0 when per-example predictions are not
  available), with Satterthwaite degrees of freedom. Seeds capture training randomness; ``v``
  captures that the test set itself is a sample, whose quirks all seeds share (a seeds-only
  test rejects a true null more and more often as seeds are added when two losses are good on
  different examples). Assumes roughly normal per-seed differences.
* ``t-seeds``: the classical paired t-test (``scipy.stats.ttest_rel``), seeds only.
* ``signflip``: exact sign-flip permutation test (no distributional assumption); with n seeds
  its p cannot go below ``2 / 2**n`` (0.25 with 3 seeds).

A tie is a pair with ``|d| <= 1e-12 * max(|a|, |b|)``. Families of comparisons are corrected
with Holm (default) or Benjamini-Hochberg (:func:`adjust`).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

ALPHA = 0.05


def _scipy_stats():
    """scipy.stats, imported on first use: it costs ~1 s, and commands that only validate a config
    (`train`, `eval`, every worker process) read this module's names without testing anything."""
    from scipy import stats

    return stats

TESTS = {
    "t": "paired t-test on per-seed differences, standard error including the test-set bootstrap variance "
         "(Satterthwaite df)",
    "t-seeds": "paired t-test on per-seed differences (seeds only)",
    "signflip": "exact sign-flip permutation test on per-seed differences",
}
CORRECTIONS = {"holm": "Holm (family-wise error rate)", "bh": "Benjamini-Hochberg (false discovery rate)",
               "none": "no correction"}
EXACT_MAX_N = 16
MC_RESAMPLES = 20_000
MC_SEED = 0
REL_TIE_TOL = 1e-12
POWER = 0.8  # the power seeds_needed aims for
MAX_SEEDS = 1000


def clean(values: Sequence[Any] | None) -> list[float | None]:
    """Floats, with None for missing/NaN; accepts lists, tuples and numpy arrays."""
    out: list[float | None] = []
    for v in (list(values) if values is not None else []):
        if v is None:
            out.append(None)
            continue
        f = float(v)
        out.append(None if math.isnan(f) else f)
    return out


def summarize(values: Sequence[Any]) -> dict[str, Any]:
    """``{values, mean, std, ci95, n}``: sample std (ddof=1), two-sided 95% t-interval of the mean.

    Missing values stay in ``values`` as None and are left out of the numbers. One value: std 0
    and ``ci95 = [v, v]`` (degenerate, not a claim of certainty); none: mean/std/ci95 None.
    """
    vals = clean(values)
    finite = np.array([v for v in vals if v is not None], dtype=float)
    n = int(finite.size)
    if n == 0:
        return {"values": vals, "mean": None, "std": None, "ci95": None, "n": 0}
    if np.all(finite == finite[0]):  # identical values: exact mean, no spread (no float noise)
        v = float(finite[0])
        return {"values": vals, "mean": v, "std": 0.0, "ci95": [v, v], "n": n}
    mean = float(finite.mean())
    if n == 1:
        return {"values": vals, "mean": mean, "std": 0.0, "ci95": [mean, mean], "n": 1}
    std = float(finite.std(ddof=1))
    if not (math.isfinite(mean) and math.isfinite(std)):
        return {"values": vals, "mean": mean, "std": std, "ci95": None, "n": n}
    half = float(_scipy_stats().t.ppf(0.975, n - 1)) * std / math.sqrt(n)
    return {"values": vals, "mean": mean, "std": std, "ci95": [mean - half, mean + half], "n": n}


def min_p_value(n: int) -> float:
    """Smallest two-sided p the exact sign-flip test can give with ``n`` non-tied pairs."""
    return 1.0 if n <= 0 else min(1.0, 2.0 / 2.0**n)


def _sign_flip_p(d: np.ndarray) -> float:
    n = d.size
    observed = abs(float(d.sum()))
    # compared with a tolerance so float rounding cannot drop assignments equal to the observed sum
    tol = 1e-9 * max(observed, float(np.abs(d).sum()), 1e-300)
    if n <= EXACT_MAX_N:
        bits = (np.arange(2**n, dtype=np.int64)[:, None] >> np.arange(n, dtype=np.int64)) & 1
        sums = np.abs((1.0 - 2.0 * bits) @ d)
        return float(np.count_nonzero(sums >= observed - tol)) / float(2**n)
    signs = np.random.default_rng(MC_SEED).choice(np.array([-1.0, 1.0]), size=(MC_RESAMPLES, n))
    hits = int(np.count_nonzero(np.abs(signs @ d) >= observed - tol))
    return (1.0 + hits) / (1.0 + MC_RESAMPLES)


def _t_p(d: np.ndarray, extra_variance: float) -> tuple[float, float, float, float]:
    """(p, standard error, df, 95% half-width) of the two-sided t-test of mean(d) = 0 with extra
    (test-set) variance.

    Satterthwaite df (the bootstrap variance comes from thousands of examples: df ~ infinite). The
    p-value is never below the seeds-only test's: the test-set term can only make a comparison more
    cautious (a large, precisely known term would otherwise raise the df and shrink p).
    """
    n = d.size
    seed_var = float(d.var(ddof=1)) / n
    se2 = seed_var + extra_variance
    mean = abs(float(d.mean()))
    if se2 <= 0:  # no spread at all: either no difference or a constant one
        return (1.0 if mean == 0.0 else 0.0), 0.0, float(n - 1), 0.0
    df = se2**2 / (seed_var**2 / (n - 1)) if seed_var > 0 else 1e9
    p = float(2.0 * _scipy_stats().t.sf(mean / math.sqrt(se2), df))
    half = float(_scipy_stats().t.ppf(0.975, df)) * math.sqrt(se2)
    if seed_var > 0 and extra_variance > 0:
        p = max(p, float(2.0 * _scipy_stats().t.sf(mean / math.sqrt(seed_var), n - 1)))
        half = max(half, float(_scipy_stats().t.ppf(0.975, n - 1)) * math.sqrt(seed_var))
    return p, math.sqrt(se2), float(df), half


def paired_test(a: Sequence[Any], b: Sequence[Any], higher_is_better: bool = True, test: str = "t",
                extra_variance: float = 0.0, tie_tol: float | None = None) -> dict[str, Any]:
    """Paired comparison of ``a`` (the loss) with ``b`` (the baseline), one pair per seed.

    Pairs with a missing side are dropped. Returns ``diff`` (mean of a - b, the metric's own units
    and sign), ``diff_ci95`` (the test's t-interval; ``signflip``: the seeds-only one), ``p_value``
    (two-sided; None when it cannot be computed, e.g. one seed with the t-test),
    ``wins``/``ties``/``losses`` from the loss's side, ``n``, ``test``,
    ``se`` and ``df`` (t-tests) and ``extra_variance`` (the test-set variance used).
    """
    if test not in TESTS:
        raise ValueError(f"unknown test {test!r}; use one of {', '.join(TESTS)}")
    a_vals, b_vals = clean(a), clean(b)
    if len(a_vals) != len(b_vals):
        raise ValueError(f"paired_test needs equal lengths, got {len(a_vals)} and {len(b_vals)}")
    pairs = [(x, y) for x, y in zip(a_vals, b_vals) if x is not None and y is not None]
    n = len(pairs)
    out: dict[str, Any] = {"diff": None, "diff_ci95": None, "p_value": None, "wins": 0, "ties": 0, "losses": 0,
                           "n": n, "test": test, "se": None, "df": None,
                           "extra_variance": float(extra_variance) if test == "t" else 0.0}
    if n == 0:
        return out
    x = np.array([p[0] for p in pairs], dtype=float)
    y = np.array([p[1] for p in pairs], dtype=float)
    d = x - y
    tol = np.full(n, float(tie_tol)) if tie_tol is not None else REL_TIE_TOL * np.maximum(np.abs(x), np.abs(y))
    tied = np.abs(d) <= tol
    better = (d > 0) if higher_is_better else (d < 0)
    out.update(diff=float(d.mean()), wins=int(np.count_nonzero(better & ~tied)), ties=int(np.count_nonzero(tied)))
    out["losses"] = n - out["wins"] - out["ties"]
    d = np.where(tied, 0.0, d)
    if not np.all(np.isfinite(d)):
        return out
    if test == "signflip":
        out["p_value"] = _sign_flip_p(d)
        out["min_p_value"] = min_p_value(n - out["ties"])
    if n < 2:  # one seed: its spread is unknown, nothing to test
        return out
    if test == "signflip":  # the effect still gets its interval: the seeds-only t-interval of the mean
        half = _t_p(d, 0.0)[3]
        out["diff_ci95"] = [out["diff"] - half, out["diff"] + half]
        return out
    p, se, df, half = _t_p(d, extra_variance if test == "t" else 0.0)
    out.update(p_value=p, se=se, df=df)
    out["diff_ci95"] = [out["diff"] - half, out["diff"] + half]
    return out


def adjust(p_values: Sequence[float | None], method: str = "holm") -> list[float | None]:
    """Adjusted p-values of one family (None entries stay None and are not counted).

    ``holm``: step-down Holm (controls the family-wise error rate); ``bh``: Benjamini-Hochberg
    (controls the false discovery rate; ``scipy.stats.false_discovery_control``); ``none``.
    """
    if method not in CORRECTIONS:
        raise ValueError(f"unknown correction {method!r}; use one of {', '.join(CORRECTIONS)}")
    idx = [i for i, p in enumerate(p_values) if p is not None and not math.isnan(float(p))]
    out: list[float | None] = [None] * len(p_values)
    if not idx:
        return out
    p = np.array([float(p_values[i]) for i in idx])
    if method == "none":
        adj = p
    elif method == "bh":
        adj = _scipy_stats().false_discovery_control(p, method="bh")
    else:
        m = p.size
        order = np.argsort(p, kind="stable")
        stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])  # (m - k) p_(k), k = 0.., monotone
        adj = np.empty(m)
        adj[order] = np.minimum(stepped, 1.0)
    for i, v in zip(idx, adj):
        out[i] = float(v)
    return out


def prob_improvement(a: Sequence[Any], b: Sequence[Any], higher_is_better: bool = True) -> float | None:
    """P(a run of the loss beats a run of the baseline): over all seed pairs (i, j), the share with
    a_i better than b_j, ties counting half (the Mann-Whitney statistic; rliable's probability of
    improvement). It estimates the chance that the loss wins on a new seed."""
    x = np.array([v for v in clean(a) if v is not None])
    y = np.array([v for v in clean(b) if v is not None])
    if x.size == 0 or y.size == 0:
        return None
    diff = x[:, None] - y[None, :]
    if not higher_is_better:
        diff = -diff
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


def _t_power(effect: float, se2: float, df: float, level: float) -> float:
    tcrit = float(_scipy_stats().t.ppf(1 - level / 2, df))
    nc = abs(effect) / math.sqrt(se2)
    lower = float(_scipy_stats().nct.cdf(-tcrit, df, nc))  # the wrong-sign tail: tiny, and nan when nc is large
    return float(_scipy_stats().nct.sf(tcrit, df, nc)) + (lower if math.isfinite(lower) else 0.0)


def power(effect: float, seed_sd: float, extra_variance: float, n: int, level: float) -> float:
    """Power of the two-sided t-test at ``level`` to detect ``effect`` with ``n`` seeds, as
    :func:`paired_test` runs it: with a test-set term it rejects only when the seeds-only test
    (n - 1 df) rejects too, so its power is at most the smaller of the two, which is used."""
    seed_var = seed_sd**2 / n
    se2 = seed_var + extra_variance
    if se2 <= 0:
        return 1.0
    df = se2**2 / (seed_var**2 / (n - 1)) if seed_var > 0 else 1e9
    p = _t_power(effect, se2, df, level)
    if seed_var > 0 and extra_variance > 0:
        p = min(p, _t_power(effect, seed_var, n - 1, level))
    return p


def seeds_needed(effect: float | None, seed_sd: float | None, extra_variance: float = 0.0,
                 level: float = ALPHA, target: float = POWER) -> int | None:
    """Fewest seeds (>= 2) for which the t-test at ``level`` detects ``effect`` with probability
    ``target``, if the per-seed spread is ``seed_sd``; None when no number of seeds would (the
    effect is zero, or the test-set variance alone hides it: a bigger test set is needed)."""
    if effect is None or seed_sd is None or effect == 0 or not math.isfinite(effect):
        return None
    if extra_variance > 0 and power(effect, 0.0, extra_variance, 10**6, level) < target:
        return None
    return _fewest_seeds(lambda n: power(effect, seed_sd, extra_variance, n, level) >= target)


def seeds_for_interval(margin: float | None, seed_sd: float | None, extra_variance: float = 0.0,
                       confidence: float = 0.95) -> int | None:
    """Fewest seeds (>= 2) whose ``confidence`` interval of the mean difference is likely no wider
    than ``margin`` on each side, if the per-seed spread is ``seed_sd``; None when no number of
    seeds up to ``MAX_SEEDS`` would get there (the test-set variance alone is too wide).

    The half-width is taken as ``t(n - 1) * sqrt(sd^2 / n + v)``: the seeds-only degrees of freedom
    with the whole standard error, at least as wide as :func:`paired_test`'s interval.
    """
    if margin is None or seed_sd is None or not margin > 0 or not math.isfinite(margin):
        return None
    quantile = 0.5 + confidence / 2.0

    def half(n: int) -> float:
        return float(_scipy_stats().t.ppf(quantile, n - 1)) * math.sqrt(seed_sd**2 / n + extra_variance)

    return _fewest_seeds(lambda n: half(n) <= margin)  # the half-width shrinks with n


def _fewest_seeds(enough: Callable[[int], bool]) -> int | None:
    """The smallest n in [2, MAX_SEEDS] for which ``enough(n)`` holds (``enough`` is monotone in n),
    or None: doubling, then bisection (few evaluations when the answer is small)."""
    lo, hi = 2, 2
    while not enough(hi):
        if hi >= MAX_SEEDS:
            return None
        lo, hi = hi, min(hi * 2, MAX_SEEDS)
    while lo < hi:
        mid = (lo + hi) // 2
        if enough(mid):
            hi = mid
        else:
            lo = mid + 1
    return hi


def rank(means: Sequence[Any], higher_is_better: bool = True, tie_tol: float | None = None) -> list[Any]:
    """Ranks of ``means`` (1 = best). Ties share the average rank (e.g. 2.5); None stays None."""
    vals = clean(means)
    idx = [i for i, v in enumerate(vals) if v is not None]
    order = sorted(idx, key=lambda i: -vals[i] if higher_is_better else vals[i])  # type: ignore[operator]
    ranks: list[Any] = [None] * len(vals)
    pos = 0
    while pos < len(order):
        end = pos + 1
        first = vals[order[pos]]
        while end < len(order):
            nxt = vals[order[end]]
            tol = tie_tol if tie_tol is not None else REL_TIE_TOL * max(abs(first), abs(nxt))  # type: ignore[arg-type]
            if abs(nxt - first) <= tol:  # type: ignore[operator]
                end += 1
            else:
                break
        r = (pos + 1 + end) / 2.0
        for i in order[pos:end]:
            ranks[i] = int(r) if float(r).is_integer() else r
        pos = end
    return ranks
