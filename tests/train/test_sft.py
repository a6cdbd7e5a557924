"""`factory distill` on the tiny student, on CPU: the real TRL trainer, a few dozen steps."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest

from factory.cli import main
from factory.core.errors import FactoryError
from tests.conftest import REPO
from tests.train.helpers import write_kept
from train.callbacks import MetricsAndGuard


def _metrics(out):
    return [json.loads(line) for line in (out / "train_metrics.jsonl").read_text().splitlines()]


def _losses(out):
    return {r["step"]: r["loss"] for r in _metrics(out) if "loss" in r}


@pytest.mark.slow  # >= 10 s on 2 cores (--durations)
def test_loss_falls_and_the_checkpoint_generates(tmp_path):
    run = write_kept(tmp_path / "run", n=32)
    assert main(["distill", str(run), "--student", "tiny", "--max-steps", "24", "--no-progress",
                 "--set", "save_steps=12"]) == 0
    out = run / "student" / "tiny"
    losses = [r["loss"] for r in _metrics(out) if "loss" in r]
    assert len(losses) == 24 and sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 - 0.5
    assert all(r["tokens_per_s"] > 0 for r in _metrics(out) if "loss" in r)
    assert (out / "loss.png").stat().st_size > 1000
    assert (out / "checkpoint-12" / "COMPLETE").exists() and (out / "checkpoint-24" / "COMPLETE").exists()
    summary = json.loads((out / "distill_summary.json").read_text())
    assert summary["steps"] == 24 and summary["data"]["samples"] == 32
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out / "final")
    from factory.core.chat_templates import CHATML, hidden_system

    assert tok.chat_template == CHATML and hidden_system(tok) is None, "saved with the R1-style template"
    model = AutoModelForCausalLM.from_pretrained(out / "final")
    ids = tok.apply_chat_template([{"role": "user", "content": "What is 1 + 1?"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    gen = model.generate(**ids, max_new_tokens=5, do_sample=False)
    assert gen.shape[1] == ids["input_ids"].shape[1] + 5
    assert "distill" in (run / "config.resolved.yaml").read_text()


def _cmd(run, *extra):
    return [sys.executable, "-m", "factory.cli", "distill", str(run), "--student", "tiny", "--max-steps", "8",
            "--no-progress", "--set", "save_steps=3", *extra]


@pytest.mark.slow  # >= 10 s on 2 cores (--durations)
def test_kill_then_resume_continues_at_the_right_step_with_the_same_data_order(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    whole = write_kept(tmp_path / "whole", n=32)
    assert subprocess.run(_cmd(whole), env=env, capture_output=True).returncode == 0
    run = write_kept(tmp_path / "run", n=32)
    out = run / "student" / "tiny"
    proc = subprocess.Popen(_cmd(run), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (out / "checkpoint-3" / "COMPLETE").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (out / "train_metrics.jsonl").rename(out / "before_kill.jsonl")
    res = subprocess.run(_cmd(run, "--resume"), env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    resumed = _losses(out)
    assert min(resumed) == 4 and max(resumed) == 8, "continued after checkpoint-3, not from scratch"
    expected = _losses(whole / "student" / "tiny")
    assert all(math.isclose(resumed[s], expected[s], rel_tol=1e-3) for s in range(4, 9))
    assert json.loads((out / "distill_summary.json").read_text())["resumed_from"].endswith("checkpoint-3")


def test_torn_checkpoints_are_never_resumed_from(tmp_path):
    from train.sft import last_complete_checkpoint

    for step, complete in [(3, True), (6, True), (9, False)]:
        (tmp_path / f"checkpoint-{step}").mkdir()
        if complete:
            (tmp_path / f"checkpoint-{step}" / "COMPLETE").write_text(str(step))
    assert last_complete_checkpoint(tmp_path).name == "checkpoint-6"
    assert not (tmp_path / "checkpoint-9").exists() and list(tmp_path.glob("torn-checkpoint-9-*"))


@pytest.mark.parametrize("loss", [float("nan"), float("inf")])
def test_nan_or_inf_loss_stops_the_run(tmp_path, loss):
    guard = MetricsAndGuard(tmp_path / "m.jsonl", progress=False)

    class State:
        global_step, epoch, num_input_tokens_seen, is_world_process_zero = 7, 0.5, 100, True

    with pytest.raises(FactoryError, match=f"training loss is {loss} at step 7"):
        guard.on_log(None, State(), None, logs={"loss": loss})


def test_lora_keeps_the_adapter_and_merges(tmp_path):
    run = write_kept(tmp_path / "run", n=8)
    assert main(["distill", str(run), "--student", "tiny", "--max-steps", "2", "--lora", "--no-progress",
                 "--set", "lora_r=4", "--set", "lora_targets_ignored=1"]) == 1
    assert main(["distill", str(run), "--student", "tiny", "--max-steps", "2", "--lora", "--no-progress",
                 "--set", "lora_r=4"]) == 0
    final = run / "student" / "tiny" / "final"
    assert (final / "adapter" / "adapter_config.json").exists() and (final / "model.safetensors").exists()
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(final).config.num_hidden_layers == 2


def test_bad_input_fails_before_training(tmp_path, capsys):
    assert main(["distill", str(tmp_path), "--student", "tiny", "--no-progress"]) == 1
    assert "filtered/kept: no manifest.json" in capsys.readouterr().err
    run = write_kept(tmp_path / "run", n=4)
    assert main(["distill", str(run), "--student", "qwen-9000"]) == 1
    assert "unknown preset" in capsys.readouterr().err
    assert main(["distill", str(run), "--student", "tiny", "--set", "max_length=8", "--no-progress"]) == 1
    assert "shorter than every sample" in capsys.readouterr().err
    assert not (run / "student").exists()


def test_packed_samples_never_attend_to_each_other(tiny_model_dir):
    """A packed row with per-sample position ids gives each sample the logits it has alone (sdpa on CPU)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    a, b = torch.tensor([[11, 12, 13, 14, 15]]), torch.tensor([[21, 22, 23]])
    with torch.no_grad():
        # use_cache=False as in training: with a cache, transformers does not derive the block mask from position ids
        alone = model(input_ids=b, use_cache=False).logits[0]
        packed = model(input_ids=torch.cat([a, b], 1), position_ids=torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2]]),
                       use_cache=False).logits[0]
        leaky = model(input_ids=torch.cat([a, b], 1), use_cache=False).logits[0]
    assert torch.allclose(packed[5:], alone, atol=1e-5)
    assert not torch.allclose(leaky[5:], alone, atol=1e-3), "without position ids the samples would mix"


def test_packed_training_is_padding_free_and_learns(tmp_path):
    run = write_kept(tmp_path / "run", n=24)
    assert main(["distill", str(run), "--student", "tiny", "--max-steps", "12", "--no-progress",
                 "--set", "packing=on", "--set", "batch_size=2", "--set", "max_length=256"]) == 0
    out = run / "student" / "tiny"
    summary = json.loads((out / "distill_summary.json").read_text())
    assert summary["packing"] is True and summary["nonpad_share"] == 1.0
    losses = [r["loss"] for r in _metrics(out) if "loss" in r]
    assert len(losses) == 12 and losses[-1] < losses[0]


def test_length_buckets_report_their_nonpad_share(tmp_path):
    run = write_kept(tmp_path / "run", n=24)
    assert main(["distill", str(run), "--student", "tiny", "--max-steps", "3", "--no-progress"]) == 0
    out = run / "student" / "tiny"
    summary = json.loads((out / "distill_summary.json").read_text())
    assert summary["packing"] is False and 0.5 < summary["nonpad_share"] <= 1.0
    rows = [r for r in _metrics(out) if "loss" in r]
    assert all(r["trainable_tokens_per_s"] > 0 and r["nonpad_share"] for r in rows)


def test_out_of_disk_is_refused_before_the_first_step(tmp_path, monkeypatch, capsys):
    import shutil
    from collections import namedtuple

    run = write_kept(tmp_path / "run", n=4)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    assert main(["distill", str(run), "--student", "tiny", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "student/tiny: checkpoints of this 3M-parameter student need about" in err and "0.0 GB are" in err
    assert not (run / "student").exists()


def _tiny_with_positions(tmp_path, positions: int):
    """The tiny student with a short context, as Qwen2.5-Math's 4,096 positions are short for R1's traces."""
    import shutil

    from transformers import AutoConfig

    from train.students import tiny_model

    src = tiny_model()
    dst = tmp_path / f"tiny-{positions}"
    shutil.copytree(src, dst)
    config = AutoConfig.from_pretrained(dst)
    config.max_position_embeddings = positions
    config.save_pretrained(dst)
    return dst


def test_samples_past_the_base_positions_are_refused_without_an_extension(tmp_path, capsys):
    run = write_kept(tmp_path / "run", n=8, reasoning_words=40)
    student = _tiny_with_positions(tmp_path, 48)
    assert main(["distill", str(run), "--student", str(student), "--max-steps", "1", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "tokens exceeds the model's 48 positions; extend the context" in err
    assert not (run / "student" / student.name / "final").exists()


def test_the_context_is_extended_before_training_and_recorded(tmp_path):
    from transformers import AutoConfig

    from train.students import PRESETS

    assert PRESETS["qwen-7b"].max_position_embeddings == 131072 and PRESETS["qwen-7b"].rope_theta == 300000
    run = write_kept(tmp_path / "run", n=8, reasoning_words=40)
    student = _tiny_with_positions(tmp_path, 48)
    assert main(["distill", str(run), "--student", str(student), "--max-steps", "2", "--no-progress",
                 "--set", "max_position_embeddings=1024", "--set", "rope_theta=300000"]) == 0
    out = run / "student" / student.name
    summary = json.loads((out / "distill_summary.json").read_text())
    assert summary["context"]["base_positions"] == 48 and summary["context"]["extended"]
    assert summary["context"]["max_position_embeddings"] == 1024 and summary["model"] == str(student)
    final = AutoConfig.from_pretrained(out / "final")
    assert final.max_position_embeddings == 1024 and final.rope_parameters["rope_theta"] == 300000
    assert AutoConfig.from_pretrained(student).max_position_embeddings == 48, "the base is left untouched"


@pytest.mark.slow  # >= 10 s on 2 cores (--durations)
def test_a_student_from_a_base_model_is_trained_and_saved_to_stop_at_the_end_of_turn(tmp_path):
    """Qwen2.5-Math and Llama-3.1 base tokenizers end text with <|endoftext|> / <|end_of_text|>; the R1-style
    template ends a turn with <|im_end|> / <|eot_id|>. A final that keeps the base EOS never stops."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from factory.storage.shards import read_table
    from tests.train.helpers import MEMORISE, base_like_student, one_sample_run

    student = base_like_student(tmp_path)
    assert AutoTokenizer.from_pretrained(student).eos_token == "<|endoftext|>"
    run = one_sample_run(tmp_path / "run")
    assert main(["distill", str(run), "--student", str(student), *MEMORISE]) == 0
    final = run / "student" / student.name / "final"
    tok = AutoTokenizer.from_pretrained(final)
    im_end, endoftext = tok.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert GenerationConfig.from_pretrained(final).eos_token_id == [im_end, endoftext]
    assert json.loads((run / "student" / student.name / "distill_summary.json").read_text())["stops_at"] == "<|im_end|>"
    messages = json.loads(read_table(run / "filtered" / "kept").to_pylist()[0]["messages"])
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = AutoModelForCausalLM.from_pretrained(final).generate(**ids, max_new_tokens=96, do_sample=False)[0]
    new = out[ids["input_ids"].shape[1]:].tolist()
    assert new[-1] == im_end and len(new) < 96, "transformers' generate stops at the end of turn"
