"""The distributed path: shipped accelerate configs, and a real two-process run on gloo (CPU)."""

import json

import pytest
import yaml

from factory.cli import main
from factory.config.stages import DistillConfig
from factory.core.errors import FactoryError
from tests.train.helpers import write_kept
from train.launch import launch_command, launch_config, shipped


@pytest.mark.parametrize("name", ["single_gpu", "fsdp", "deepspeed_zero3", "multi_node", "cpu_gloo"])
def test_shipped_configs_are_valid_accelerate_configs(name):
    from accelerate.commands.config.config_args import ClusterConfig

    path = launch_config(name)
    config = ClusterConfig.from_yaml_file(str(path))  # raises on a field accelerate does not know
    assert config.num_processes == yaml.safe_load(path.read_text())["num_processes"]
    assert str(config.distributed_type).split(".")[-1] in {"NO", "FSDP", "DEEPSPEED", "MULTI_CPU"}


def test_launch_command_and_bad_names(tmp_path):
    cfg = DistillConfig(run_dir=str(tmp_path), student="tiny", launch="fsdp", num_processes=4)
    cmd = launch_command(cfg, tmp_path / "c.yaml")
    assert cmd[cmd.index("--num_processes") + 1] == "4" and "--main_process_port" in cmd
    assert cmd[-4:] == ["distill", str(tmp_path), "--config", str(tmp_path / "c.yaml")]
    child = yaml.safe_load((tmp_path / "c.yaml").read_text())
    assert child["student"] == "tiny" and child["launch"] is None, "the launched processes never launch again"
    multi = cfg.model_copy(update={"launch": "multi_node", "num_processes": None})
    assert "--main_process_port" not in launch_command(multi, tmp_path / "c.yaml")
    plain = launch_command(cfg.model_copy(update={"launch": None}), tmp_path / "c.yaml")
    assert plain[1:4] == ["-m", "factory.cli", "distill"], "no launch: one plain process"
    with pytest.raises(FactoryError, match="unknown.*shipped: cpu_gloo, deepspeed_zero3"):
        launch_config("zero9")
    with pytest.raises(FactoryError, match="no such file"):
        launch_config(str(tmp_path / "mine.yaml"))
    assert "fsdp" in shipped()


def test_fsdp_activation_checkpointing_replaces_gradient_checkpointing(tmp_path):
    """transformers refuses both at once; the R1 recipes turn gradient checkpointing on."""
    mine = tmp_path / "mine.yaml"
    settings = yaml.safe_load(launch_config("fsdp").read_text())
    settings["fsdp_config"]["fsdp_activation_checkpointing"] = True
    mine.write_text(yaml.safe_dump(settings))
    cfg = DistillConfig(run_dir=str(tmp_path), student="tiny", gradient_checkpointing=True, launch=str(mine))
    launch_command(cfg, tmp_path / "c.yaml")
    assert yaml.safe_load((tmp_path / "c.yaml").read_text())["gradient_checkpointing"] is False
    for name in shipped():  # the shipped configs leave checkpointing to the trainer's own setting
        fsdp = yaml.safe_load(launch_config(name).read_text()).get("fsdp_config") or {}
        assert not fsdp.get("fsdp_activation_checkpointing"), name
    launch_command(cfg.model_copy(update={"launch": "multi_node"}), tmp_path / "c.yaml")
    assert yaml.safe_load((tmp_path / "c.yaml").read_text())["gradient_checkpointing"] is True


def _first_loss(out):
    rows = [json.loads(line) for line in (out / "train_metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r][0]


@pytest.mark.slow  # >= 10 s on 2 cores (--durations)
def test_two_gloo_processes_match_one_process_first_loss(tmp_path):
    run = write_kept(tmp_path / "run", n=16)
    base = ["distill", str(run), "--student", "tiny", "--max-steps", "2", "--no-progress"]
    assert main([*base, "--set", "batch_size=4", "--set", f"output_dir={tmp_path / 'one'}"]) == 0
    assert main([*base, "--set", "batch_size=2", "--set", f"output_dir={tmp_path / 'two'}",
                 "--launch", "cpu_gloo"]) == 0
    summary = json.loads((tmp_path / "two" / "distill_summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 2
    assert _first_loss(tmp_path / "two") == pytest.approx(_first_loss(tmp_path / "one"), rel=1e-4)
    assert (tmp_path / "two" / "final" / "model.safetensors").exists()


def test_grpo_launches_with_the_same_configs(tmp_path):
    from factory.config.loader import build
    from train.stages.grpo import GrpoConfig

    cfg = build(GrpoConfig, {"run_dir": str(tmp_path), "model": "tiny", "num_generations": 4, "use_vllm": True,
                             "launch": "fsdp", "num_processes": 8})
    cmd = launch_command(cfg, tmp_path / "g.yaml", "grpo")
    assert cmd[-4:] == ["grpo", str(tmp_path), "--config", str(tmp_path / "g.yaml")]
    again = build(GrpoConfig, yaml.safe_load((tmp_path / "g.yaml").read_text()))
    assert again == cfg.model_copy(update={"launch": None, "num_processes": None}), "the same config, read back"


@pytest.mark.slow  # >= 10 s on 2 cores (--durations)
def test_a_pipeline_trains_on_every_process_of_its_launch_and_skips_it_on_a_rerun(tmp_path):
    """`factory run` trains in processes of its own (two over gloo here, every GPU of a node there) while it keeps
    the pipeline's state; the tokens seen are both ranks' batches, not rank 0's alone."""
    from train.batching import LengthBucketSampler
    from train.sft_data import load_samples

    run = write_kept(tmp_path / "run", n=16)
    pipeline = tmp_path / "pipe.yaml"
    pipeline.write_text(yaml.safe_dump({"name": "gloo", "run_dir": str(run), "stages": ["distill"], "distill": {
        "student": "tiny", "max_steps": 2, "batch_size": 2, "launch": "cpu_gloo", "progress": False,
        "gradient_checkpointing": True}}))  # as the R1 recipes, across processes
    assert main(["run", str(pipeline)]) == 0
    out = run / "student" / "tiny"
    summary = json.loads((out / "distill_summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 2
    _, report = load_samples(out / "data", seed=42)
    batches = LengthBucketSampler(report.lengths, 2 * 2, seed=42).batches()[:2]  # a global batch: 2 ranks x 2
    rows = [json.loads(line) for line in (out / "train_metrics.jsonl").read_text().splitlines()]
    assert [r["tokens_seen"] for r in rows if "loss" in r][-1] == sum(report.lengths[i] for b in batches for i in b)
    state = json.loads((run / "pipeline_state.json").read_text())
    assert state["distill"]["done"] and state["distill"]["summary"]["steps"] == 2
    assert main(["run", str(pipeline)]) == 0
    assert json.loads((run / "pipeline_state.json").read_text()) == state, "skipped: up to date"


def test_a_terminated_pipeline_takes_its_training_processes_with_it(tmp_path):
    """SIGTERM to `factory run` (a scheduler's cancel) ends the stage's training processes too: none is left
    holding the GPU, and the pipeline says how to resume."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    from tests.conftest import REPO

    run = write_kept(tmp_path / "run", n=16)
    pipeline = tmp_path / "pipe.yaml"
    pipeline.write_text(yaml.safe_dump({"name": "long", "run_dir": str(run), "stages": ["distill"], "distill": {
        "student": "tiny", "max_steps": 100000, "save_steps": 100000, "progress": False}}))
    proc = subprocess.Popen([sys.executable, "-m", "factory.cli", "run", str(pipeline)], stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, text=True)
    metrics = run / "student" / "tiny" / "train_metrics.jsonl"
    deadline = time.monotonic() + 180
    while not metrics.exists() and time.monotonic() < deadline:  # training has begun in the child
        time.sleep(0.2)
    children = psutil.Process(proc.pid).children(recursive=True)
    assert metrics.exists() and children
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 130 and "interrupted: rerun `factory run" in err
    gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, [p.cmdline() for p in alive]
