"""R1-distill style chat templates: no default system prompt, the assistant's content verbatim.

Qwen2.5's template adds "You are Qwen, created by Alibaba Cloud..." and SmolLM2's "You are a helpful AI assistant
named SmolLM..." whenever a conversation has no system message; Llama 3.1's adds a dated system block. R1 used no
system prompt, and its distilled students' templates add none. So when a model's own template would inject one,
local engines render prompts with the template of its family below, and students are trained and saved with it.
Prompts that carry a system message (`template.system`) render the same either way.

Hand-written: two Jinja strings in the formats these families already use (ChatML, Llama 3 headers); transformers
has no "no default system" variant of either.
"""

from __future__ import annotations

CHATML = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
LLAMA3 = ("{{ bos_token }}{% for message in messages %}<|start_header_id|>{{ message['role'] }}<|end_header_id|>"
          "\n\n{{ message['content'] }}<|eot_id|>{% endfor %}"
          "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")
_PROBE = "R1 probe: 2 + 2?"

# DeepSeek-R1 paper, Table 1: the template of DeepSeek-R1-Zero (for a base model: no chat template).
R1_ZERO = ("A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
           "The assistant first thinks about the reasoning process in the mind and then provides the user with the "
           "answer. The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> "
           "tags, respectively, i.e., <think> reasoning process here </think> <answer> answer here </answer>. "
           "User: {prompt}. Assistant:")


def r1_zero_chat_template(bos: bool = False) -> str:
    """R1-Zero's template as a chat template: a policy trained on it is saved with it, so every engine that
    renders the model's chat template (vLLM, transformers, a served endpoint) prompts it as it was trained. The
    user's last message is the prompt; an assistant turn follows as plain text (a later SFT stage). `bos`: the
    tokenizer puts a BOS before plain text (Llama), which engines rendering a chat template do not add."""
    head, tail = R1_ZERO.split("{prompt}")
    return (("{{ bos_token }}" if bos else "") + "{% for message in messages %}{% if message['role'] == 'user' %}"
            + head + "{{ message['content'] }}"
            + tail + "{% elif message['role'] == 'assistant' %} {{ message['content'] }}{{ eos_token }}{% endif %}"
            "{% endfor %}")


def r1_template(tokenizer) -> str | None:
    """The R1-distill style template of this tokenizer's family, or None for a family this does not know."""
    vocab = tokenizer.get_vocab()
    if "<|im_start|>" in vocab and "<|im_end|>" in vocab:
        return CHATML
    if "<|start_header_id|>" in vocab and "<|eot_id|>" in vocab:
        return LLAMA3
    return None


def hidden_system(tokenizer, template: str | None = None) -> str | None:
    """What the template puts before a lone user message when that includes a system turn; None when nothing."""
    text = tokenizer.apply_chat_template([{"role": "user", "content": _PROBE}], tokenize=False,
                                         add_generation_prompt=True, chat_template=template)
    head = text[: text.index(_PROBE)]
    return head if "system" in head.lower() else None


def prompt_template(tokenizer) -> str | None:
    """The template a local engine should render prompts with: None (the model's own) unless that one injects a
    default system prompt, in which case the family's R1-style template. Unknown families keep their own, with a
    warning, since rewriting a template blind could break the model's format."""
    if not tokenizer.chat_template or hidden_system(tokenizer) is None:
        return None
    template = r1_template(tokenizer)
    if template is None:
        import sys

        sys.stderr.write(f"warning: the chat template of {tokenizer.name_or_path} adds a system prompt that R1 did "
                         "not use, and factory has no R1-style template for its family\n")
    return template


def assistant_text(reasoning: str | None, answer: str, empty_think: bool = False) -> str:
    """A trace's assistant turn in R1's format (what SFT trains on, and each side of a preference pair); a
    non-reasoning sample (reasoning None) is the answer alone, or after an empty <think> block."""
    if reasoning is None:
        return f"<think>\n\n</think>\n\n{answer}" if empty_think else answer
    return f"<think>\n{reasoning}\n</think>\n\n{answer}"
