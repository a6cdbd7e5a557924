import pytest

from factory.teachers.reasoning import split_reasoning

CASES = [
    # (text, reasoning_content, expected reasoning, expected answer, expected source)
    ("<think>\nadd 2 and 2\n</think>\n\nIt is \\boxed{4}.", None, "add 2 and 2", "It is \\boxed{4}.", "think_tags"),
    ("add 2 and 2\n</think>\n\\boxed{4}", None, "add 2 and 2", "\\boxed{4}", "prefilled_think"),
    ("<think>\nadd 2 and 2, then carry on and on", None, "add 2 and 2, then carry on and on", "", "unclosed_think"),
    ("\\boxed{4}", "add 2 and 2", "add 2 and 2", "\\boxed{4}", "reasoning_content"),
    ("<think></think>\\boxed{4}", "server side", "server side", "\\boxed{4}", "reasoning_content"),
    ("<think></think>\n\\boxed{4}", None, "", "\\boxed{4}", "think_tags"),
    ("<think>a</think>b</think>c", None, "a", "b</think>c", "think_tags"),
    ("First, 2+2.\n\nThat is 4.\n\nSo the answer is \\boxed{4}.", None, "First, 2+2.\n\nThat is 4.",
     "So the answer is \\boxed{4}.", "untagged"),
    ("Just \\boxed{4}.", None, "", "Just \\boxed{4}.", "untagged"),
    ("Plan.\n\n```python\ndef f():\n\n    return 1\n```", None, "Plan.", "```python\ndef f():\n\n    return 1\n```",
     "untagged"),
]


@pytest.mark.parametrize("text,rc,reasoning,answer,source", CASES)
def test_split_reasoning(text, rc, reasoning, answer, source):
    assert split_reasoning(text, rc) == (reasoning, answer, source)


def test_whitespace_only_reasoning_content_falls_back_to_tags():
    assert split_reasoning("<think>r</think>a", "  \n") == ("r", "a", "think_tags")


@pytest.mark.parametrize("mode,expected", [("answer", ("", "step\n\n\\boxed{1}")),
                                           ("reasoning", ("step\n\n\\boxed{1}", ""))])
def test_untagged_modes(mode, expected):
    reasoning, answer, source = split_reasoning("step\n\n\\boxed{1}", None, mode)
    assert (reasoning, answer) == expected and source == "untagged"
