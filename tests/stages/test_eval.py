"""`factory eval` end to end on the bundled model (CPU, transformers engine), and its error paths."""

import json
import struct

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from factory.cli import main
from factory.core.errors import FactoryError
from factory.filters.correctness import CorrectnessParams
from factory.stages.eval import EvalConfig, default_label, score_problem, summarise


def _eval(tmp_path, *args):
    return main(["eval", "--model", "smollm2-135m", "--engine", "hf", "--no-progress", "--out", str(tmp_path / "ev"),
                 *args])


def test_gym_eval_writes_metrics_per_problem_and_resumes_from_the_cache(tmp_path):
    args = ["--benchmark", "gym:chain_sum", "--n", "3", "--max-tokens", "24", "--set", "size=3"]
    assert _eval(tmp_path, *args) == 0
    path = tmp_path / "ev" / "smollm2-135m-gym-chain_sum.json"
    result = json.loads(path.read_text())
    m = result["metrics"]
    assert m["problems"] == 3 and m["samples_per_problem"] == 3
    assert {"pass@1", "maj@1", "lenient_pass@1"} <= set(m) and "pass@8" not in m  # k > n is not reported
    assert m["lenient_pass@1"]["mean"] >= m["pass@1"]["mean"]
    assert 0 <= m["pass@1"]["mean"] <= 1 and m["pass@1"]["ci95"] is not None
    assert all(len(p["samples"]) == 3 and p["reference"] for p in result["problems"])
    assert result["settings"]["seed"] != 42, "held-out seed differs from the training default"
    assert result["generation"]["requested"] == 9
    assert "transformers" in result["versions"] and result["fingerprint"]
    assert _eval(tmp_path, *args) == 0
    again = json.loads(path.read_text())
    assert again["generation"]["requested"] == 0 and again["generation"]["cached"] == 9
    assert again["metrics"] == result["metrics"]


def test_humaneval_eval_runs_the_tests_in_the_sandbox(tmp_path):
    assert _eval(tmp_path, "--benchmark", "humaneval", "--limit", "2", "--n", "1", "--max-tokens", "48") == 0
    result = json.loads((tmp_path / "ev" / "smollm2-135m-humaneval.json").read_text())
    assert result["metrics"]["problems"] == 2 and "maj@1" not in result["metrics"]  # no voting on code
    reasons = {s["reason"] for p in result["problems"] for s in p["samples"]}
    assert reasons <= {None, "no_code_block", "tests_failed", "timeout"}


def test_a_right_humaneval_solution_scores_and_a_wrong_one_does_not():
    from factory.sources.humaneval import load_humaneval

    prompt = load_humaneval()[0]
    meta = prompt.meta
    right = f"```python\n{meta['prompt']}{meta['canonical_solution']}```"
    wrong = f"```python\n{meta['prompt']}    return None\n```"
    rows = [{"sample_index": i, "answer": a, "reasoning": "", "error": None} for i, a in enumerate([right, wrong])]
    samples = score_problem(prompt, rows, CorrectnessParams())
    assert [s["correct"] for s in samples] == [True, False] and samples[1]["reason"] == "tests_failed"


def _math500_file(path):
    rows = {"problem": ["What is 2+2?", "What is 3*3?"], "solution": ["4", "9"], "answer": ["4", "9"],
            "subject": ["Prealgebra"] * 2, "level": [1, 1], "unique_id": ["a/1.json", "b/2.json"]}
    pq.write_table(pa.table(rows), path)
    return path


def test_hub_benchmarks_read_a_local_copy_with_the_same_columns(tmp_path):
    from factory.sources.benchmarks import load_benchmark

    cfg = EvalConfig(benchmark="math500", benchmark_path=str(_math500_file(tmp_path / "m.parquet")))
    prompts = load_benchmark(cfg)
    assert [p.reference_answer for p in prompts] == ["4", "9"] and prompts[0].source == "math500"
    gpqa = tmp_path / "g.jsonl"
    gpqa.write_text(json.dumps({"Question": "Which is a noble gas?", "Correct Answer": "Neon",
                                "Incorrect Answer 1": "Iron", "Incorrect Answer 2": "Carbon",
                                "Incorrect Answer 3": "Sodium"}) + "\n")
    (p,) = load_benchmark(EvalConfig(benchmark="gpqa-diamond", benchmark_path=str(gpqa)))
    letter = p.reference_answer
    assert f"{letter}) Neon" in p.problem and p.problem.count(") ") == 4
    assert load_benchmark(EvalConfig(benchmark="gpqa-diamond", benchmark_path=str(gpqa)))[0].problem == p.problem


def test_gpqa_is_scored_as_multiple_choice_with_options_shuffled_per_seed(tmp_path):
    """Issue 22, item 12: the chosen letter, read as simple-evals and lighteval read it, against the reference;
    the option order depends on the seed and is recorded."""
    from factory.config.stages import TemplateConfig
    from factory.sources.benchmarks import load_benchmark
    from factory.teachers.template import build_messages

    gpqa = tmp_path / "g.jsonl"
    gpqa.write_text("".join(json.dumps({"Question": f"Which is a noble gas? ({i})", "Correct Answer": "Neon",
                                        "Incorrect Answer 1": "Iron", "Incorrect Answer 2": "Carbon",
                                        "Incorrect Answer 3": "Sodium"}) + "\n" for i in range(8)))
    orders = {seed: [json.loads(p.metadata)["choices"] for p in load_benchmark(
        EvalConfig(benchmark="gpqa-diamond", benchmark_path=str(gpqa), seed=seed))] for seed in (1, 2)}
    assert orders[1] != orders[2], "another seed, another order"
    (p, *_) = load_benchmark(EvalConfig(benchmark="gpqa-diamond", benchmark_path=str(gpqa), seed=1))
    assert p.task == "choice" and json.loads(p.metadata)["choices"][ord(p.reference_answer) - 65] == "Neon"
    assert "'Answer: $LETTER'" in build_messages(p, TemplateConfig())[0]["content"]
    right, wrong = p.reference_answer, "ABCD"[("ABCD".index(p.reference_answer) + 1) % 4]
    answers = [f"Neon is inert.\nAnswer: {right}", f"**Answer:** ({wrong})", f"So \\boxed{{{right}}}",
               f"The answer is {right}.", "Probably neon.", f"Answer: {right}\n\nAnswer: {wrong}"]
    rows = [{"sample_index": i, "answer": a, "reasoning": "", "error": None} for i, a in enumerate(answers)]
    samples = score_problem(p, rows, CorrectnessParams())
    assert [s["correct"] for s in samples] == [True, False, True, True, False, False]
    assert samples[4]["reason"] == "no_choice"


def _lcb_row(qid, date, cases, private=(), functional=None):
    import base64
    import pickle
    import zlib

    packed = base64.b64encode(zlib.compress(pickle.dumps(json.dumps(list(private))))).decode()
    return {"question_title": qid, "question_content": f"Problem {qid}.", "platform": "atcoder", "question_id": qid,
            "contest_id": "abc1", "contest_date": f"{date}T00:00:00", "difficulty": "easy",
            "starter_code": "class Solution:\n    def add(self, a: int, b: int) -> int:\n        " if functional else "",
            "public_test_cases": json.dumps(list(cases)), "private_test_cases": packed,
            "metadata": json.dumps({"func_name": functional} if functional else {})}


def test_livecodebench_from_a_local_copy_in_its_format_scored_in_the_sandbox(tmp_path):
    """Issue 22, item 12: stdin/stdout and functional problems from the public set's format (private tests
    compressed and pickled), a date window against contamination, and answers run in our sandbox."""
    import base64
    import zlib
    from pathlib import Path

    from factory.sources.benchmarks import load_benchmark

    stdin = [{"input": "1 2\n", "output": "3\n", "testtype": "stdin"}]
    functional = [{"input": "1\n2", "output": "3", "testtype": "functional"}]
    rows = [_lcb_row("sum", "2024-09-01", stdin, private=[{"input": "5 7\n", "output": "12", "testtype": "stdin"}]),
            _lcb_row("add", "2024-10-01", functional, private=[{"input": "-1\n1", "output": "0",
                                                                 "testtype": "functional"}], functional="add"),
            _lcb_row("old", "2023-01-01", stdin)]
    path = tmp_path / "lcb.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    prompts = load_benchmark(EvalConfig(benchmark="livecodebench", benchmark_path=str(path)))
    assert [json.loads(p.metadata)["question_id"] for p in prompts] == ["sum", "add"], "2023 is outside the window"
    assert all(p.task == "code" and json.loads(p.metadata)["tests"] == 2 for p in prompts)
    assert "class Solution" in prompts[1].problem and "stdin" in prompts[0].problem
    programs = {"sum": ["a, b = map(int, input().split())\nprint(a + b)", "print(3)"],
                "add": ["class Solution:\n    def add(self, a: int, b: int) -> int:\n        return a + b",
                        "class Solution:\n    def add(self, a: int, b: int) -> int:\n        return 3"]}
    for p in prompts:
        answers = [f"```python\n{code}\n```" for code in programs[json.loads(p.metadata)["question_id"]]]
        rows = [{"sample_index": i, "answer": a, "reasoning": "", "error": None} for i, a in enumerate(answers)]
        samples = score_problem(p, rows, CorrectnessParams())
        assert [s["correct"] for s in samples] == [True, False], "the private test catches the hard-coded answer"
    evil = _lcb_row("evil", "2024-09-01", stdin)
    attack = b"cos\nsystem\n(S'touch pwned'\ntR."  # the classic pickle that calls os.system when loaded
    evil["private_test_cases"] = base64.b64encode(zlib.compress(attack)).decode()
    path = tmp_path / "evil.jsonl"  # a file of its own: datasets caches what it read from the first one
    path.write_text(json.dumps(evil) + "\n")
    with pytest.raises(FactoryError, match=r"livecodebench: row 0: private_test_cases cannot be read: .*"
                                           r"\(refusing os.system"):
        load_benchmark(EvalConfig(benchmark="livecodebench", benchmark_path=str(path)))
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()
    old = tmp_path / "old.jsonl"
    old.write_text(json.dumps(_lcb_row("old", "2023-01-01", stdin)) + "\n")
    with pytest.raises(FactoryError, match="none of its 1 problems is in the window 2025-02-01 to 2025-03-01"):
        load_benchmark(EvalConfig(benchmark="livecodebench", benchmark_path=str(old), date_from="2025-02-01",
                                  date_to="2025-03-01"))


def test_summary_metrics_from_known_verdicts():
    problems = [{"metrics": {"pass@1": 1.0}, "samples": [{"completion_tokens": 10, "truncated": False,
                                                            "error": None}]},
                {"metrics": {"pass@1": 0.0}, "samples": [{"completion_tokens": 30, "truncated": True,
                                                            "error": None}]}]
    s = summarise(problems, EvalConfig())
    assert s["pass@1"]["mean"] == 0.5 and s["mean_completion_tokens"] == 20 and s["truncated_share"] == 0.5


def test_tokens_per_correct_answer_is_over_solved_problems_and_compared_paired(tmp_path):
    from factory.stages.compare import compare
    from factory.stages.eval import score_all
    from factory.storage.records import Prompt, Trace

    prompt = Prompt(source="t", task="math", problem="1 + 1?", reference_answer="2")
    other = Prompt(source="t", task="math", problem="2 + 2?", reference_answer="4")

    def traces(p, answers_tokens):
        return [Trace(prompt=p, sample_index=i, teacher_model="m", engine="hf", sampling="{}", messages="[]",
                      reasoning="r", answer=f"\\boxed{{{a}}}", completion_tokens=n)
                for i, (a, n) in enumerate(answers_tokens)]

    cfg = EvalConfig(workers=1, progress=False)
    problems = score_all(cfg, [prompt, other], [traces(prompt, [(2, 10), (2, 30), (3, 99)]),
                                                traces(other, [(5, 7)])])
    assert problems[0]["metrics"]["tokens_per_correct"] == 20 and "tokens_per_correct" not in problems[1]["metrics"]
    s = summarise(problems[::-1], cfg)  # the first problem has none: still summarised
    assert s["tokens_per_correct"]["mean"] == 20
    results = []
    for label, scale in (("sft", 1.0), ("dpo", 0.5)):
        rows = [{"prompt_id": f"p{i}", "metrics": {"pass@1": 1.0, "tokens_per_correct": (100 + 3 * i) * scale},
                 "samples": []} for i in range(8)]
        path = tmp_path / f"{label}.json"
        path.write_text(json.dumps({"label": label, "benchmark": "gym:chain_sum", "problems": rows, "metrics": {
            "pass@1": {"mean": 1.0, "ci95": 0.0}, "tokens_per_correct": {"mean": 100 * scale, "ci95": 1.0}}}))
        results.append(str(path))
    compare(results, md=str(tmp_path / "summary.md"), pairs=[(0, 1)])
    text = (tmp_path / "summary.md").read_text()
    assert "Mean completion tokens of a correct answer" in text
    assert "dpo's correct answers are shorter than sft's, larger than the noise" in text


def test_bad_input_fails_with_a_clear_error(tmp_path, capsys):
    assert _eval(tmp_path, "--benchmark", "mmlu-9000") == 1
    assert "unknown benchmark 'mmlu-9000'" in capsys.readouterr().err
    no_answers = tmp_path / "b.jsonl"
    no_answers.write_text('{"problem": "1+1?", "answer": "2"}\n{"problem": "2+2?"}\n')
    assert _eval(tmp_path, "--benchmark", str(no_answers)) == 1
    assert "b.jsonl: row 2 has no answer" in capsys.readouterr().err
    broken = tmp_path / "ckpt"
    broken.mkdir()
    assert main(["eval", "--model", str(broken), "--engine", "hf", "--benchmark", "gym:chain_sum"]) == 1
    assert "not a transformers checkpoint (no config.json)" in capsys.readouterr().err
    (broken / "config.json").write_text("{}")
    assert main(["eval", "--model", str(broken), "--engine", "hf", "--benchmark", "gym:chain_sum"]) == 1
    assert "the checkpoint has no weights" in capsys.readouterr().err
    assert main(["eval", "--model", str(tmp_path / "nope"), "--engine", "hf", "--benchmark", "gym:chain_sum"]) == 1
    assert "no such checkpoint directory" in capsys.readouterr().err
    assert not (tmp_path / "ev").exists()


def test_labels_from_checkpoint_paths():
    assert default_label("runs/x/student/smollm2-135m/final") == "smollm2-135m-final"
    assert default_label("Qwen/Qwen2.5-Math-7B") == "Qwen2.5-Math-7B"


def _result(path, label, per_problem):
    problems = [{"prompt_id": pid, "metrics": {"pass@1": v}, "samples": []} for pid, v in per_problem.items()]
    from factory.core.eval_metrics import mean_ci

    mean, half = mean_ci(list(per_problem.values()))
    path.write_text(json.dumps({"label": label, "benchmark": "gym:chain_sum", "problems": problems,
                                "metrics": {"pass@1": {"mean": mean, "ci95": half}}}))
    return str(path)


def test_compare_prints_the_table_says_what_is_noise_and_draws_the_chart(tmp_path, capsys):
    ids = [f"p{i}" for i in range(12)]
    before = _result(tmp_path / "a.json", "student-before", dict.fromkeys(ids, 0.0))
    after = _result(tmp_path / "b.json", "student-after", {p: 1.0 if i < 10 else 0.0 for i, p in enumerate(ids)})
    noisy = _result(tmp_path / "c.json", "student-noisy", {p: 1.0 if i < 1 else 0.0 for i, p in enumerate(ids)})
    png = tmp_path / "cmp.png"
    assert main(["eval", "--compare", before, after, noisy, "--png", str(png)]) == 0
    err = capsys.readouterr().err
    assert "larger than the noise" in err and "within the noise" in err and "student-after" in err
    # ten 1s, two 0s over 12 shared problems: mean 0.833, se 0.1124, t(0.975, 11) = 2.200985
    assert ("student-after / gym:chain_sum vs student-before / gym:chain_sum: +0.833, 95% CI [+0.586, +1.081], "
            "p = 1.3e-05 (paired over 12 problems): larger than the noise") in err
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", data[16:24])[0] > 100
    from factory.stages.compare import compare

    compare([before, after], md=str(tmp_path / "summary.md"))
    table = (tmp_path / "summary.md").read_text()
    assert "| student-after | `?` | 0.833 ± 0." in table and "**+0.833** [+0.586, +1.081], p = 1.3e-05, paired over 12" \
        in table
    assert main(["eval", "--compare", before]) == 1
    assert "at least two" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{")
    assert main(["eval", "--compare", before, str(tmp_path / "bad.json")]) == 1
    assert "bad.json:1:2: not valid JSON" in capsys.readouterr().err


def test_held_out_excludes_prompts_a_training_run_saw(tmp_path):
    from factory.sources.benchmarks import load_benchmark
    from factory.storage.records import TRACE_SCHEMA, Trace
    from factory.storage.shards import write_shards

    cfg = EvalConfig(benchmark="gym:chain_sum", size=5, seed=7)
    prompts = load_benchmark(cfg)
    seen = Trace(prompt=prompts[0], sample_index=0, teacher_model="t", engine="hf", sampling="{}", messages="[]")
    write_shards(tmp_path / "run" / "traces", [seen.to_row()], TRACE_SCHEMA)
    kept = load_benchmark(cfg.model_copy(update={"exclude_runs": [str(tmp_path / "run")]}))
    assert len(kept) == 4 and prompts[0].problem not in {p.problem for p in kept}
    with pytest.raises(FactoryError, match="no traces to exclude"):
        load_benchmark(cfg.model_copy(update={"exclude_runs": [str(tmp_path)]}))


def test_eval_and_generate_share_one_generation_library_and_cache(tmp_path):
    """The same model, prompts, template and sampling give the same samples: an eval over the prompts a run
    generated from buys nothing (factory/generation/plan.py serves both with their GenerationSettings)."""
    from factory.config.stages import GenerateConfig, GenerationSettings

    assert issubclass(GenerateConfig, GenerationSettings) and issubclass(EvalConfig, GenerationSettings)
    run = tmp_path / "run"
    assert main(["generate", "--prompts", "gym:chain_sum", "--teacher", "hf:smollm2-135m", "--n", "2",
                 "--max-tokens", "16", "--out", str(run), "--no-progress", "--set", "prompts.size=2"]) == 0
    assert main(["eval", "--model", "smollm2-135m", "--engine", "hf", "--no-progress", "--out", str(run),
                 "--benchmark", "gym:chain_sum", "--n", "2", "--max-tokens", "16", "--set", "size=2",
                 "--set", "seed=42"]) == 0
    result = json.loads((run / "smollm2-135m-gym-chain_sum.json").read_text())
    assert result["generation"]["requested"] == 0 and result["generation"]["cached"] == 4


def test_a_model_retrained_at_the_same_path_is_sampled_again(tmp_path, tiny_model_dir):
    """Issue 22, item 1: the cache knows a local model by its content. Same weights: every sample from the cache;
    new weights written into the same directory: every sample requested again."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    model = shutil.copytree(tiny_model_dir, tmp_path / "model")
    args = ["eval", "--model", str(model), "--engine", "hf", "--no-progress", "--out", str(tmp_path / "ev"),
            "--benchmark", "gym:chain_sum", "--n", "2", "--max-tokens", "4", "--set", "size=2", "--set", "label=m"]

    def generation():
        assert main(args) == 0
        result = json.loads((tmp_path / "ev" / "m-gym-chain_sum.json").read_text())
        return result["generation"]["requested"], result["generation"]["cached"]

    assert generation() == (4, 0)
    assert generation() == (0, 4)
    weights = load_file(model / "model.safetensors")
    save_file({k: v + 0.01 * torch.ones_like(v) for k, v in weights.items()}, model / "model.safetensors",
              metadata={"format": "pt"})
    assert generation() == (4, 0), "the new weights were served the old model's samples"


def test_math_is_scored_strictly_and_leniently():
    """Lenient: an answer without \\boxed{} counts by its last number; strict (pass@1) needs the box."""
    from factory.storage.records import Prompt

    prompt = Prompt(source="t", task="math", problem="What is 2 + 2?", reference_answer="4")
    answers = ["So it is \\boxed{4}.", "Two and two: 4", "So it is \\boxed{5}, or 4", "It is 5"]
    rows = [{"sample_index": i, "answer": a, "reasoning": "", "error": None} for i, a in enumerate(answers)]
    rows.append({"sample_index": 4, "answer": "", "reasoning": "", "error": "timeout"})
    samples = score_problem(prompt, rows, CorrectnessParams())
    assert [s["correct"] for s in samples] == [True, False, False, False, False]
    assert [s["correct_lenient"] for s in samples] == [True, True, False, False, False]
    assert all("correct_lenient" not in s for s in score_problem(prompt, rows, CorrectnessParams(lenient=True)))


def test_a_pipelines_summary_compares_each_eval_with_the_first_and_with_its_vs(tmp_path, fake_server):
    import yaml

    problems = [f"Problem {i}: what is {i} + 1?" for i in range(12)]
    bench = tmp_path / "bench.jsonl"
    bench.write_text("".join(json.dumps({"problem": p, "answer": str(i + 1)}) + "\n" for i, p in enumerate(problems)))

    def evaluated(name: str, rate: float, **extra) -> dict:
        _, url = fake_server(model=name, correct={p: (str(i + 1), rate) for i, p in enumerate(problems)}, seed=1)
        return {"name": name, "model": name, "benchmark": str(bench), "teacher": {"engine": "openai", "base_url": url},
                "sampling": {"n": 4, "max_tokens": 32}, "progress": False, **extra}

    doc = {"name": "rl", "run_dir": str(tmp_path / "run"), "stages": ["eval"],
           "eval": [evaluated("before", 0.0), evaluated("after", 1.0, vs="control"), evaluated("control", 0.25)]}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(doc))
    assert main(["run", str(tmp_path / "p.yaml")]) == 0
    summary = (tmp_path / "run" / "eval" / "summary.md").read_text()
    assert "| after | `after` | 1.000 ± 0.000 | **+1.000**" in summary
    # the control's 48 seeded draws at 0.25 hit 16 times, whatever order the requests came in
    assert "after vs control: **+0.667** [" in summary and "paired over 12 problems" in summary
    assert "problems: after is better than control, larger than the noise." in summary
    assert "Scored leniently" in summary and "| lenient_pass@1 (95% CI) |" in summary
    bad = {**doc, "eval": [evaluated("a", 0.0), evaluated("b", 0.0, vs="c")]}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(FactoryError, match=r"eval\[1\] \(b\): field 'vs': 'c' is not another eval"):
        from factory.pipeline import load_pipeline

        load_pipeline(str(tmp_path / "bad.yaml"))
