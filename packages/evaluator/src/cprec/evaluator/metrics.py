"""The one place where scores become ranks and ranks become HR@K, NDCG@K and MRR.

A target's rank is computed from how many ranked items score strictly higher (`greater`) and how
many score exactly the same (`ties`, the target itself not counted). Ties are resolved either
- `expected` (default): the exact expectation of each metric when ties are broken uniformly at
  random, i.e. the target's rank is uniform over greater+1 .. greater+ties+1. A constant scorer
  thus gets the metrics of a random ranking, no better and no worse; or
- `pessimistic`: the target is ranked after all its ties (rank = greater + ties + 1).
With one relevant item per user the ideal DCG is 1, so NDCG@K = 1/log2(rank+1) when rank <= K.

Per-user values are kept so methods can be compared with a paired test over the same users.
"""

from __future__ import annotations

import re

import numpy as np

from cprec.core.errors import CPRecError

_METRIC = re.compile(r"^(hr|ndcg)@(\d+)$|^mrr$")


def parse_metric(name: str) -> tuple[str, int]:
    """'ndcg@10' -> ('ndcg', 10); 'mrr' -> ('mrr', 0)."""
    match = _METRIC.match(name.lower())
    if not match:
        raise CPRecError(f"unknown metric {name!r} (expected hr@K, ndcg@K or mrr)")
    return (match.group(1), int(match.group(2))) if match.group(1) else ("mrr", 0)


def metric_names(ks: list[int]) -> list[str]:
    return [f"hr@{k}" for k in ks] + [f"ndcg@{k}" for k in ks] + ["mrr"]


def count_ranks(
    scores: np.ndarray,
    targets: np.ndarray,
    excluded: np.ndarray | None = None,
    candidates: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(greater, ties) per user for `scores` [users, items] and target item indices [users].

    `excluded` [users, items] marks items taken out of the ranking (the user's earlier items);
    `candidates` marks the only items ranked (the sampled protocol). The target is always ranked.
    NaN scores count as the lowest possible score.
    """
    scores = np.where(np.isnan(scores), -np.inf, scores)
    rows = np.arange(len(targets))
    target_scores = scores[rows, targets][:, None]
    ranked = np.ones(scores.shape, dtype=bool) if candidates is None else candidates.copy()
    if excluded is not None:
        ranked &= ~excluded
    ranked[rows, targets] = False
    greater = ((scores > target_scores) & ranked).sum(axis=1)
    ties = ((scores == target_scores) & ranked).sum(axis=1)
    return greater.astype(np.int64), ties.astype(np.int64)


def rank_metrics(greater: np.ndarray, ties: np.ndarray, ks: list[int], ties_mode: str = "expected") -> dict:
    """Per-user HR@K, NDCG@K (K in ks) and MRR as float arrays, keyed by metric name."""
    greater = np.asarray(greater, dtype=np.int64)
    ties = np.asarray(ties, dtype=np.int64)
    if ties_mode == "pessimistic":
        greater, ties = greater + ties, np.zeros_like(ties)
    elif ties_mode != "expected":
        raise CPRecError(f"unknown ties mode {ties_mode!r} (expected or pessimistic)")
    top = int((greater + ties).max(initial=0)) + 1
    positions = np.arange(1, top + 1)
    harmonic = np.concatenate([[0.0], np.cumsum(1.0 / positions)])
    span = ties + 1  # the ranks greater+1 .. greater+ties+1 are equally likely
    metrics: dict[str, np.ndarray] = {}
    for k in ks:
        metrics[f"hr@{k}"] = np.clip(k - greater, 0, span) / span
    for k in ks:
        gains = np.where(positions <= k, 1.0 / np.log2(positions + 1), 0.0)
        cumulative = np.concatenate([[0.0], np.cumsum(gains)])
        metrics[f"ndcg@{k}"] = (cumulative[greater + span] - cumulative[greater]) / span
    metrics["mrr"] = (harmonic[greater + span] - harmonic[greater]) / span
    return metrics


def paired_pvalue(a: np.ndarray, b: np.ndarray, test: str = "wilcoxon") -> float:
    """Two-sided p-value of a paired test between two methods' per-user values of one metric."""
    from scipy import stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise CPRecError("paired test needs the same users for both methods")
    if len(a) < 2 or np.allclose(a, b):
        return 1.0
    if test == "wilcoxon":
        p_value = stats.wilcoxon(a, b, zero_method="wilcox").pvalue
    elif test == "ttest":
        p_value = stats.ttest_rel(a, b).pvalue
    else:
        raise CPRecError(f"unknown paired test {test!r} (wilcoxon or ttest)")
    # A constant non-zero difference has no variance: the t statistic is infinite, scipy says NaN.
    return float(p_value) if np.isfinite(p_value) else 0.0


def bootstrap_ci(values: np.ndarray, resamples: int, seed: int, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean, resampling users."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0 or resamples <= 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, 256):  # bounded memory for large user counts
        stop = min(start + 256, resamples)
        means[start:stop] = values[rng.integers(0, len(values), (stop - start, len(values)))].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)
