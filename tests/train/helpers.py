import json
from pathlib import Path

from factory.records import FILTERED_SCHEMA, Prompt, Trace
from factory.shards import write_shards


def write_kept(run_dir: Path, n: int = 16, reasoning_words: int = 20) -> Path:
    """A run directory with `n` kept traces in R1 format, as `factory filter` writes them."""
    rows = []
    for i in range(n):
        p = Prompt(source="test", task="math", problem=f"What is {i} + {i}?", reference_answer=str(2 * i))
        messages = [{"role": "user", "content": f"{p.problem}\n\nPlease reason step by step."}]
        reasoning = f"We add {i} and {i}. " + " ".join(["Then we check it."] * (reasoning_words // 4 + i % 5))
        row = Trace(prompt=p, sample_index=0, teacher_model="t", engine="hf", sampling="{}",
                    messages=json.dumps(messages), reasoning=reasoning, answer=f"The answer is \\boxed{{{2 * i}}}.",
                    raw_completion="x", reasoning_source="think_tags", finish_reason="stop").to_row()
        row.update(kept=True, reject_reason=None, verdicts="{}", pass_rate=1.0)
        rows.append(row)
    write_shards(run_dir / "filtered" / "kept", rows, FILTERED_SCHEMA)
    return run_dir
