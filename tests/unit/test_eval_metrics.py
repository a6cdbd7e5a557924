import math

import pytest

from factory.eval_metrics import (
    Z95,
    difference,
    majority_correct,
    mean_ci,
    normalise_answer,
    pass_at_k,
    problem_metrics,
)


@pytest.mark.parametrize("n,c,k,expected", [
    (5, 2, 1, 0.4),
    (5, 2, 2, 1 - 3 / 10),            # 1 - C(3,2)/C(5,2)
    (8, 1, 4, 1 - 35 / 70),           # 1 - C(7,4)/C(8,4)
    (4, 0, 4, 0.0),
    (4, 4, 1, 1.0),
    (4, 2, 3, 1.0),                   # fewer wrong samples than k: a right one is always drawn
])
def test_pass_at_k_matches_hand_computed_values(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected)


def test_pass_at_k_rejects_impossible_counts():
    with pytest.raises(ValueError, match="k <= n"):
        pass_at_k(4, 1, 5)
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)


def test_majority_vote_with_ties_and_abstentions():
    assert majority_correct(["1", "1", "2"], [True, True, False]) == 1.0
    assert majority_correct(["2", "2", "1"], [False, False, True]) == 0.0
    assert majority_correct(["1", "2", "1", "2"], [True, False, True, False]) == 0.5  # a tie: expected score
    assert majority_correct(["1", "2", "3"], [False, False, True]) == pytest.approx(1 / 3)
    assert majority_correct([None, None, "7"], [False, False, True]) == 1.0  # no answer, no vote
    assert majority_correct([None, None], [False, False]) == 0.0
    assert normalise_answer(" $ 3 / 4 $.") == "3/4" and normalise_answer("$$") is None


def test_mean_and_its_95_interval():
    mean, half = mean_ci([0.0, 1.0])
    assert mean == 0.5 and half == pytest.approx(Z95 * math.sqrt(0.5 / 2))
    assert mean_ci([0.3]) == (0.3, None)
    assert mean_ci([1.0, 1.0, 1.0]) == (1.0, 0.0)


def test_problem_metrics_keys_follow_n_and_k():
    m = problem_metrics([True, False, False, False], ["4", "5", "5", "6"], [1, 4, 8])
    assert m == {"pass@1": 0.25, "pass@4": 1.0, "maj@1": 1.0, "maj@4": 0.0}
    assert "maj@1" not in problem_metrics([True], [None], [1], majority=False)


def test_difference_is_paired_over_the_same_problems():
    a = {"p1": 0.0, "p2": 0.0, "p3": 0.0}
    b = {"p1": 1.0, "p2": 1.0, "p3": 0.0}
    d = difference(a, b)
    # diffs 1, 1, 0: mean 2/3, sample variance 1/3, half-width 1.96 * sqrt(1/9)
    assert d["paired"] and d["delta"] == pytest.approx(2 / 3) and d["ci95"] == pytest.approx(Z95 / 3)
    assert d["significant"]
    small = difference(a, {"p1": 1.0, "p2": 0.0, "p3": 0.0})
    assert not small["significant"]
    unpaired = difference(a, {"q1": 1.0, "q2": 0.0})
    assert not unpaired["paired"] and unpaired["delta"] == pytest.approx(0.5)
