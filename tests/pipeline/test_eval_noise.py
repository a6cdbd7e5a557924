"""bench/eval_noise.py: the paired difference's variance and the part of it that is sampling within problems."""

import json

from bench.eval_noise import compare, per_problem


def _eval(path, rows):
    problems = [{"prompt_id": f"p{i}", "samples": [{"correct": c} for c in row]} for i, row in enumerate(rows)]
    path.write_text(json.dumps({"metrics": {}, "problems": problems}))
    return per_problem(path)


def test_variance_splits_into_sampling_and_the_rest(tmp_path):
    before = _eval(tmp_path / "b.json", [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]])
    after = _eval(tmp_path / "a.json", [[1, 1, 0, 0], [1, 1, 1, 0], [0, 0, 0, 0], [1, 1, 1, 1]])
    row = compare(before, after)
    # p3 is in `after` only and is left out; differences 0.25, 0.25, 0
    assert row["problems"] == 3 and row["difference"] == round(1 / 6, 4)
    assert row["variance"] == round(1 / 48, 4)
    # p(1-p)/(n-1): 0.0625 + 0.0833 for p0, 0.0833 + 0.0625 for p1, 0 for p2
    assert row["sampling_variance"] == round((0.1875 / 3 + 0.25 / 3) * 2 / 3, 4)
    assert row["samples_needed_for_80pct_power"] == round(4 * (1 / 48) * (2.8 * 6) ** 2 / 3, 1)
