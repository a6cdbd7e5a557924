from factory.filters import Verdict, run_row_filters
from factory.filters.config import FilterConfig
from factory.storage.records import Prompt


def trace(reasoning="Add the numbers: 2 + 2 = 4.", answer="The answer is \\boxed{4}.", task="math", ref="4",
          **extra) -> dict:
    p = Prompt(source="test", task=task, problem="What is 2 + 2?", reference_answer=ref, metadata=extra.pop("metadata", "{}"))
    row = {"prompt_id": p.prompt_id, "source": p.source, "task": p.task, "problem": p.problem,
           "reference_answer": p.reference_answer, "tests": None, "metadata": p.metadata, "reasoning": reasoning,
           "answer": answer, "raw_completion": f"<think>{reasoning}</think>{answer}", "reasoning_source": "think_tags",
           "finish_reason": "stop", "truncated": False, "completion_tokens": 50, "error": None}
    row.update(extra)
    return row


def judge(name: str, row: dict, **params) -> Verdict:
    cfg = FilterConfig.model_validate({name: params})
    return run_row_filters(row, [name], {name: getattr(cfg, name)})[name]
