"""Issue 25's statistics: a variant against the base, pooled over seeds and paired over problems; Holm's
adjustment for the number of variants. Checked against hand-computed cases."""

import pytest

from factory.core.eval_metrics import difference, holm, pooled_difference


def test_holm_matches_a_hand_computed_case():
    # m = 4, sorted 0.01, 0.02, 0.03, 0.5 -> 4 x 0.01, 3 x 0.02, max(0.06, 2 x 0.03), 1 x 0.5
    assert holm([0.03, 0.01, 0.5, 0.02]) == pytest.approx([0.06, 0.04, 0.5, 0.06])
    assert holm([None, 0.2]) == [None, 0.2] and holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])


def test_pooled_difference_averages_the_seeds_per_problem():
    base1, var1 = {"p1": 0.0, "p2": 0.5, "p3": 0.25}, {"p1": 0.5, "p2": 0.5, "p3": 0.75}
    base2, var2 = {"p1": 0.25, "p2": 0.5, "p3": 0.0}, {"p1": 0.25, "p2": 1.0, "p3": 0.5}
    d = pooled_difference([(base1, var1), (base2, var2)])
    # per problem: p1 (0.5 + 0)/2 = 0.25, p2 (0 + 0.5)/2 = 0.25, p3 (0.5 + 0.5)/2 = 0.5: mean 1/3
    assert d["delta"] == pytest.approx(1 / 3) and d["n"] == 3 and d["seeds"] == 2 and d["paired"]
    same = difference({"p1": 0, "p2": 0, "p3": 0}, {"p1": 0.25, "p2": 0.25, "p3": 0.5})
    assert d["ci_low"] == pytest.approx(same["ci_low"]) and d["p_value"] == pytest.approx(same["p_value"])
