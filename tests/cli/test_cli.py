import pytest

from factory.cli import main


@pytest.mark.parametrize("args,needle", [
    (["--teacher", "tgi:m"], "error: --teacher 'tgi:m': unknown engine 'tgi'"),
    (["--set", "sampling.n=0"], "error: generate: field 'sampling.n': Input should be greater than or equal to 1"),
    (["--prompts", "nope.jsonl"], "error: nope.jsonl: no such prompt file"),
    (["--prompts", "gym:chain_sum", "--config", "missing.yaml"], "error: missing.yaml: no such config file"),
])
def test_errors_are_one_line_with_exit_1(run_env, capsys, args, needle):
    assert main(["generate", *args, "--out", "run"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == needle or (err.startswith(needle) and "\n" not in err)
    assert not (run_env / "run").exists()


def test_usage_errors_exit_2(capsys):
    assert main(["generate", "--no-such-flag"]) == 2
    assert "No such option" in capsys.readouterr().err


def test_config_file_then_flags_then_set(run_env, capsys, tiny_model_dir):
    (run_env / "c.yaml").write_text(f"prompts:\n  source: gym:chain_sum\n  size: 2\nteacher:\n  engine: hf\n"
                                    f"  model: {tiny_model_dir}\nsampling:\n  n: 3\n  max_tokens: 4\n")
    assert main(["generate", "-c", "c.yaml", "--n", "1", "--set", "prompts.size=1", "--out", "run",
                 "--no-progress"]) == 0
    import yaml

    resolved = yaml.safe_load((run_env / "run" / "config.resolved.yaml").read_text())
    gen = resolved["generate"]["config"]
    assert (gen["sampling"]["n"], gen["prompts"]["size"], gen["sampling"]["max_tokens"]) == (1, 1, 4)
    assert resolved["packages"]["pyarrow"] and len(resolved["generate"]["fingerprint"]) == 16


def test_models_lists_the_bundled_aliases(capsys, smollm2_dir):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "smollm2-135m\tHuggingFaceTB/SmolLM2-135M-Instruct" in out and "qwen2.5-coder-0.5b" in out
