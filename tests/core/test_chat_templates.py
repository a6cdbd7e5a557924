"""No hidden system prompt: R1 used none, so neither a local teacher's prompt nor a student's SFT sample may carry
the default one that Qwen2.5's and SmolLM2's templates inject."""

import pytest
from transformers import AutoTokenizer

from factory.core.chat_templates import CHATML, LLAMA3, hidden_system, prompt_template, r1_template
from factory.storage.models import model_dir

USER = [{"role": "user", "content": "What is 3 + 4?"}]


@pytest.fixture(scope="module", params=["smollm2-135m", "qwen2.5-coder-0.5b"])
def tokenizer(request):
    path = model_dir(request.param)
    if not (path / "tokenizer_config.json").exists():
        pytest.fail(f"{request.param} is not prepared: run `make setup`")
    return AutoTokenizer.from_pretrained(path)


def test_the_bundled_templates_inject_a_system_prompt_and_ours_do_not(tokenizer):
    assert hidden_system(tokenizer) is not None, "the model's own template adds one"
    assert r1_template(tokenizer) == CHATML and prompt_template(tokenizer) == CHATML
    text = tokenizer.apply_chat_template(USER, tokenize=False, add_generation_prompt=True, chat_template=CHATML)
    assert text == "<|im_start|>user\nWhat is 3 + 4?<|im_end|>\n<|im_start|>assistant\n"


def test_an_explicit_system_message_renders_the_same_either_way(tokenizer):
    messages = [{"role": "system", "content": "Be brief."}, *USER]
    own = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert own == tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                                chat_template=CHATML)


def test_the_student_sample_has_no_system_turn_and_keeps_think(tokenizer):
    from factory.core.chat_templates import assistant_text
    from train.sft_data import IGNORE, tokenize

    tokenizer.chat_template = r1_template(tokenizer)
    ids, labels, prompt = tokenize(tokenizer, USER, assistant_text("3 plus 4 is 7.", "\\boxed{7}"))
    full = tokenizer.decode(ids)
    assert "system" not in full and prompt == "<|im_start|>user\nWhat is 3 + 4?<|im_end|>\n<|im_start|>assistant\n"
    trained = tokenizer.decode([t for t in labels if t != IGNORE])
    assert trained == "<think>\n3 plus 4 is 7.\n</think>\n\n\\boxed{7}<|im_end|>\n"


def test_the_hf_teacher_renders_without_a_system_prompt(tiny_model_dir):
    from factory.config.teacher import SamplingConfig, TeacherConfig
    from factory.teachers.hf_engine import HFTeacher

    teacher = HFTeacher(TeacherConfig(engine="hf", model=str(tiny_model_dir)), SamplingConfig(n=1, max_tokens=2))
    assert teacher.chat_template == CHATML


def test_llama3_family_template():
    class Llama:
        bos_token = "<|begin_of_text|>"

        def get_vocab(self):
            return {"<|start_header_id|>": 1, "<|eot_id|>": 2}

    assert r1_template(Llama()) == LLAMA3
