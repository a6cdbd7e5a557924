import math

import pytest

from factory.core.eval_metrics import (
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


def test_difference_is_a_paired_t_test_over_the_same_problems():
    a = {"p1": 0.0, "p2": 0.0, "p3": 0.0}
    b = {"p1": 1.0, "p2": 1.0, "p3": 0.0}
    d = difference(a, b)
    # diffs 1, 1, 0: mean 2/3, sd sqrt(1/3), se 1/3, t = 2 on 2 df; t(0.975, 2) = 4.302653, two-sided p = 0.1835
    assert d["paired"] and d["n"] == 3 and d["delta"] == pytest.approx(2 / 3)
    assert d["ci95"] == pytest.approx(4.302653 / 3, rel=1e-5) and d["p_value"] == pytest.approx(0.18350, abs=1e-4)
    assert not d["significant"], "three problems cannot tell"
    many = difference({f"p{i}": 0.0 for i in range(10)}, {f"p{i}": 1.0 if i < 8 else 0.0 for i in range(10)})
    # diffs: eight 1s and two 0s: mean 0.8, sd sqrt(0.4 * 0.2 * 10 / 9), se sd / sqrt(10), t(0.975, 9) = 2.262157
    se = math.sqrt(8 * 0.2**2 + 2 * 0.8**2) / 3 / math.sqrt(10)
    assert many["ci_low"] == pytest.approx(0.8 - 2.262157 * se, rel=1e-5) and many["significant"]
    assert many["p_value"] < 0.001


def test_difference_pairs_over_the_shared_problems_only():
    a = {"p1": 0.0, "p2": 0.5, "p3": 0.0, "extra": 1.0}
    b = {"p1": 1.0, "p2": 0.5, "p3": 0.5}
    d = difference(a, b)
    assert d["paired"] and d["n"] == 3 and d["delta"] == pytest.approx(0.5)


def test_constant_differences_are_exact_and_disjoint_sets_are_unpaired():
    same = difference({"p1": 0.0, "p2": 0.5}, {"p1": 0.25, "p2": 0.75})
    assert same["ci95"] == 0 and same["p_value"] == 0.0 and same["significant"]
    unpaired = difference({"p1": 0.0, "p2": 0.0}, {"q1": 1.0, "q2": 0.0})
    assert not unpaired["paired"] and unpaired["delta"] == pytest.approx(0.5) and not unpaired["significant"]
    assert difference({"p1": 0.0}, {"q1": 1.0})["ci95"] is None
