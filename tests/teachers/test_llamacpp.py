"""The llamacpp engine's choices, without a server: when `engine: auto` picks it, the server's command line, how
it fails, and the build's decision to skip. The real server runs in tests/integration/test_llamacpp.py."""

import sys

import pytest

from factory.config.teacher import SamplingConfig, TeacherConfig
from factory.core.errors import FactoryError
from factory.teachers import llamacpp, llamacpp_build, resolve_engine


@pytest.fixture
def avx2_cpu_with_server(monkeypatch, tmp_path):
    """A CPU without bf16 and no GPU, where setup has built a server (any file stands in for its binary)."""
    server = tmp_path / "llama-server"
    server.write_text("")
    monkeypatch.setenv("FACTORY_CPU_BF16", "0")
    monkeypatch.setenv(llamacpp.SERVER_ENV, str(server))
    monkeypatch.setattr(llamacpp_build, "cuda_available", lambda: False)
    return server


def test_auto_runs_gguf_models_with_llama_cpp_on_a_cpu_without_bf16(avx2_cpu_with_server, monkeypatch, tmp_path):
    assert resolve_engine("auto", "qwen2.5-coder-0.5b") == "llamacpp"
    assert resolve_engine("auto", str(tmp_path / "model.Q4_K_M.gguf")) == "llamacpp"
    checkpoint = resolve_engine("auto", str(tmp_path))  # a transformers checkpoint (the distilled student)
    assert checkpoint in ("vllm", "hf")
    assert resolve_engine("vllm", "qwen2.5-coder-0.5b") == "vllm", "a named engine is never replaced"
    assert resolve_engine("auto") in ("vllm", "hf"), "no model named: no GGUF to run"
    monkeypatch.setenv("FACTORY_CPU_BF16", "1")
    assert resolve_engine("auto", "qwen2.5-coder-0.5b") == checkpoint, "bf16 CPUs keep vLLM"
    assert "bf16 natively" in llamacpp_build.why_not_preferred()
    monkeypatch.setenv("FACTORY_CPU_BF16", "0")
    monkeypatch.setattr(llamacpp_build, "cuda_available", lambda: True)
    assert resolve_engine("auto", "qwen2.5-coder-0.5b") == checkpoint, "GPUs keep vLLM"


def test_auto_keeps_vllm_where_no_server_was_built(avx2_cpu_with_server, monkeypatch, tmp_path):
    monkeypatch.delenv(llamacpp.SERVER_ENV)
    monkeypatch.setattr(llamacpp, "built_server", lambda: tmp_path / "absent")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert llamacpp.find_server() is None
    assert resolve_engine("auto", "qwen2.5-coder-0.5b") in ("vllm", "hf")


def test_the_server_command_sizes_slots_for_prompt_and_answer(tmp_path):
    cfg = TeacherConfig(engine="llamacpp", model="qwen2.5-coder-0.5b", batch_size=16)
    cmd = llamacpp.server_command(tmp_path / "llama-server", tmp_path / "m.gguf", cfg, SamplingConfig(max_tokens=192),
                                  8123, tmp_path / "t.jinja")
    flags = dict(zip(cmd[1::2], cmd[2::2]))
    assert flags["--parallel"] == "16" and flags["-c"] == str(16 * (192 + llamacpp.PROMPT_ROOM))
    assert flags["--host"] == "127.0.0.1" and flags["--port"] == "8123" and flags["--alias"] == "qwen2.5-coder-0.5b"
    assert cmd[cmd.index("--reasoning-format") + 1] == "none", "thoughts stay in the text, as vLLM returns them"
    assert cmd[-2:] == ["--chat-template-file", str(tmp_path / "t.jinja")]
    longer = cfg.model_copy(update={"max_model_len": 4096})
    cmd = llamacpp.server_command(tmp_path / "s", tmp_path / "m.gguf", longer, SamplingConfig(), 1, None)
    assert cmd[cmd.index("-c") + 1] == str(16 * 4096) and "--chat-template-file" not in cmd


def test_missing_server_model_or_file_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv(llamacpp.SERVER_ENV, "")
    monkeypatch.setattr(llamacpp, "built_server", lambda: tmp_path / "absent")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FactoryError, match="no llama-server here: build it with `python -m factory.teachers"):
        llamacpp.LlamaCppTeacher(TeacherConfig(engine="llamacpp"), SamplingConfig())
    monkeypatch.setenv(llamacpp.SERVER_ENV, "/bin/false")
    with pytest.raises(FactoryError, match=r"'HuggingFaceTB/SmolLM2' is not a .gguf file or a bundled model"):
        llamacpp.LlamaCppTeacher(TeacherConfig(engine="llamacpp", model="HuggingFaceTB/SmolLM2"), SamplingConfig())
    gone = tmp_path / "gone.gguf"
    with pytest.raises(FactoryError, match=f"{gone}: no such file"):
        llamacpp.LlamaCppTeacher(TeacherConfig(engine="llamacpp", model=str(gone)), SamplingConfig())


def test_a_server_that_exits_at_start_says_so_with_its_log(monkeypatch, tmp_path):
    fake = tmp_path / "llama-server"
    fake.write_text(f"#!{sys.executable}\nimport sys\nprint('error: unknown argument: --frobnicate')\nsys.exit(3)\n")
    fake.chmod(0o755)
    monkeypatch.setenv(llamacpp.SERVER_ENV, str(fake))
    with pytest.raises(FactoryError, match="llama-server exited with code 3: error: unknown argument"):
        llamacpp.LlamaCppTeacher(TeacherConfig(engine="llamacpp", model="smollm2-135m"), SamplingConfig())


def test_setup_builds_only_where_auto_would_use_it(monkeypatch, capsys):
    monkeypatch.setenv("FACTORY_CPU_BF16", "1")
    assert llamacpp_build.main(["--if-auto-picks-it"]) == 0
    assert "not built (this CPU computes bf16 natively" in capsys.readouterr().out


def test_a_build_without_tools_names_what_is_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("FACTORY_CACHE", str(tmp_path))
    monkeypatch.setattr(llamacpp_build, "_tool", lambda name: None)
    with pytest.raises(FactoryError, match="building llama.cpp needs cmake: `pip install cmake ninja`"):
        llamacpp_build.build("avx2")
    assert not list(tmp_path.rglob("llama-server")), "nothing half-built is left"
