"""R1's chain on the tiny model: generate -> filter -> SFT -> GRPO -> generate from the RL checkpoint -> filter ->
SFT -> GRPO -> eval, each instance reading the previous one's model by reference (stage:NAME). A rerun skips
every stage; a changed stage reruns with everything after it."""

import json

import pytest
import yaml

from factory.cli import main
from factory.pipeline import load_pipeline, resolve_refs

GEN = {"prompts": {"source": "gym:chain_sum", "size": 4}, "sampling": {"n": 2, "max_tokens": 12}, "progress": False}
FILTER = {"order": ["length"], "length": {"reject_truncated": False}, "progress": False}
SFT = {"student": "tiny", "max_steps": 2, "save_steps": 100, "progress": False}
RL = {"prompts": {"source": "gym:chain_sum", "size": 2}, "num_generations": 2, "grad_accum": 1,
      "max_completion_length": 8, "beta": 0.0, "max_steps": 1, "save_steps": 100, "progress": False,
      "rewards": {"format": {"weight": 0}, "length": {"weight": 1, "buffer": 4}, "workers": 1}}


def _doc(tmp_path, teacher):
    round2 = str(tmp_path / "run" / "round2")
    return {
        "name": "chain", "run_dir": str(tmp_path / "run"),
        "stages": [{"name": "gen", "kind": "generate"}, {"name": "filt", "kind": "filter"},
                   {"name": "sft1", "kind": "distill"}, {"name": "rl1", "kind": "grpo"},
                   {"name": "gen2", "kind": "generate", "run_dir": round2},
                   {"name": "filt2", "kind": "filter", "run_dir": round2},
                   {"name": "sft2", "kind": "distill", "run_dir": round2}, {"name": "rl2", "kind": "grpo"},
                   {"name": "ev", "kind": "eval"}],
        "gen": {**GEN, "teacher": {"engine": "hf", "model": str(teacher)}}, "filt": FILTER, "sft1": SFT, "rl1": {**RL, "model": "stage:sft1"},
        "gen2": {**GEN, "teacher": {"engine": "hf", "model": "stage:rl1"}}, "filt2": FILTER, "sft2": SFT,
        "rl2": {**RL, "model": "stage:sft2"},
        "ev": [{"name": "final", "model": "stage:rl2", "benchmark": "gym:chain_sum", "size": 2,
                "teacher": {"engine": "hf"}, "sampling": {"n": 1, "max_tokens": 8}, "progress": False}],
    }


@pytest.mark.slow  # >= 10 s on 2 cores (--durations)
def test_the_r1_chain_runs_end_to_end_then_skips_then_reruns_what_changed(tmp_path, capsys, tiny_model_dir):
    path = tmp_path / "chain.yaml"
    path.write_text(yaml.safe_dump(_doc(tmp_path, tiny_model_dir)))
    run = tmp_path / "run"
    p = load_pipeline(str(path))
    assert resolve_refs(p.instance("gen2"), p, prepare=False).teacher.model == str(run / "rl" / "rl1" / "final")
    assert main(["run", str(path)]) == 0
    state = json.loads((run / "pipeline_state.json").read_text())
    assert all(state[s]["done"] for s in p.stages)
    assert (run / "round2" / "traces" / "manifest.json").exists() and (run / "round2" / "filtered" / "stats.json").exists()
    traces = json.loads((run / "round2" / "traces" / "manifest.json").read_text())
    assert traces["config"]["teacher"]["model"] == str(run / "rl" / "rl1" / "final"), "sampled from the RL model"
    assert (run / "round2" / "student" / "sft2" / "final" / "config.json").exists()
    assert (run / "rl" / "rl2" / "final" / "config.json").exists()
    result = json.loads((run / "eval" / "ev" / "final-gym-chain_sum.json").read_text())
    assert result["model"] == str(run / "rl" / "rl2" / "final")
    resolved = yaml.safe_load((run / "config.resolved.yaml").read_text())
    assert {"rl1", "rl2", "sft1"} <= set(resolved) and resolved["rl1"]["config"]["model"].endswith("sft1/final")
    capsys.readouterr()
    assert main(["run", str(path)]) == 0
    assert capsys.readouterr().err.count("up to date") == len(p.stages)
    assert main(["run", str(path), "--set", "rl1.lr=1e-5"]) == 0
    new = json.loads((run / "pipeline_state.json").read_text())
    assert [s for s in p.stages if new[s]["fingerprint"] == state[s]["fingerprint"]] == ["gen", "filt", "sft1"]
