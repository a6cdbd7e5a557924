"""The generation bar moves before any sample finishes (issue 37): tokens/s and an ETA from the engine's counts."""

from rich.console import Console

from factory.generation.progress import GenerationProgress, LiveTokens
from factory.teachers.base import Usage


def _shown(progress: GenerationProgress) -> str:
    return LiveTokens(progress).render(None).plain


def test_the_bar_shows_tokens_and_an_eta_before_a_sample_finishes():
    usage = Usage()
    bar = GenerationProgress(10, usage, enabled=False, console=Console(file=None), max_tokens=100)
    assert _shown(bar) == "waiting for the first tokens"
    usage.decoding_tokens = 250  # ten samples in lockstep, 25 tokens each: none finished
    text = _shown(bar)
    assert "0.00 samples/s" in text and "tok/s" in text and "ETA ~" in text
    rate = 250 / 1.0
    assert bar.eta_s(rate) == (10 * 100 - 250) / rate, "the limit is the length assumed while nothing finished"
    usage.decoding_tokens, usage.completion_tokens, bar.done = 0, 400, 8  # 8 finished, 50 tokens each
    assert bar.eta_s(rate) == 2 * 50 / rate, "then the finished samples' mean"
    assert GenerationProgress(3, Usage(), enabled=False).eta_s(10.0) is None, "no limit and nothing finished"
