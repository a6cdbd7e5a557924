"""Kept traces -> tokenised chat samples for SFT, and the loss-mask check that runs before any training.

user = the prompt exactly as the teacher saw it (the trace's `messages`); assistant =
`<think>\\nREASONING\\n</think>\\n\\n` + answer (R1's format), closed by the template's end of turn. The loss is on the
assistant tokens only, reasoning and end of turn included. Samples longer than `max_length` are dropped and
counted, never cut: a cut trace teaches the student to stop mid-thought.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from factory.core.chat_templates import assistant_text
from factory.core.errors import FactoryError

IGNORE = -100


@dataclass
class DataReport:
    rows: int = 0
    samples: int = 0
    dropped_too_long: int = 0
    dropped_empty: int = 0  # the template rendered the assistant turn as nothing
    tokens: int = 0
    trainable_tokens: int = 0
    longest: int = 0
    lengths: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "lengths"}

    def add(self, ids: list[int], labels: list[int]) -> None:
        self.samples += 1
        self.tokens += len(ids)
        self.trainable_tokens += sum(t != IGNORE for t in labels)
        self.longest = max(self.longest, len(ids))
        self.lengths.append(len(ids))


def tokenize(tokenizer, messages: list[dict], assistant: str) -> tuple[list[int], list[int], str]:
    """(input_ids, labels, prompt_text): labels are IGNORE on every character of the prompt."""
    ids, labels, prompt, _ = tokenize_full(tokenizer, messages, assistant)
    return ids, labels, prompt


def tokenize_full(tokenizer, messages: list[dict], assistant: str) -> tuple[list[int], list[int], str, str]:
    """As `tokenize`, plus the full rendered text."""
    if not tokenizer.chat_template:
        raise FactoryError(f"{tokenizer.name_or_path}: the tokenizer has no chat template (set one in the preset)")
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": assistant}], tokenize=False)
    if not full.startswith(prompt):
        raise FactoryError(f"{tokenizer.name_or_path}: the chat template renders the prompt differently once an "
                           "assistant turn follows; the loss mask cannot be placed")
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    labels = [tok if start >= len(prompt) else IGNORE for tok, (start, _) in zip(enc["input_ids"], enc["offset_mapping"])]
    return enc["input_ids"], labels, prompt, full


def end_of_turn_id(tokenizer) -> int:
    """The special token the template closes an assistant turn with (<|im_end|>, <|eot_id|>, ...)."""
    text = tokenizer.apply_chat_template([{"role": "user", "content": "u"}, {"role": "assistant", "content": "PROBE"}],
                                         tokenize=False)
    tail = tokenizer(text[text.rindex("PROBE") + len("PROBE"):], add_special_tokens=False)["input_ids"]
    # a base model's tokenizer names only its own EOS as special; the chat tokens are added tokens marked special
    special = set(tokenizer.all_special_ids) | {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    found = next((t for t in tail if t in special), None)
    if found is None:
        raise FactoryError(f"{tokenizer.name_or_path}: the chat template ends an assistant turn with no special token: "
                           "the student would never learn to stop")
    return found


def stop_at_end_of_turn(tokenizer) -> list[int]:
    """Makes the chat template's end-of-turn token the tokenizer's EOS, and returns the ids generation must stop
    at (end of turn first, then the base EOS).

    A base model's tokenizer ends text with `<|endoftext|>` or `<|end_of_text|>`, while the R1-style template
    ends each assistant turn with `<|im_end|>` or `<|eot_id|>`: a student saved with the base EOS would run every
    answer to max_tokens in vLLM, transformers and our own evals (open-r1 sets the EOS the same way). The padding
    token stays the base EOS, never the end of turn the loss is trained on."""
    eot = end_of_turn_id(tokenizer)
    base = tokenizer.eos_token_id
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.eos_token = tokenizer.convert_ids_to_tokens(eot)
    return [eot] + ([base] if base is not None and base != eot else [])


def check_template(tokenizer, prompt: str) -> None:
    """Once per run: the failures open-r1 and TRL users lost runs to, caught before the first step."""
    if prompt.rstrip().endswith("<think>"):
        raise FactoryError(f"{tokenizer.name_or_path}: the chat template prefills <think>; the samples would hold it "
                           "twice (use a template without the prefill)")


def check_sample(full: str, prompt: str, assistant: str, labels: list[int], eot: tuple[int, str], where: str) -> bool:
    """Every sample, in a few string and list operations: False for an assistant turn the template rendered as
    nothing (dropped and counted); an error when the mask misses the reasoning or the end of turn."""
    body = full[len(prompt):]
    if not body.replace(eot[1], "").strip():
        return False
    if assistant not in body:
        raise FactoryError(f"{where}: the chat template drops or moves the assistant's text (the reasoning would "
                           "not be trained on)")
    if eot[0] not in labels:
        raise FactoryError(f"{where}: the loss mask misses the end-of-turn token: the student would never learn to "
                           "stop")
    return True


def show_sample(tokenizer, input_ids: list[int], labels: list[int], console=None, edge: int = 40) -> None:
    """Prints a tokenised sample: grey tokens are masked out, green ones are trained on."""
    from rich.console import Console
    from rich.text import Text

    console = console or Console(stderr=True)
    out = Text()
    keep = list(range(min(edge, len(input_ids)))) + list(range(max(edge, len(input_ids) - edge), len(input_ids)))
    for k, i in enumerate(keep):
        if k and i != keep[k - 1] + 1:
            out.append(" [...] ", style="bold")
        out.append(tokenizer.decode([input_ids[i]]), style="green" if labels[i] != IGNORE else "grey50")
    console.print("[bold]one tokenised sample[/] (green: in the loss; grey: masked):")
    console.print(out)


def tokenised(items: Iterable, tokenizer, max_length: int, report: DataReport, show: bool = True,
              where: str = "distill.mix") -> Iterator[tuple[list[int], list[int]]]:
    """Streams (input_ids, labels) of every item that fits, checking each sample's loss mask (reasoning, answer and
    end of turn) and counting what is dropped into `report`."""
    eot_id = end_of_turn_id(tokenizer) if tokenizer.chat_template else -1
    eot = (eot_id, tokenizer.decode([eot_id]) if eot_id >= 0 else "")
    for item in items:
        report.rows += 1
        assistant = assistant_text(item.reasoning, item.answer, item.empty_think)
        ids, labels, prompt, full = tokenize_full(tokenizer, item.messages, assistant)
        if report.rows == 1:
            check_template(tokenizer, prompt)
            if show:
                show_sample(tokenizer, ids, labels)
        if not check_sample(full, prompt, assistant, labels, eot, f"{item.source}: sample {report.rows}"):
            report.dropped_empty += 1
        elif len(ids) > max_length:
            report.dropped_too_long += 1
        else:
            report.add(ids, labels)
            yield ids, labels
    if report.rows == 0:
        raise FactoryError(f"{where}: no samples to train on (run `factory filter` first?)")
    if report.samples == 0:
        raise FactoryError(f"max_length {max_length} is shorter than every sample ({report.dropped_too_long} "
                           "dropped); raise max_length")


def build_samples(source, tokenizer, max_length: int, show: bool = True) -> tuple[dict[str, list], DataReport]:
    """Every sample in memory (a kept-traces directory, or a list of items): for tests and small benchmarks;
    training streams them to disk instead (`write_samples`)."""
    from .mixture import run_items

    items = run_items(Path(source)) if isinstance(source, (str, Path)) else source
    report = DataReport()
    data: dict[str, list] = {"input_ids": [], "labels": []}
    where = str(source) if isinstance(source, (str, Path)) else "distill.mix"
    for ids, labels in tokenised(items, tokenizer, max_length, report, show, where):
        data["input_ids"].append(ids)
        data["labels"].append(labels)
    return data, report


SAMPLES, REPORT = "samples.arrow", "report.json"
_SCHEMA_FIELDS = (("input_ids", "int32"), ("labels", "int32"))


def write_samples(items: Iterable, tokenizer, max_length: int, out: Path, show: bool = True,
                  batch_rows: int = 256) -> DataReport:
    """Tokenises the items once, streaming, into `out/samples.arrow` (Arrow IPC, the format `datasets`
    memory-maps) and `out/report.json`: memory stays flat whatever the mixture's size, and the other ranks of a
    distributed run map the file instead of tokenising it again. Written to temporary names, then renamed."""
    import pyarrow as pa

    from factory.core.jsonfiles import write_json_atomic

    if out.exists():  # a cache file `datasets` made from an earlier file of the same path must not survive it
        import shutil

        shutil.rmtree(out)
    out.mkdir(parents=True)
    schema = pa.schema([(name, pa.list_(getattr(pa, t)())) for name, t in _SCHEMA_FIELDS])
    report = DataReport()
    tmp = out / f"{SAMPLES}.tmp"
    buffer: dict[str, list] = {"input_ids": [], "labels": []}
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        for ids, labels in tokenised(items, tokenizer, max_length, report, show):
            buffer["input_ids"].append(ids)
            buffer["labels"].append(labels)
            if len(buffer["labels"]) == batch_rows:
                writer.write_batch(pa.record_batch(buffer, schema=schema))
                buffer = {"input_ids": [], "labels": []}
        if buffer["labels"]:
            writer.write_batch(pa.record_batch(buffer, schema=schema))
    tmp.replace(out / SAMPLES)
    write_json_atomic(out / REPORT, {**report.to_json(), "lengths": report.lengths})
    return report


def load_samples(out: Path, seed: int):
    """The samples `write_samples` wrote, memory-mapped (nothing is read into memory up front), in a seeded
    shuffled order, with their report (lengths in that order)."""
    import json
    import random

    from datasets import Dataset

    saved = json.loads((out / REPORT).read_text())
    report = DataReport(**saved)
    order = list(range(report.samples))
    random.Random(seed).shuffle(order)  # the mixture's sources were streamed one after the other
    report.lengths = [report.lengths[i] for i in order]
    # the order is held in memory (8 bytes a sample): an indices file on disk would be shared by every rank
    return Dataset.from_file(str(out / SAMPLES)).select(order, keep_in_memory=True), report
