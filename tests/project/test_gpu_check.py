"""`make gpu-check` on a machine without a GPU says so in one line and pretends nothing; its figures are computed
from the files the parts write."""

import json
import os
import subprocess
import sys

from tests.conftest import REPO


def test_without_a_gpu_it_says_so_in_one_line_and_writes_nothing(tmp_path):
    result = REPO / "bench" / "results" / "gpu_check.json"
    before = result.read_bytes() if result.exists() else None
    import shutil

    for tool in ("bash", "dirname"):  # a PATH with what the script needs, and no nvidia-smi
        (tmp_path / tool).symlink_to(shutil.which(tool))
    env = {**os.environ, "PATH": str(tmp_path)}
    res = subprocess.run([str(tmp_path / "bash"), str(REPO / "scripts" / "gpu_check.sh")], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().splitlines() == [
        "gpu-check: no NVIDIA GPU on this machine: nothing ran (run it where `nvidia-smi -L` lists one)"]
    assert (result.read_bytes() if result.exists() else None) == before


def test_the_training_figures_come_from_the_run_files(tmp_path, tiny_model_dir):
    import shutil

    sys.path.insert(0, str(REPO / "scripts"))
    import gpu_check

    out = tmp_path / "student"
    shutil.copytree(tiny_model_dir, out / "final")
    (out / "train_metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 3.0, "tokens_per_s": 100.0}) + "\n" +
                                             json.dumps({"step": 2, "loss": 2.5, "tokens_per_s": 1e6}) + "\n")
    (out / "distill_summary.json").write_text(json.dumps({"packing": True, "nonpad_share": 1.0}))
    m = gpu_check.distill_metrics(out, "NVIDIA H200")
    params = gpu_check.parameter_count(str(out / "final"))
    assert m["tokens_per_s"] == 1e6 and m["final_loss"] == 2.5 and m["packing"] is True
    assert m["mfu"] == round(6 * params * 1e6 / 989e12, 4) and 3e6 < params < 4e6
    assert gpu_check.distill_metrics(out, "Some New GPU")["mfu"] is None, "no datasheet figure: no estimate"
    names = [name for name, _, _ in gpu_check.parts(tmp_path / "run")]
    assert names == ["tests", "generate", "filter", "distill", "grpo", "eval"]
