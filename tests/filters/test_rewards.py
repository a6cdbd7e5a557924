"""GRPO rewards are the filters: on crafted completions each reward equals the verdict of its filter."""

import pytest

from factory.filters.config import FilterConfig
from factory.filters.rewards import RewardsConfig, RewardScorer, completion_row, overlong_penalty, score
from factory.storage.records import Prompt
from tests.filters.helpers import judge
from train.stages.grpo import GrpoConfig

PROMPT = Prompt(source="test", task="math", problem="What is 2 + 2?", reference_answer="4")
COLUMNS = {c: getattr(PROMPT, c) for c in ("prompt_id", "source", "task", "problem", "reference_answer", "tests",
                                            "metadata")}
ZH = "我们先把这两个数加起来，然后检查结果。" * 6
ALL = RewardsConfig.model_validate({"language": {"weight": 1.0}, "length": {"weight": 1.0, "buffer": 10}})

COMPLETIONS = {
    "right": ("<think>Two and two make four.</think> The answer is \\boxed{4}.", 1.0, 1.0),
    "wrong": ("<think>Two and two make five.</think> The answer is \\boxed{5}.", 0.0, 1.0),
    "no think": ("Two and two make four, so \\boxed{4}.", 1.0, 0.0),
    "truncated": ("<think>Two and two make", 0.0, 0.0),
}


@pytest.mark.parametrize("name", list(COMPLETIONS))
def test_accuracy_and_format_rewards_are_the_filters_verdicts(name):
    text, accuracy, fmt = COMPLETIONS[name]
    row = completion_row(COLUMNS, text, tokens=12, limit=100)
    rewards = score(row, 100, ALL)
    assert (rewards["accuracy"], rewards["format"]) == (accuracy, fmt)
    assert rewards["accuracy"] == float(judge("correctness", row).status == "pass")
    assert rewards["format"] == float(judge("format", row, require_think_tags=True).ok)


def test_language_reward_is_the_share_in_the_target_language():
    clean = score(completion_row(COLUMNS, "<think>Two and two make four, as we check twice.</think> \\boxed{4}", 12,
                                 100), 100, ALL)["language"]
    mixed_row = completion_row(COLUMNS, f"<think>Two and two make four. {ZH}</think> \\boxed{{4}}", 12, 100)
    mixed = score(mixed_row, 100, ALL)["language"]
    assert clean == 1.0 and 0.0 <= mixed < 0.9
    assert mixed == pytest.approx(1 - judge("language", mixed_row).score)
    assert not judge("language", mixed_row).ok


def test_truncated_completions_and_the_overlong_penalty():
    row = completion_row(COLUMNS, "<think>Two and two make", tokens=100, limit=100)
    assert row["truncated"] and row["reasoning_source"] == "unclosed_think"
    assert not judge("length", row).ok
    assert score(row, 100, ALL)["length"] == -1.0
    assert [overlong_penalty(t, 100, 10) for t in (80, 90, 95, 100, 120)] == [0.0, 0.0, -0.5, -1.0, -1.0]


def test_answer_tags_option():
    cfg = RewardsConfig.model_validate({"format": {"format": {"require_think_tags": True, "answer_tags": True}}})
    tagged = completion_row(COLUMNS, "<think>2 + 2 = 4</think> <answer>\\boxed{4}</answer>", 12, 100)
    bare = completion_row(COLUMNS, "<think>2 + 2 = 4</think> \\boxed{4}", 12, 100)
    assert score(tagged, 100, cfg) == {"accuracy": 1.0, "format": 1.0}
    assert score(bare, 100, cfg) == {"accuracy": 1.0, "format": 0.0}
    assert judge("format", bare, answer_tags=True).reason == "no_answer_tags"


def test_no_reference_gives_no_accuracy_reward():
    row = completion_row({**COLUMNS, "reference_answer": None}, COMPLETIONS["right"][0], 12, 100)
    assert score(row, 100, RewardsConfig())["accuracy"] is None


def test_the_scorer_names_each_reward_and_scores_a_completion_once():
    scorer = RewardScorer(ALL, limit=100, workers=1)
    fns = scorer.functions()
    assert [f.__name__ for f in fns] == ["accuracy", "format", "language", "length"]
    assert scorer.weights() == [1.0, 1.0, 1.0, 1.0]
    texts = [COMPLETIONS["right"][0], COMPLETIONS["wrong"][0], COMPLETIONS["right"][0]]
    columns = {k: [v] * 3 for k, v in COLUMNS.items()}
    kwargs = {"prompts": ["p"] * 3, "completions": texts, "completion_ids": [[1] * 12] * 3, **columns}
    assert fns[0](**kwargs) == [1.0, 0.0, 1.0] and fns[1](**kwargs) == [1.0, 1.0, 1.0]
    assert scorer.scored == 2, "the repeated completion and the second reward came from the cache"
    chat = {**kwargs, "completions": [[{"role": "assistant", "content": t}] for t in texts]}
    assert fns[0](**chat) == [1.0, 0.0, 1.0]


def test_the_scorer_in_worker_processes_agrees():
    texts = [t for t, _, _ in COMPLETIONS.values()]
    columns = {k: [v] * len(texts) for k, v in COLUMNS.items()}
    ids = [[1] * 12] * len(texts)
    one = RewardScorer(ALL, 100, workers=1).scores(texts, ids, columns)
    with RewardScorer(ALL, 100, workers=2) as scorer:
        two = scorer.scores(texts, ids, columns)
    assert one == two and [s["accuracy"] for s in two] == [c[1] for c in COMPLETIONS.values()]


def test_grpo_config_checks_groups_and_rewards():
    from factory.config.loader import build
    from factory.core.errors import FactoryError

    assert GrpoConfig().loss_type == "dapo" and GrpoConfig().num_generations == 16 and GrpoConfig().beta == 0.001
    with pytest.raises(FactoryError, match="multiple of num_generations"):
        build(GrpoConfig, {"num_generations": 3, "batch_size": 4, "grad_accum": 1})
    with pytest.raises(FactoryError, match="every reward has weight 0"):
        build(GrpoConfig, {"rewards": {"accuracy": {"weight": 0}, "format": {"weight": 0}}})
    assert FilterConfig().format.require_think_tags is False, "filtering keeps its defaults"


def test_the_scorer_keeps_one_pool_for_every_step_and_closes_it():
    texts = [t for t, _, _ in COMPLETIONS.values()]
    columns = {k: [v] * len(texts) for k, v in COLUMNS.items()}
    with RewardScorer(ALL, 100, workers=2) as scorer:
        pool = scorer.pool
        scorer.scores(texts, [[1] * 12] * len(texts), columns, step=0)
        scorer.scores([t + " Again." for t in texts], [[1] * 13] * len(texts), columns, step=1)
        assert scorer.pool is pool and scorer.scored == 2 * len(texts)
    assert scorer.pool is None


def test_the_shuffled_control_gives_each_prompts_rewards_to_its_completions_at_random(tmp_path):
    import json

    from factory.storage.records import Prompt as P

    other = P(source="test", task="math", problem="What is 3 + 3?", reference_answer="6")
    wrong6 = "<think>Three and three make seven.</think> The answer is \\boxed{7}."
    texts = [COMPLETIONS["right"][0], COMPLETIONS["wrong"][0], COMPLETIONS["wrong"][0].replace("five", "fiv"),
             COMPLETIONS["wrong"][0].replace("five", "fve"), wrong6, wrong6.replace("seven", "sevn")]
    prompts = [PROMPT] * 4 + [other] * 2
    columns = {c: [getattr(p, c) for p in prompts] for c in COLUMNS}
    cfg = RewardsConfig.model_validate({"control": "shuffled"})
    true = RewardScorer(RewardsConfig(), 100).scores(texts, [[1] * 9] * 6, columns, step=3)
    log = tmp_path / "rollouts.jsonl"
    fns = RewardScorer(cfg, 100, log=log).functions()
    state = type("State", (), {"global_step": 3})()
    kwargs = {"prompts": ["p"] * 6, "completions": texts, "completion_ids": [[1] * 9] * 6, **columns}
    given = fns[0](**kwargs, trainer_state=state)
    assert given == fns[0](**kwargs, trainer_state=state), "every call for the same batch: the same permutation"
    assert [t["accuracy"] for t in true] == [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert sorted(given[:4]) == [0.0, 0.0, 0.0, 1.0] and given[4:] == [0.0, 0.0], "values stay within the prompt"
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["true_rewards"]["accuracy"] for r in rows] == [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert [r["rewards"]["accuracy"] for r in rows] == given
    # over many steps the right completion's reward lands on each of the four in turn: no information left
    firsts = {fns[0](**kwargs, trainer_state=type("S", (), {"global_step": s})()).index(1.0) for s in range(40)}
    assert firsts == {0, 1, 2, 3}
