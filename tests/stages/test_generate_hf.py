"""The transformers engine on a tiny random model with the bundled tokenizer: the real code path, in seconds."""

import json

from factory.cli import main
from factory.storage.shards import read_table


def test_hf_engine_generates_and_tops_up(tmp_path, tiny_model_dir):
    out = tmp_path / "run"
    args = ["generate", "--prompts", "gym:chain_sum", "--size", "3", "--teacher", f"hf:{tiny_model_dir}",
            "--max-tokens", "12", "--out", str(out), "--no-progress", "--set", "teacher.batch_size=4"]
    assert main([*args, "--n", "2"]) == 0
    rows = read_table(out / "traces").to_pylist()
    assert len(rows) == 6 and all(r["error"] is None and r["engine"] == "hf" for r in rows)
    assert all(0 < r["completion_tokens"] <= 12 and r["prompt_tokens"] > 10 for r in rows)
    assert all((r["finish_reason"] == "length") == r["truncated"] for r in rows)
    assert main([*args, "--n", "3"]) == 0
    stats = json.loads((out / "generate_stats.json").read_text())
    assert (stats["cached"], stats["requested"], stats["rows"]) == (6, 3, 9)


def test_auto_engine_resolves_to_an_installed_one(tmp_path, tiny_model_dir):
    from factory.teachers import resolve_engine

    assert resolve_engine("auto") in ("vllm", "hf") and resolve_engine("hf") == "hf"
