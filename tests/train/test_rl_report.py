"""The GRPO report: the true accuracy under a control, and rollouts fenced so that model output cannot break out."""

from train.rl_report import _fenced, step_timing, true_accuracy, write_summary


def test_true_accuracy_per_step_reads_the_true_rewards_of_a_control():
    rollouts = [{"step": 0, "rewards": {"accuracy": 1.0}, "true_rewards": {"accuracy": 0.0}},
                {"step": 0, "rewards": {"accuracy": 0.0}, "true_rewards": {"accuracy": 1.0}},
                {"step": 1, "rewards": {"accuracy": 0.0}, "true_rewards": {"accuracy": 1.0}},
                {"step": 1, "rewards": {"accuracy": None}}]
    assert true_accuracy(rollouts) == {1: 0.5, 2: 1.0}


def test_a_rollout_with_fences_of_its_own_stays_inside_its_block(tmp_path):
    evil = "text\n````\n# Heading\n<script>alert(1)</script>\n```"
    lines = _fenced(evil)
    assert lines[0] == "`````text" and lines[-1] == "`````" and lines[1] == evil
    summary = {"model": "/m/tiny", "steps": 2, "rewards": {"accuracy": 1.0}, "data": {"template": "chat"},
               "first": {"reward": 0.25, "step": 1}, "last": {"reward": 0.5, "step": 2}}
    rollouts = [{"step": s, "tokens": 5, "rewards": {"accuracy": float(s)}, "completion": evil if s else "a" * 900}
                for s in (0, 1)]
    write_summary(tmp_path, summary, rollouts)
    md = (tmp_path / "summary.md").read_text()
    assert "| reward | 0.250 | 0.500 |" in md and "a" * 600 + " […]" in md and "a" * 601 not in md
    assert md.count("`````text") == 1 and "## Rollouts of the last step (2)" in md


def test_step_timing_is_the_median_step_split_into_generation_and_the_rest():
    rows = [{"step": 1, "step_s": 10.0, "generate_s": 6.0}, {"step": 2, "step_s": 30.0, "generate_s": 20.0},
            {"step": 3, "step_s": 12.0, "generate_s": 8.0}, {"step": 4, "loss": 0.1}]
    assert step_timing(rows) == {"steps_timed": 3, "median_step_s": 12.0, "median_generate_s": 8.0,
                                 "median_update_s": 4.0, "generate_share": 0.667}
    assert step_timing([{"step": 1, "loss": 0.1}]) is None
