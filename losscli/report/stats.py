"""Statistics for comparing losses across seeds: summaries, a paired test, ranks.

Pure numpy (no torch, no scipy needed at run time), so reports can be rebuilt
anywhere. Conventions, chosen to be honest with very few seeds:

* ``summarize``: mean, sample standard deviation (``ddof=1``) and a two-sided
  95% confidence interval for the mean from Student's t distribution with
  ``n - 1`` degrees of freedom. Missing values (``None``/NaN, e.g. a metric a
  run could not compute) are kept in ``values`` but left out of the numbers.
  With a single value the spread is unknown: ``std`` is reported as ``0.0`` and
  ``ci95`` as ``[v, v]`` (a degenerate interval, *not* a claim of certainty).
* ``paired_test``: two-sided sign-flip permutation test on the paired
  differences ``a_i - b_i`` (one pair per seed). Under the null hypothesis the
  sign of each difference is a fair coin, so the p-value is the share of the
  ``2**n`` sign assignments whose ``|mean|`` is at least the observed one.
  Exact for ``n <= 16``; above that, ``MC_RESAMPLES`` random assignments drawn
  with the fixed seed ``MC_SEED`` and ``p = (1 + hits) / (1 + resamples)``.
  The smallest p the exact test can give with ``n`` non-tied pairs is
  ``2 / 2**n``: 0.25 with 3 seeds, 0.0625 with 5, 0.03125 with 6. So at
  ``alpha = 0.05`` **at least 6 seeds are needed before any difference can be
  significant**; ``min_p_value`` and ``can_reach_significance`` say so.
* Ties: a pair counts as a tie when ``|a_i - b_i| <= tie_tol``; by default
  ``tie_tol`` is ``1e-12 * max(|a_i|, |b_i|)`` (relative), so only numerically
  identical values tie. Tied differences are set to exactly 0 for the test.
* ``rank``: 1 = best, average ranks for ties, ``None`` for missing means.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

ALPHA = 0.05
EXACT_MAX_N = 16
MC_RESAMPLES = 20_000
MC_SEED = 0
REL_TIE_TOL = 1e-12
TEST_NAME = "sign-flip permutation (exact)"
TEST_NAME_MC = f"sign-flip permutation (Monte Carlo, {MC_RESAMPLES} resamples, seed {MC_SEED})"

# Two-sided 95% critical values of Student's t, t_{0.975, df}, df = 1..30.
_T975 = (12.706204736, 4.30265273, 3.182446305, 2.776445105, 2.570581836, 2.446911851, 2.364624252,
         2.306004135, 2.262157163, 2.228138852, 2.20098516, 2.17881283, 2.160368656, 2.144786688,
         2.131449546, 2.119905299, 2.109815578, 2.10092204, 2.093024054, 2.085963447, 2.079613845,
         2.073873068, 2.06865761, 2.063898562, 2.059538553, 2.055529439, 2.051830516, 2.048407142,
         2.045229642, 2.042272456)
_Z975 = 1.959963984540054


def t_critical_95(df: int) -> float:
    """``t_{0.975, df}``: table for ``df <= 30``, Cornish-Fisher expansion above (error < 1e-7)."""
    if df < 1:
        raise ValueError("degrees of freedom must be >= 1")
    if df <= len(_T975):
        return _T975[df - 1]
    z, v = _Z975, float(df)
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / v + g2 / v**2 + g3 / v**3 + g4 / v**4


def _clean(values: Sequence[Any] | None) -> list[float | None]:
    out: list[float | None] = []
    for v in values or []:
        if v is None:
            out.append(None)
            continue
        f = float(v)
        out.append(None if math.isnan(f) else f)
    return out


def summarize(values: Sequence[Any]) -> dict[str, Any]:
    """``{values, mean, std, ci95, n}`` of per-seed values (see module notes for edge cases).

    ``values`` echoes the input as floats (``None`` for missing); ``n`` counts the
    values used. With ``n == 0`` mean/std/ci95 are ``None``.
    """
    vals = _clean(values)
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
    if not math.isfinite(mean) or not math.isfinite(std):
        return {"values": vals, "mean": mean, "std": std, "ci95": [mean, mean] if std == 0 else None, "n": n}
    half = t_critical_95(n - 1) * std / math.sqrt(n)
    return {"values": vals, "mean": mean, "std": std, "ci95": [mean - half, mean + half], "n": n}


def min_p_value(n: int) -> float:
    """Smallest two-sided p the exact sign-flip test can return with ``n`` non-tied pairs."""
    if n <= 0:
        return 1.0
    return min(1.0, 2.0 / 2.0**n)


def can_reach_significance(n: int, alpha: float = ALPHA) -> bool:
    """Whether ``n`` paired seeds can give ``p < alpha`` at all (False for n <= 5 at 0.05)."""
    return min_p_value(n) < alpha


def min_seeds_for(alpha: float = ALPHA) -> int:
    """Fewest paired seeds for which the exact test can reach ``p < alpha``."""
    n = 1
    while not can_reach_significance(n, alpha):
        n += 1
    return n


def is_significant(p_value: float | None, alpha: float = ALPHA) -> bool:
    """``p < alpha``; a missing p-value is never significant."""
    return p_value is not None and not math.isnan(float(p_value)) and float(p_value) < alpha


def _sign_flip_p(d: np.ndarray) -> tuple[float, str]:
    n = d.size
    observed = abs(float(d.sum()))
    # Sums compared with a tolerance so that float rounding cannot drop the
    # assignments that reproduce the observed statistic exactly.
    tol = 1e-9 * max(observed, float(np.abs(d).sum()), 1e-300)
    if n <= EXACT_MAX_N:
        bits = (np.arange(2**n, dtype=np.int64)[:, None] >> np.arange(n, dtype=np.int64)) & 1
        signs = 1.0 - 2.0 * bits
        sums = np.abs(signs @ d)
        return float(np.count_nonzero(sums >= observed - tol)) / float(2**n), TEST_NAME
    rng = np.random.default_rng(MC_SEED)
    signs = rng.choice(np.array([-1.0, 1.0]), size=(MC_RESAMPLES, n))
    sums = np.abs(signs @ d)
    hits = int(np.count_nonzero(sums >= observed - tol))
    return (1.0 + hits) / (1.0 + MC_RESAMPLES), TEST_NAME_MC


def paired_test(a: Sequence[Any], b: Sequence[Any], higher_is_better: bool = True,
                tie_tol: float | None = None) -> dict[str, Any]:
    """Paired comparison of ``a`` against ``b`` (same seeds, same order).

    Pairs where either side is missing are dropped. Returns ``diff`` (mean of
    ``a - b``, in the metric's own units and sign), ``p_value`` (two-sided
    sign-flip permutation test; ``None`` with no pairs), ``wins``/``ties``/
    ``losses`` counted from ``a``'s side using the metric direction, ``n``
    (pairs used), ``min_p_value`` (the best p possible with this ``n``) and ``test``.
    """
    a_vals, b_vals = _clean(a), _clean(b)
    if len(a_vals) != len(b_vals):
        raise ValueError(f"paired_test needs equal lengths, got {len(a_vals)} and {len(b_vals)}")
    pairs = [(x, y) for x, y in zip(a_vals, b_vals) if x is not None and y is not None]
    n = len(pairs)
    if n == 0:
        return {"diff": None, "p_value": None, "wins": 0, "ties": 0, "losses": 0, "n": 0,
                "min_p_value": 1.0, "test": TEST_NAME}
    x = np.array([p[0] for p in pairs], dtype=float)
    y = np.array([p[1] for p in pairs], dtype=float)
    d = x - y
    tol = np.full(n, float(tie_tol)) if tie_tol is not None else REL_TIE_TOL * np.maximum(np.abs(x), np.abs(y))
    tied = np.abs(d) <= tol
    better = (d > 0) if higher_is_better else (d < 0)
    wins = int(np.count_nonzero(better & ~tied))
    ties = int(np.count_nonzero(tied))
    losses = n - wins - ties
    d_test = np.where(tied, 0.0, d)
    if not np.all(np.isfinite(d_test)):
        p, test = None, TEST_NAME
    else:
        p, test = _sign_flip_p(d_test)
    best_p = min_p_value(n - ties)
    if n - ties > EXACT_MAX_N:
        best_p = max(best_p, 1.0 / (1.0 + MC_RESAMPLES))
    return {"diff": float(d.mean()), "p_value": p, "wins": wins, "ties": ties, "losses": losses, "n": n,
            "min_p_value": best_p, "test": test}


def rank(means: Sequence[Any], higher_is_better: bool = True, tie_tol: float | None = None) -> list[Any]:
    """Ranks of ``means`` (1 = best). Ties share the average rank (e.g. 2.5); ``None`` stays ``None``.

    Whole ranks are returned as ``int``, shared half ranks as ``float``. Values tie when
    they differ by at most ``tie_tol`` (default: ``1e-12`` relative).
    """
    vals = _clean(means)
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
        r = (pos + 1 + end) / 2.0  # average of ranks pos+1 .. end
        for i in order[pos:end]:
            ranks[i] = int(r) if float(r).is_integer() else r
        pos = end
    return ranks


def compare_outcome(test: dict[str, Any], higher_is_better: bool = True, alpha: float = ALPHA) -> str:
    """One word for a ``paired_test`` result: ``better``/``worse`` (significant, by direction),
    ``no_difference`` (not significant), ``too_few_seeds`` (no p below alpha was possible),
    or ``no_data``."""
    if not test or test.get("p_value") is None or test.get("diff") is None:
        return "no_data"
    if is_significant(test["p_value"], alpha):
        d = test["diff"]
        good = d > 0 if higher_is_better else d < 0
        return "better" if good else "worse"
    if not can_reach_significance(test.get("n", 0) - test.get("ties", 0), alpha):
        return "too_few_seeds"
    return "no_difference"
