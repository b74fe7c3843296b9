import math

import numpy as np
import pytest

from cprec.core.errors import CPRecError
from cprec.evaluator.metrics import bootstrap_ci, count_ranks, paired_pvalue, parse_metric, rank_metrics

SCORES = np.array([[0.9, 0.5, 0.5, 0.1]])
TARGET = np.array([1])  # one item above it, one tie


def metrics(scores=SCORES, targets=TARGET, ks=(1, 2, 3), ties="expected", excluded=None, candidates=None):
    greater, tied = count_ranks(scores, targets, excluded, candidates)
    return {name: float(values[0]) for name, values in rank_metrics(greater, tied, list(ks), ties).items()}


def test_ties_by_expected_rank():
    # rank is 2 or 3 with equal chance
    got = metrics()
    assert got["hr@1"] == 0 and got["hr@2"] == 0.5 and got["hr@3"] == 1
    assert got["ndcg@2"] == pytest.approx(0.5 / math.log2(3))
    assert got["ndcg@3"] == pytest.approx(0.5 * (1 / math.log2(3) + 1 / math.log2(4)))
    assert got["mrr"] == pytest.approx((1 / 2 + 1 / 3) / 2)


def test_ties_pessimistic():
    got = metrics(ties="pessimistic")
    assert got["hr@2"] == 0 and got["hr@3"] == 1
    assert got["ndcg@3"] == pytest.approx(0.5) and got["mrr"] == pytest.approx(1 / 3)


def test_constant_scorer_gets_the_random_ranking_expectation():
    got = metrics(scores=np.zeros((1, 10)), targets=np.array([4]), ks=(5,))
    assert got["hr@5"] == pytest.approx(0.5)
    assert got["mrr"] == pytest.approx(sum(1 / r for r in range(1, 11)) / 10)


def test_masking_removes_earlier_items_but_never_the_target():
    excluded = np.array([[True, True, False, False]])  # the target itself is listed: it stays ranked
    got = metrics(excluded=excluded)
    assert got["hr@1"] == 0.5 and got["mrr"] == pytest.approx(0.75)


def test_k_beyond_rank_and_beyond_catalogue():
    got = metrics(scores=np.array([[3.0, 2.0, 1.0, 0.0]]), targets=np.array([2]), ks=(2, 3, 10))
    assert got["hr@2"] == 0 and got["ndcg@2"] == 0
    assert got["hr@3"] == 1 and got["ndcg@3"] == pytest.approx(0.5)
    assert got["hr@10"] == 1 and got["ndcg@10"] == pytest.approx(0.5)


def test_sampled_candidates_and_nan_scores():
    candidates = np.array([[False, True, False, True]])
    assert metrics(candidates=candidates)["mrr"] == 1.0
    nan_above = np.array([[np.nan, 0.5, 0.2, 0.1]])
    assert metrics(scores=nan_above)["mrr"] == 1.0


def test_several_users_vectorised():
    scores = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    greater, ties = count_ranks(scores, np.array([0, 0]))
    assert greater.tolist() == [2, 0] and ties.tolist() == [0, 0]
    assert rank_metrics(greater, ties, [1])["hr@1"].tolist() == [0.0, 1.0]


def test_paired_tests_and_bootstrap():
    rng = np.random.default_rng(0)
    a = rng.random(200)
    assert paired_pvalue(a, a) == 1.0
    b = a + 0.1 + rng.normal(0, 0.05, 200)
    assert paired_pvalue(b, a) < 1e-6 and paired_pvalue(b, a, "ttest") < 1e-6
    assert paired_pvalue(a + rng.normal(0, 0.05, 200), a) > 0.01
    low, high = bootstrap_ci(a, 500, seed=0)
    assert low < a.mean() < high and high - low < 0.2


def test_metric_names():
    assert parse_metric("NDCG@10") == ("ndcg", 10) and parse_metric("mrr") == ("mrr", 0)
    with pytest.raises(CPRecError, match="unknown metric"):
        parse_metric("auc")
