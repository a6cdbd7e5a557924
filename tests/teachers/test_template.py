import pytest

from factory.config.stages import TemplateConfig
from factory.core.errors import FactoryError
from factory.storage.records import Prompt
from factory.teachers import parse_teacher
from factory.teachers.template import build_messages


def test_math_and_code_templates_keep_braces():
    cfg = TemplateConfig()
    math = build_messages(Prompt("s", "math", "Find {x} in {1, 2}"), cfg)
    assert math == [{"role": "user", "content": "Find {x} in {1, 2}\n\nPlease reason step by step, and put your "
                                                "final answer within \\boxed{}."}]
    code = build_messages(Prompt("s", "code", "def f():"), cfg)
    assert code[0]["content"].startswith("def f():") and "```python" in code[0]["content"]
    sys = build_messages(Prompt("s", "gym:x", "q"), TemplateConfig(system="Be brief.", math="Q: {problem}"))
    assert sys == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q: q"}]


def test_parse_teacher():
    assert parse_teacher("openai:deepseek-ai/DeepSeek-R1:free") == {"engine": "openai",
                                                                   "model": "deepseek-ai/DeepSeek-R1:free"}
    with pytest.raises(FactoryError, match="unknown engine 'tgi'"):
        parse_teacher("tgi:model")
    with pytest.raises(FactoryError, match="expected ENGINE:MODEL"):
        parse_teacher("justamodel")
