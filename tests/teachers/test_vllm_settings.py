"""The offline vLLM engine's settings (issue 22, item 13): on a CPU, `dtype: auto` is bf16 only where the CPU
computes bf16 natively, float32 (with the memory share it needs) elsewhere; what the user sets is kept."""

import sys
import types

import pytest

from factory.config.teacher import SamplingConfig, TeacherConfig
from factory.core.hardware import native_bf16
from factory.teachers.vllm_engine import engine_settings

AVX2_EPYC = "processor\t: 0\nflags\t\t: fpu vme sse2 avx avx2 fma bmi2\n"
SAPPHIRE_RAPIDS = "flags\t\t: avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
GRAVITON3 = "Features\t: fp asimd sve bf16 i8mm\n"


def test_native_bf16_is_read_from_the_cpu_flags():
    assert not native_bf16(AVX2_EPYC) and native_bf16(SAPPHIRE_RAPIDS) and native_bf16(GRAVITON3)
    assert not native_bf16("")


@pytest.mark.parametrize("gpu, bf16, set_dtype, set_util, set_eager, expected", [
    (False, False, "auto", None, None, ("float32", 0.55, True)),  # AVX2-only: bf16 is emulated at under half the speed
    (False, True, "auto", None, None, ("bfloat16", 0.35, True)),  # a CPU: eager, compiling costs every start
    (True, False, "auto", None, None, ("auto", 0.9, False)),  # a GPU: the model's own dtype, compiled
    (False, False, "bfloat16", 0.2, False, ("bfloat16", 0.2, False)),  # what the user asks for wins
    (True, False, "auto", None, True, ("auto", 0.9, True)),
])
def test_engine_settings(gpu, bf16, set_dtype, set_util, set_eager, expected):
    cfg = TeacherConfig(engine="vllm", dtype=set_dtype, gpu_memory_utilization=set_util, enforce_eager=set_eager)
    assert engine_settings(cfg, gpu, bf16) == expected


def test_the_engine_is_built_with_them(monkeypatch, smollm2_dir):
    """The engine's constructor receives the chosen dtype (vllm.LLM replaced by a recorder: no model loads)."""
    from transformers import AutoTokenizer

    from factory.teachers import vllm_engine

    built = {}
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)

    class Recorder:
        def __init__(self, **kwargs):
            built.update(kwargs)

        def get_tokenizer(self):
            return tokenizer

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=Recorder))
    monkeypatch.setattr(vllm_engine, "on_gpu", lambda: False)
    monkeypatch.setattr(vllm_engine, "native_bf16", lambda: False)
    vllm_engine.VLLMTeacher(TeacherConfig(engine="vllm", model="some/model"), SamplingConfig())
    assert (built["dtype"], built["gpu_memory_utilization"], built["model"]) == ("float32", 0.55, "some/model")
    assert built["enforce_eager"] is True


def test_an_engine_that_dies_mid_run_is_one_error_saying_what_to_do(monkeypatch, smollm2_dir):
    """Issue 22, item 13: vLLM's EngineDeadError (an engine step past VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS on a slow
    CPU, an engine process killed) becomes one FactoryError; the samples finished before it reached the sink."""
    import vllm
    from transformers import AutoTokenizer
    from vllm.v1.engine.exceptions import EngineDeadError

    from factory.core.errors import FactoryError
    from factory.storage.records import Prompt
    from factory.teachers import Request, vllm_engine

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    choice = types.SimpleNamespace(text="<think>1</think> \\\\boxed{2}", finish_reason="stop", token_ids=[1, 2])

    class DyingEngine:
        steps = 0

        def step(self):
            self.steps += 1
            if self.steps > 1:
                raise EngineDeadError()
            return [types.SimpleNamespace(finished=True, request_id="0", prompt_token_ids=[1], outputs=[choice])]

        def has_unfinished_requests(self):
            return True

    class FakeLLM:
        def __init__(self, **kwargs):
            self.llm_engine = DyingEngine()

        def get_tokenizer(self):
            return tokenizer

        def enqueue_chat(self, messages, params, **kwargs):
            return [str(i) for i in range(len(messages))]

    monkeypatch.setattr(vllm, "LLM", FakeLLM)
    teacher = vllm_engine.VLLMTeacher(TeacherConfig(engine="vllm", model="m", batch_size=1), SamplingConfig(n=1))
    prompts = [Prompt(source="s", task="math", problem=f"{i}?") for i in range(3)]
    requests = iter([Request(prompt=p, sample_indices=[0], keys=[p.prompt_id],
                             messages=[{"role": "user", "content": p.problem}]) for p in prompts])
    finished = []
    with pytest.raises(FactoryError, match=r"^the vLLM engine died .*every sample that finished is cached: run the "
                                           r"same command again to resume.*VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS"):
        teacher.generate(requests, lambda req, c: finished.append(c))
    assert [c.text for c in finished] == [choice.text]
