import pytest
from transformers import AutoTokenizer

from factory.core.chat_templates import assistant_text
from factory.core.errors import FactoryError
from tests.train.helpers import write_kept
from train.sft_data import IGNORE, build_samples, tokenize
from train.students import PRESETS, resolve_student

MSGS = [{"role": "user", "content": "What is 2 + 2?"}]


@pytest.fixture
def tok(smollm2_dir):
    return AutoTokenizer.from_pretrained(smollm2_dir)


def test_loss_covers_the_assistant_turn_with_reasoning_and_end_of_turn(tok):
    ids, labels, prompt = tokenize(tok, MSGS, assistant_text("Two and two make four.", "\\boxed{4}"))
    trained = tok.decode([t for t in labels if t != IGNORE])
    masked = tok.decode([i for i, t in zip(ids, labels) if t == IGNORE])
    assert trained.startswith("<think>\nTwo and two make four.\n</think>\n\n\\boxed{4}")
    assert tok.eos_token in trained and "What is 2 + 2?" in masked and "<think>" not in masked
    assert prompt and labels[: len(tok(prompt, add_special_tokens=False)["input_ids"])].count(IGNORE) > 0


def test_samples_are_built_counted_and_overlong_ones_dropped(tmp_path, tok):
    run = write_kept(tmp_path, n=16)
    data, report = build_samples(run / "filtered" / "kept", tok, max_length=4096, show=False)
    assert report.rows == report.samples == 16 and report.dropped_too_long == 0
    assert report.trainable_tokens < report.tokens == sum(map(len, data["input_ids"]))
    cut = sorted(report.lengths)[8]
    data, report = build_samples(run / "filtered" / "kept", tok, max_length=cut, show=False)
    assert report.dropped_too_long == 16 - report.samples > 0 and max(map(len, data["input_ids"])) <= cut
    with pytest.raises(FactoryError, match="max_length 8 is shorter than every sample"):
        build_samples(run / "filtered" / "kept", tok, max_length=8, show=False)


PREFILL = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
           "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}")
DROPS_REASONING = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{% if m.role == 'assistant' %}"
                   "{{ m.content.split('</think>')[-1] }}{% else %}{{ m.content }}{% endif %}<|im_end|>\n{% endfor %}"
                   "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
NO_EOT = ("{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
          "{% if add_generation_prompt %}assistant: {% endif %}")


@pytest.mark.parametrize("template,needle", [
    (PREFILL, "prefills <think>"),
    (DROPS_REASONING, "drops or moves the assistant's text"),
    (NO_EOT, "ends an assistant turn with no special token"),
    ("", "has no chat template"),
])
def test_the_loss_mask_check_catches_broken_templates(tmp_path, tok, template, needle):
    tok.chat_template = template or None
    run = write_kept(tmp_path, n=2)
    with pytest.raises(FactoryError, match=needle):
        build_samples(run / "filtered" / "kept", tok, max_length=4096, show=False)


SOMETIMES = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{% if m.role == 'assistant' and 'boxed{0}' in "
             "m.content %}{% elif m.role == 'assistant' and 'boxed{SIX}' in m.content %}"
             "{{ m.content.split('</think>')[-1] }}{% else %}{{ m.content }}{% endif %}<|im_end|>\n{% endfor %}"
             "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def test_every_sample_is_checked_and_empty_assistant_turns_are_dropped(tmp_path, tok):
    run = write_kept(tmp_path, n=8)
    tok.chat_template = SOMETIMES.replace("SIX", "none")  # sample 1 (boxed{0}) renders an empty assistant turn
    data, report = build_samples(run / "filtered" / "kept", tok, max_length=4096, show=False)
    assert report.dropped_empty == 1 and report.samples == 7 and report.rows == 8
    tok.chat_template = SOMETIMES.replace("SIX", "6")  # sample 4 (boxed{6}) loses its reasoning: only it
    with pytest.raises(FactoryError, match=r"sample 4: the chat template drops or moves"):
        build_samples(run / "filtered" / "kept", tok, max_length=4096, show=False)


def test_no_kept_traces(tmp_path, tok):
    with pytest.raises(FactoryError, match="no manifest.json"):
        build_samples(tmp_path / "filtered" / "kept", tok, 4096, show=False)


def test_presets_and_paths():
    assert resolve_student("qwen-7b").model == "Qwen/Qwen2.5-Math-7B" and resolve_student("qwen-7b").epochs == 2
    assert {"qwen-1.5b", "qwen-14b", "qwen-32b", "llama-8b", "llama-70b", "smollm2-135m", "qwen2.5-coder-0.5b",
            "tiny"} <= set(PRESETS)
    assert resolve_student("my-org/my-model").model == "my-org/my-model"
    with pytest.raises(FactoryError, match="unknown preset"):
        resolve_student("qwen-9000")


def test_samples_are_written_once_to_a_mapped_file_every_rank_reads_in_the_same_order(tmp_path, tok):
    from train.mixture import run_items
    from train.sft_data import load_samples, write_samples

    run = write_kept(tmp_path / "run", n=12)
    kept = run / "filtered" / "kept"
    in_memory, _ = build_samples(kept, tok, max_length=4096, show=False)
    report = write_samples(run_items(kept), tok, 4096, tmp_path / "data", show=False)
    assert report.samples == 12 and sorted(p.name for p in (tmp_path / "data").iterdir()) == ["report.json",
                                                                                           "samples.arrow"]
    ds, loaded = load_samples(tmp_path / "data", seed=7)
    again, _ = load_samples(tmp_path / "data", seed=7)  # another rank
    rows = [ds[i]["input_ids"] for i in range(len(ds))]
    assert rows == [again[i]["input_ids"] for i in range(len(again))], "every rank sees one order"
    assert rows != in_memory["input_ids"] and sorted(rows) == sorted(in_memory["input_ids"]), "shuffled, all there"
    assert loaded.lengths == [len(r) for r in rows] and loaded.tokens == report.tokens
    assert [ds[i]["labels"] for i in range(3)] == [in_memory["labels"][in_memory["input_ids"].index(r)] for r in rows[:3]]
    write_samples(run_items(kept), tok, 4096, tmp_path / "data", show=False)  # a rerun replaces, never appends
    assert len(load_samples(tmp_path / "data", seed=7)[0]) == 12
