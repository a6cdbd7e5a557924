"""The generation library streams its plan: a teacher draws requests as it has room, never a list of them."""

import json

from factory.config.stages import GenerateConfig, PromptsConfig
from factory.config.teacher import SamplingConfig
from factory.executors import generate_missing, local
from factory.generation import plan as generation
from factory.sources import load_prompts
from factory.storage.cache import SampleCache
from factory.teachers import Completion, Usage


class CountingPrompts(list):
    """The prompt list, counting how far the plan has read it."""

    read = 0

    def __iter__(self):
        for p in super().__iter__():
            CountingPrompts.read += 1
            yield p


def test_the_teacher_draws_requests_lazily_and_every_sample_is_cached(tmp_path, monkeypatch):
    (tmp_path / "p.jsonl").write_text("".join(json.dumps({"problem": f"P{i}"}) + "\n" for i in range(50)))
    cfg = GenerateConfig(out=str(tmp_path / "run"), progress=False,
                         prompts=PromptsConfig(source=str(tmp_path / "p.jsonl")), sampling=SamplingConfig(n=2))
    seen = []

    class Teacher:
        engine, model, usage = "hf", "m", Usage()

        def generate(self, requests, sink):
            assert not isinstance(requests, (list, tuple)), "a generator, not the plan as a list"
            first = next(iter(requests))
            seen.append(CountingPrompts.read)  # the count pass read 50; the feed pass only 1 so far
            for req in [first, *requests]:
                for i in req.sample_indices:
                    sink(req, Completion(i, text=f"<think>r</think> {req.prompt.problem}/{i}"))

        def close(self):
            pass

    monkeypatch.setattr(local, "make_teacher", lambda *a: Teacher())
    prompts = CountingPrompts(load_prompts(cfg.prompts))
    with SampleCache(tmp_path / "cache") as cache:
        cache.put("unrelated", {"text": "x"})  # a non-empty cache: the count pass runs
        bought = generate_missing(cfg, generation.plan(cfg, prompts), cache)
        assert bought.stats.requested == 100 and not bought.errors and len(cache) == 101
    assert seen == [51]
