"""What a stage gets besides its config: the pipeline section it writes, the command line for lineage, and whether
it resumes. Passed explicitly to every stage (and to the processes a stage launches, as `--section`), so nothing
about where a stage writes lives in a global, a context variable or the environment."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RunContext:
    section: str | None = None  # a pipeline instance's name (sft2 of kind distill); None: the stage's kind
    command: str | None = None  # the command line that started this process, redacted (config.resolved.yaml)
    resume: bool = False  # training stages: continue from the last complete checkpoint

    def section_for(self, kind: str) -> str:
        """The key of config.resolved.yaml this stage's section goes under."""
        return self.section or kind

    def child_args(self) -> list[str]:
        """The options that hand this context to a `factory` child process (a stage in a process of its own)."""
        return ["--section", self.section] if self.section else []


DIRECT = RunContext()  # a stage called directly (the CLI without a pipeline, a script, a test)
